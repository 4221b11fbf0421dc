/**
 * A Limit computes one number, the route's concurrency limit, from samples.
 * It never reads a clock or sets a timer: time arrives inside the samples.
 * The Limiter (../limiter) counts permits against `current`.
 *
 * Implementations: FixedLimit (below) and AdaptiveLimit (./adaptive.ts),
 * which windows the samples and runs one of the algorithms in ./aimd.ts,
 * ./gradient.ts, ./vegas.ts behind the hysteresis of ./hysteresis.ts.
 * `createLimit` (./create.ts) builds the one a route's config asks for.
 */

/** One finished upstream exchange, as seen by the limiter. */
export interface Sample {
  /** Clock time (ms) when the request was dispatched upstream. */
  readonly startedAt: number;
  /** Dispatch to upstream response headers, in ms. */
  readonly rttMs: number;
  /** Requests in flight on the route when this one was dispatched (itself included). */
  readonly inflight: number;
  /** True when the upstream signalled overload (overload status or timeout). */
  readonly dropped: boolean;
}

/** What a limit currently believes about upstream latency, in ms; null until measured. */
export interface RttEstimates {
  /** The last window's RTT (its configured percentile). */
  readonly recentMs: number | null;
  /** The no-queueing RTT the algorithm compares it with (gradient's long RTT, vegas' rttNoLoad). */
  readonly baselineMs: number | null;
}

export interface Limit {
  /** The current limit: an integer >= 1. */
  readonly current: number;
  onSample(sample: Sample): void;
  /** For observability; absent when the limit does not look at latency. */
  readonly rtt?: RttEstimates;
}

/** A limit that never changes. */
export class FixedLimit implements Limit {
  readonly current: number;
  constructor(limit: number) {
    this.current = Math.max(1, Math.floor(limit));
  }
  onSample(): void {}
}

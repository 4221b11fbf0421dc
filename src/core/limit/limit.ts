/**
 * A Limit computes one number, the route's concurrency limit, from samples.
 * It never reads a clock or sets a timer: time arrives inside the samples.
 * The Limiter (../limiter) counts permits against `current`.
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

export interface Limit {
  /** The current limit: an integer >= 1. */
  readonly current: number;
  onSample(sample: Sample): void;
}

/** A limit that never changes. */
export class FixedLimit implements Limit {
  readonly current: number;
  constructor(limit: number) {
    this.current = Math.max(1, Math.floor(limit));
  }
  onSample(): void {}
}

/**
 * The live page's memory: the last few minutes of what each route did, kept
 * server-side so that a tab opened now shows the past too.
 *
 * Once a second the admin listener hands `record()` a snapshot — the route
 * view /admin/state shows plus the metrics' cumulative totals — and History
 * turns it into one compact sample:
 *
 *   rates        (total now − total at the previous sample) / seconds between
 *                them: admitted and refused per second (refused by reason),
 *                upstream errors per second by kind, 5xx per second;
 *   percentiles  p50/p99 of queue wait and upstream latency per lane, and of
 *                upstream latency per route, from
 *                the histogram buckets that filled since the previous sample,
 *                interpolated inside a bucket the way Prometheus's
 *                histogram_quantile does (so the page and Grafana agree);
 *                null when nothing was observed in the interval;
 *   state        limit, in-flight, queues, shed state, breaker state, open
 *                WebSockets, readiness and why, as they were at that moment.
 *
 * Samples go into a ring of fixed capacity (300 = 5 minutes at one per
 * second): memory is bounded by routes × lanes × capacity, whatever the
 * traffic. Each sample has a sequence number, so a page asks only for what
 * it has not seen (`since(seq)`).
 *
 * Pure: time arrives as an argument (`record(now, ...)`: a monotonic time for
 * the rates, a Unix time to show), the sampling timer runs on an injected
 * Clock (`sampleEvery`).
 */
import type { BreakerStateName } from '../core/breaker.js';
import type { Clock, Timer } from '../core/clock.js';
import type { ListenerView } from '../proxy/front.js';

/** A histogram's cumulative state: per-bucket counts (not cumulative), the last one for values above every bound. */
export interface HistogramTotals {
  /** Upper bounds of the finite buckets, ascending (seconds). */
  readonly bounds: readonly number[];
  /** bounds.length + 1 counts: one per finite bucket, then the overflow (+Inf) bucket. */
  readonly counts: readonly number[];
}

export interface LaneTotals {
  readonly name: string;
  readonly admitted: number;
  readonly refused: number;
  /** Refusals by reason code, cumulative. */
  readonly refusals: Readonly<Record<string, number>>;
  readonly queueWait: HistogramTotals;
  /** The lane's requests' upstream latency, every response status class together. */
  readonly upstreamLatency: HistogramTotals;
}

/** A route's cumulative counters, as the metrics hold them. */
export interface RouteTotals {
  readonly lanes: readonly LaneTotals[];
  /** Every lane and response status class together. */
  readonly upstreamLatency: HistogramTotals;
  /** Failures without a usable answer, by kind, cumulative. */
  readonly upstreamErrors: Readonly<Record<string, number>>;
  readonly responses5xx: number;
}

/** The fields of a route's state that a sample keeps as they are. */
interface RouteBasics {
  readonly name: string;
  readonly upstream: string;
  readonly algorithm: string;
  readonly limit: number;
  readonly inflight: number;
  readonly queued: number;
  readonly state: 'normal' | 'overloaded';
  readonly completionsPerSecond: number;
  readonly backlogSeconds: number | null;
}

/** What History needs of a route's state (the fields of /admin/state it keeps). */
export interface RouteView extends RouteBasics {
  readonly circuitBreaker: { readonly state: BreakerStateName; readonly opens: number; readonly openRemainingMs: number } | null;
  /** A route with `websocket:` (absent or null otherwise). */
  readonly websocket?: { readonly open: number; readonly maxOpen: number } | null;
  readonly lanes: readonly { readonly name: string; readonly inflight: number; readonly queued: number; readonly maxSlots: number; readonly oldestQueuedMs: number }[];
}

export interface Snapshot {
  readonly ready: boolean;
  readonly draining: boolean;
  /** Why the instance is not ready (a reason code, or a reason with details), or null. */
  readonly notReady: string | Readonly<Record<string, unknown>> | null;
  readonly routes: readonly { readonly view: RouteView; readonly totals: RouteTotals | undefined }[];
  /** The proxy listener (TLS certificate, HTTP/2 client counts), shown as it is now. */
  readonly listener?: ListenerView;
}

export interface Percentiles {
  readonly p50: number;
  readonly p99: number;
}

export interface LaneSample {
  readonly name: string;
  readonly inflight: number;
  readonly queued: number;
  readonly maxSlots: number;
  readonly oldestQueuedMs: number;
  readonly admittedPerSecond: number;
  readonly refusedPerSecond: number;
  /** ms; null when no request of the lane finished waiting in the interval. */
  readonly queueWaitMs: Percentiles | null;
  /** ms, dispatch to response headers; null when no response of the lane's requests arrived in the interval. */
  readonly upstreamLatencyMs: Percentiles | null;
}

export interface RouteSample extends RouteBasics {
  /** null when the route has no breaker. */
  readonly breaker: { readonly state: BreakerStateName; readonly opens: number; readonly openRemainingMs: number } | null;
  /** Open WebSockets and the route's maxOpen; null for a route without `websocket:`. */
  readonly websockets: { readonly open: number; readonly maxOpen: number } | null;
  readonly admittedPerSecond: number;
  /** Refusals per second by reason; reasons with none in the interval are left out. */
  readonly refusedPerSecond: Readonly<Record<string, number>>;
  /** Upstream failures per second by kind; kinds with none are left out. */
  readonly upstreamErrorsPerSecond: Readonly<Record<string, number>>;
  readonly upstream5xxPerSecond: number;
  /** ms; null when no upstream response arrived in the interval. */
  readonly upstreamLatencyMs: Percentiles | null;
  readonly lanes: readonly LaneSample[];
}

export interface Sample {
  readonly seq: number;
  /** Unix time in ms, when the sample was taken. */
  readonly t: number;
  readonly ready: boolean;
  readonly draining: boolean;
  readonly notReady: Snapshot['notReady'];
  readonly routes: readonly RouteSample[];
  readonly listener?: ListenerView;
}

/** The q-quantile (0..1) of the observations a bucket-count delta holds, in the histogram's unit; NaN when empty. */
export function bucketQuantile(q: number, bounds: readonly number[], counts: readonly number[]): number {
  let total = 0;
  for (const c of counts) total += c;
  if (total <= 0) return NaN;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i] as number;
    if (c > 0 && seen + c >= rank) {
      // Above every bound: Prometheus answers the highest finite bound.
      if (i >= bounds.length) return bounds[bounds.length - 1] as number;
      const lower = i === 0 ? 0 : (bounds[i - 1] as number);
      const upper = bounds[i] as number;
      return lower + ((upper - lower) * (rank - seen)) / c;
    }
    seen += c;
  }
  return bounds[bounds.length - 1] as number;
}

const round = (n: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

/** Counter increase per second; a counter that went down (a route re-created) restarts from 0. */
function perSecond(now: number, before: number | undefined, seconds: number): number {
  if (before === undefined || seconds <= 0) return 0;
  return round(Math.max(0, now - before) / seconds, 2);
}

function perSecondByKey(now: Readonly<Record<string, number>>, before: Readonly<Record<string, number>> | undefined, seconds: number): Record<string, number> {
  const out: Record<string, number> = {};
  if (before === undefined) return out;
  for (const [k, v] of Object.entries(now)) {
    const r = perSecond(v, before[k] ?? 0, seconds);
    if (r > 0) out[k] = r;
  }
  return out;
}

/** p50/p99 in ms of what a histogram gained since `before`; null when it gained nothing. */
function intervalPercentiles(now: HistogramTotals, before: HistogramTotals | undefined): Percentiles | null {
  if (before === undefined || before.counts.length !== now.counts.length) return null;
  const delta = now.counts.map((c, i) => Math.max(0, c - (before.counts[i] as number)));
  const p50 = bucketQuantile(0.5, now.bounds, delta);
  if (Number.isNaN(p50)) return null;
  return { p50: round(p50 * 1000, 2), p99: round(bucketQuantile(0.99, now.bounds, delta) * 1000, 2) };
}

function routeSample(view: RouteView, totals: RouteTotals | undefined, before: RouteTotals | undefined, seconds: number): RouteSample {
  const laneTotals = new Map((totals?.lanes ?? []).map((l) => [l.name, l]));
  const laneBefore = new Map((before?.lanes ?? []).map((l) => [l.name, l]));
  const refusals: Record<string, number> = {};
  let admitted = 0;
  const lanes = view.lanes.map((l): LaneSample => {
    const now = laneTotals.get(l.name);
    const prev = laneBefore.get(l.name);
    const admittedPerSecond = now ? perSecond(now.admitted, prev?.admitted, seconds) : 0;
    admitted += admittedPerSecond;
    if (now) for (const [k, v] of Object.entries(perSecondByKey(now.refusals, prev?.refusals, seconds))) refusals[k] = round((refusals[k] ?? 0) + v, 2);
    return {
      name: l.name,
      inflight: l.inflight,
      queued: l.queued,
      maxSlots: l.maxSlots,
      oldestQueuedMs: Math.round(l.oldestQueuedMs),
      admittedPerSecond,
      refusedPerSecond: now ? perSecond(now.refused, prev?.refused, seconds) : 0,
      queueWaitMs: now ? intervalPercentiles(now.queueWait, prev?.queueWait) : null,
      upstreamLatencyMs: now ? intervalPercentiles(now.upstreamLatency, prev?.upstreamLatency) : null,
    };
  });
  const b = view.circuitBreaker;
  return {
    name: view.name,
    upstream: view.upstream,
    algorithm: view.algorithm,
    limit: view.limit,
    inflight: view.inflight,
    queued: view.queued,
    state: view.state,
    breaker: b === null ? null : { state: b.state, opens: b.opens, openRemainingMs: Math.round(b.openRemainingMs) },
    websockets: view.websocket ? { open: view.websocket.open, maxOpen: view.websocket.maxOpen } : null,
    completionsPerSecond: view.completionsPerSecond,
    backlogSeconds: view.backlogSeconds === null ? null : round(view.backlogSeconds, 2),
    admittedPerSecond: round(admitted, 2),
    refusedPerSecond: refusals,
    upstreamErrorsPerSecond: totals ? perSecondByKey(totals.upstreamErrors, before?.upstreamErrors, seconds) : {},
    upstream5xxPerSecond: totals ? perSecond(totals.responses5xx, before?.responses5xx, seconds) : 0,
    upstreamLatencyMs: totals ? intervalPercentiles(totals.upstreamLatency, before?.upstreamLatency) : null,
    lanes,
  };
}

/** Copies a route's totals (the metrics keep mutating theirs). */
function copyTotals(t: RouteTotals): RouteTotals {
  const hist = (h: HistogramTotals): HistogramTotals => ({ bounds: h.bounds, counts: [...h.counts] });
  return {
    lanes: t.lanes.map((l) => ({ ...l, refusals: { ...l.refusals }, queueWait: hist(l.queueWait), upstreamLatency: hist(l.upstreamLatency) })),
    upstreamLatency: hist(t.upstreamLatency),
    upstreamErrors: { ...t.upstreamErrors },
    responses5xx: t.responses5xx,
  };
}

export class History {
  private readonly ring: (Sample | undefined)[];
  private next = 0;
  private seq = 0;
  private lastMono: number | undefined;
  private lastTotals = new Map<string, RouteTotals>();

  constructor(readonly capacity = 300) {
    if (!(capacity >= 1)) throw new RangeError('History capacity must be >= 1');
    this.ring = new Array<Sample | undefined>(capacity);
  }

  /** Adds the sample for snapshot `s` taken at `now` (ms: monotonic for rates, Unix to show); returns it. */
  record(now: { readonly mono: number; readonly unix: number }, s: Snapshot): Sample {
    const seconds = this.lastMono === undefined ? 0 : (now.mono - this.lastMono) / 1000;
    const totals = new Map<string, RouteTotals>();
    const routes = s.routes.map(({ view, totals: now }) => {
      if (now !== undefined) totals.set(view.name, copyTotals(now));
      return routeSample(view, now, this.lastTotals.get(view.name), seconds);
    });
    const sample: Sample = { seq: ++this.seq, t: now.unix, ready: s.ready, draining: s.draining, notReady: s.notReady, routes, ...(s.listener !== undefined && { listener: s.listener }) };
    this.ring[this.next] = sample;
    this.next = (this.next + 1) % this.capacity;
    this.lastMono = now.mono;
    this.lastTotals = totals;
    return sample;
  }

  /** The sequence number of the newest sample (0 before the first). */
  get latest(): number {
    return this.seq;
  }

  /** Samples with a sequence number above `seq` (all kept ones by default), oldest first. */
  since(seq = 0): Sample[] {
    const out: Sample[] = [];
    for (let i = 0; i < this.capacity; i++) {
      const x = this.ring[(this.next + i) % this.capacity];
      if (x !== undefined && x.seq > seq) out.push(x);
    }
    return out;
  }
}

/**
 * Calls `fn` now and then every `everyMs` on `clock` until the returned timer
 * is cancelled. The next call is scheduled before `fn` runs; `fn` must not throw.
 */
export function sampleEvery(clock: Clock, everyMs: number, fn: () => void): Timer {
  let timer: Timer | undefined;
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    timer = clock.setTimer(tick, everyMs);
    fn();
  };
  tick();
  return {
    cancel() {
      stopped = true;
      timer?.cancel();
    },
  };
}

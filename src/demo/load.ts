/**
 * Open-loop load generator for the demo, benchmarks and integration tests.
 *
 * Open loop means arrivals are scheduled by the clock at a fixed (or
 * time-varying) rate, independently of how fast responses come back, the way
 * real independent users behave. A closed-loop generator (N workers each
 * waiting for its previous response) slows down when the system under test
 * slows down, and so hides exactly the overload Sluice is meant to handle.
 *
 * Latency is measured from the INTENDED send time of each request, not from
 * when it actually left, so any delay in the generator itself (event loop
 * stalls, connection pool waits) is charged to the measured latency instead of
 * silently disappearing (no "coordinated omission").
 *
 * Bucketing: `offered` and `droppedByGenerator` are counted in the second the
 * arrival was scheduled; completions and latencies in the second the response
 * (or error) arrived. That is what a live dashboard shows, and it lets each
 * second be reported as soon as it is over. Completions during the drain phase
 * therefore appear in seconds after `durationMs`.
 */
import { Pool } from 'undici';

export interface LoadStream {
  /** Label in reports, e.g. 'interactive' or 'batch'. Must be unique. */
  name: string;
  /** Arrivals per second; a function gets seconds since the run started. */
  ratePerSecond: number | ((tSeconds: number) => number);
  /** Request path, appended to the path of `url` (if any). */
  path: string;
  method?: string;
  headers?: Record<string, string>;
  /** Optional request body (e.g. for POST streams). */
  body?: string;
}

export interface LoadOptions {
  /** Base URL; must point at a loopback address (the demo never loads remote hosts). */
  url: string;
  durationMs: number;
  streams: LoadStream[];
  /** Bound on outstanding requests; arrivals beyond it are dropped and counted. Default 10000. */
  maxInFlight?: number;
  /** Called once per elapsed second, in order, including drain seconds. */
  onSecond?: (s: SecondStats) => void;
  /** Called for every arrival once its fate is known (for callers that aggregate their own way, e.g. by phase). */
  onResult?: (r: RequestResult) => void;
  /** Connections in the undici pool. Default min(maxInFlight, 512). */
  connections?: number;
  /** Per-request timeout, counted from the intended send time. Default 30000. */
  requestTimeoutMs?: number;
  /** How long to wait for outstanding requests after the run. Default 10000. */
  drainTimeoutMs?: number;
}

/** One arrival's fate. */
export interface RequestResult {
  readonly stream: string;
  /** The intended send time, ms since the run started. */
  readonly atMs: number;
  /** ms from the intended send time to the response (or the error); null when dropped by the generator. */
  readonly latencyMs: number | null;
  /** The response's status; null when there was none. */
  readonly status: number | null;
  /** response; error (no response); timeout (requestTimeoutMs ran out: the client gave up); dropped (never sent: maxInFlight). */
  readonly kind: 'response' | 'error' | 'timeout' | 'dropped';
}

/** Latency percentiles in ms; null when there were no samples. */
export interface LatencyStats {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

export interface StreamCounts {
  /** Arrivals scheduled (including those dropped by the generator). */
  offered: number;
  /** Arrivals not sent because maxInFlight requests were already outstanding. */
  droppedByGenerator: number;
  /** Requests that finished with a response or an error. */
  completed: number;
  /** Any 2xx. */
  ok: number;
  s429: number;
  s502: number;
  s503: number;
  s504: number;
  /** Any other status code. */
  other: number;
  /** No response: connection errors and timeouts. */
  errors: number;
  /** Subset of `errors`: the request timed out. */
  timeouts: number;
  /** Responses (any status) that carried a Retry-After header. */
  withRetryAfter: number;
  /** Refusals (429/503) that did NOT carry Retry-After: Sluice's contract says this is 0. */
  refusedWithoutRetryAfter: number;
}

export interface StreamStats extends StreamCounts {
  /** Latency of 2xx responses. */
  latencyOk: LatencyStats;
  /** Latency of every completion (any status, and errors). */
  latencyAll: LatencyStats;
}

export interface SecondStats {
  /** Second index since the start of the run (0-based). */
  t: number;
  streams: Record<string, StreamStats>;
  total: StreamStats;
}

export interface LoadSummary {
  streams: Record<string, StreamStats>;
  total: StreamStats;
}

export interface LoadResult {
  /** Wall-clock start (epoch ms), for correlating with logs and metrics. */
  startedAt: number;
  durationMs: number;
  /** Time from start until the run fully finished, drain included. */
  elapsedMs: number;
  streamNames: string[];
  seconds: SecondStats[];
  summary: LoadSummary;
  /** Highest number of outstanding requests. */
  maxInFlightSeen: number;
  /** Worst delay between an intended send time and the actual send. */
  maxSendLagMs: number;
  /** Requests still outstanding after the drain timeout, aborted and not counted as completed. */
  unfinished: number;
  /** Error codes of failed requests (e.g. ECONNREFUSED, TIMEOUT), for diagnosis. */
  errorCodes: Record<string, number>;
}

const DEFAULT_MAX_IN_FLIGHT = 10_000;
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_DRAIN_MS = 10_000;
// Small enough that catch-up bursts stay short; the exact intended time of
// each arrival is computed anyway, so the tick only bounds send jitter.
const TICK_MS = 1;
// Rate functions are integrated in sub-steps of at most this size, so a long
// event-loop stall does not turn a ramp into a step.
const MAX_INTEGRATION_STEP_MS = 10;

/** Raw per-stream, per-second data; percentiles are computed when the second is reported. */
interface Bucket {
  counts: StreamCounts;
  latOk: number[];
  latAll: number[];
}

interface StreamState {
  def: LoadStream;
  index: number;
  rate: (tSeconds: number) => number;
  path: string;
  /** Integral of the rate up to `integratedTo` (expected number of arrivals). */
  acc: number;
  integratedTo: number;
  /** Index of the next arrival; arrival n happens when acc crosses n. */
  next: number;
}

interface Outstanding {
  stream: number;
  intended: number;
  controller: AbortController;
  done: boolean;
}

function emptyCounts(): StreamCounts {
  return {
    offered: 0,
    droppedByGenerator: 0,
    completed: 0,
    ok: 0,
    s429: 0,
    s502: 0,
    s503: 0,
    s504: 0,
    other: 0,
    errors: 0,
    timeouts: 0,
    withRetryAfter: 0,
    refusedWithoutRetryAfter: 0,
  };
}

function addCounts(into: StreamCounts, from: StreamCounts): void {
  for (const key of Object.keys(into) as (keyof StreamCounts)[]) into[key] += from[key];
}

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil(p * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))] ?? null;
}

function latencyStats(samples: number[]): LatencyStats {
  const sorted = Float64Array.from(samples).sort();
  const arr = Array.from(sorted);
  const round = (v: number | null): number | null => (v === null ? null : Math.round(v * 10) / 10);
  return {
    count: arr.length,
    p50: round(percentile(arr, 0.5)),
    p90: round(percentile(arr, 0.9)),
    p99: round(percentile(arr, 0.99)),
    max: round(arr.length ? (arr[arr.length - 1] ?? null) : null),
  };
}

function statsOf(buckets: Bucket[]): StreamStats {
  const counts = emptyCounts();
  const latOk: number[] = [];
  const latAll: number[] = [];
  for (const b of buckets) {
    addCounts(counts, b.counts);
    for (const v of b.latOk) latOk.push(v);
    for (const v of b.latAll) latAll.push(v);
  }
  return { ...counts, latencyOk: latencyStats(latOk), latencyAll: latencyStats(latAll) };
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function errorCode(err: unknown): string {
  if (err && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const name = (err as { name?: unknown }).name;
    if (typeof name === 'string') return name;
  }
  return 'UNKNOWN';
}

function validate(opts: LoadOptions): URL {
  const base = new URL(opts.url);
  if (base.protocol !== 'http:') throw new Error(`runOpenLoop: only http: URLs are supported, got ${opts.url}`);
  if (!isLoopback(base.hostname)) {
    throw new Error(`runOpenLoop: refusing to generate load against non-loopback host ${base.hostname}`);
  }
  if (!(opts.durationMs > 0)) throw new RangeError('runOpenLoop: durationMs must be > 0');
  if (opts.streams.length === 0) throw new RangeError('runOpenLoop: at least one stream is required');
  const names = opts.streams.map((s) => s.name);
  if (new Set(names).size !== names.length) throw new RangeError('runOpenLoop: stream names must be unique');
  return base;
}

/** One run: the arrivals' schedule, the requests outstanding, the per-second buckets. */
class OpenLoop {
  private readonly maxInFlight: number;
  private readonly timeoutMs: number;
  private readonly pool: Pool;
  private readonly streams: StreamState[];
  /** buckets[second][streamIndex] */
  private readonly buckets: Bucket[][] = [];
  // Set keeps insertion order, which is (almost exactly) intended-time order,
  // so the timeout sweep only ever looks at the oldest few entries.
  private readonly outstanding = new Set<Outstanding>();
  private readonly errorCodes: Record<string, number> = {};
  private readonly seconds: SecondStats[] = [];
  private maxInFlightSeen = 0;
  private maxSendLagMs = 0;
  private reported = 0;
  private readonly startedAt = Date.now();
  private readonly t0 = performance.now();
  private readonly endAt: number;

  constructor(
    private readonly opts: LoadOptions,
    base: URL,
  ) {
    this.maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.timeoutMs = opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.pool = new Pool(base.origin, {
      connections: opts.connections ?? Math.min(this.maxInFlight, 512),
      pipelining: 1,
      // Our own per-request deadline (below) is authoritative; undici's phase
      // timeouts are only a backstop set just beyond it.
      headersTimeout: this.timeoutMs + 1_000,
      bodyTimeout: this.timeoutMs + 1_000,
    });
    const basePath = base.pathname.replace(/\/+$/, '');
    this.streams = opts.streams.map((def, index) => {
      const r = def.ratePerSecond;
      const rate = typeof r === 'number' ? () => r : r;
      const path = basePath + (def.path.startsWith('/') ? def.path : `/${def.path}`);
      return { def, index, rate, path, acc: 0, integratedTo: 0, next: 0 };
    });
    this.endAt = this.t0 + opts.durationMs;
  }

  async run(): Promise<LoadResult> {
    const drainMs = this.opts.drainTimeoutMs ?? DEFAULT_DRAIN_MS;
    let scheduling = true;
    await new Promise<void>((resolve) => {
      const drainDeadline = this.endAt + drainMs;
      const timer = setInterval(() => {
        const now = performance.now();
        if (scheduling) {
          this.schedule(now);
          if (now >= this.endAt) scheduling = false;
        }
        this.sweepTimeouts(now);
        this.reportUpTo(this.secondOf(now));
        if (!scheduling && (this.outstanding.size === 0 || now >= drainDeadline)) {
          clearInterval(timer);
          resolve();
        }
      }, TICK_MS);
      this.schedule(performance.now());
    });
    // Whatever is still outstanding after the drain budget is abandoned: it is
    // reported separately rather than as an error of the system under test.
    const unfinished = this.outstanding.size;
    for (const o of this.outstanding) {
      o.done = true;
      o.controller.abort(new Error('load run finished'));
    }
    this.outstanding.clear();
    await this.pool.destroy().catch(() => undefined);
    return this.result(unfinished, performance.now());
  }

  private result(unfinished: number, finishedAt: number): LoadResult {
    const { opts, buckets, streams } = this;
    // Include the final partial second and any drain seconds with data, but no
    // trailing empty row for a run that ended just past a second boundary.
    this.reportUpTo(Math.max(Math.ceil(opts.durationMs / 1000), buckets.length));
    const summaryStreams: Record<string, StreamStats> = {};
    for (const st of streams) summaryStreams[st.def.name] = statsOf(buckets.map((row) => row?.[st.index] as Bucket).filter(Boolean));
    return {
      startedAt: this.startedAt,
      durationMs: opts.durationMs,
      elapsedMs: Math.round(finishedAt - this.t0),
      streamNames: opts.streams.map((s) => s.name),
      seconds: this.seconds,
      summary: { streams: summaryStreams, total: statsOf(buckets.flatMap((row) => row ?? [])) },
      maxInFlightSeen: this.maxInFlightSeen,
      maxSendLagMs: Math.round(this.maxSendLagMs * 10) / 10,
      unfinished,
      errorCodes: this.errorCodes,
    };
  }

  private secondOf(t: number): number {
    return Math.max(0, Math.floor((t - this.t0) / 1000));
  }

  private bucket(second: number, stream: number): Bucket {
    let row = this.buckets[second];
    if (!row) {
      row = this.streams.map(() => ({ counts: emptyCounts(), latOk: [], latAll: [] }));
      this.buckets[second] = row;
    }
    return row[stream] as Bucket;
  }

  private complete(o: Outstanding, status: number | null, retryAfter: boolean, err?: unknown): void {
    if (o.done) return;
    o.done = true;
    this.outstanding.delete(o);
    const now = performance.now();
    const latency = now - o.intended;
    const b = this.bucket(this.secondOf(now), o.stream);
    const c = b.counts;
    c.completed++;
    b.latAll.push(latency);
    const code = status === null ? errorCode(err) : '';
    this.tell(o.stream, o.intended, latency, status, status !== null ? 'response' : code === 'TIMEOUT' ? 'timeout' : 'error');
    if (status === null) {
      c.errors++;
      if (code === 'TIMEOUT') c.timeouts++;
      this.errorCodes[code] = (this.errorCodes[code] ?? 0) + 1;
      return;
    }
    if (retryAfter) c.withRetryAfter++;
    if (status >= 200 && status < 300) {
      c.ok++;
      b.latOk.push(latency);
    } else if (status === 429) c.s429++;
    else if (status === 503) c.s503++;
    else if (status === 502) c.s502++;
    else if (status === 504) c.s504++;
    else c.other++;
    if ((status === 429 || status === 503) && !retryAfter) c.refusedWithoutRetryAfter++;
  }

  private tell(stream: number, intended: number, latencyMs: number | null, status: number | null, kind: RequestResult['kind']): void {
    const onResult = this.opts.onResult;
    if (onResult === undefined) return;
    try {
      onResult({ stream: (this.streams[stream] as StreamState).def.name, atMs: intended - this.t0, latencyMs, status, kind });
    } catch {
      /* a throwing callback must not break the run */
    }
  }

  private send(st: StreamState, intended: number): void {
    const b = this.bucket(this.secondOf(intended), st.index);
    b.counts.offered++;
    if (this.outstanding.size >= this.maxInFlight) {
      // Never queue inside the generator: an unbounded backlog here would
      // turn the open loop into a memory leak and distort the measurement.
      b.counts.droppedByGenerator++;
      this.tell(st.index, intended, null, null, 'dropped');
      return;
    }
    const o: Outstanding = { stream: st.index, intended, controller: new AbortController(), done: false };
    this.outstanding.add(o);
    if (this.outstanding.size > this.maxInFlightSeen) this.maxInFlightSeen = this.outstanding.size;
    const lag = performance.now() - intended;
    if (lag > this.maxSendLagMs) this.maxSendLagMs = lag;
    this.pool
      .request({ path: st.path, method: st.def.method ?? 'GET', headers: st.def.headers, body: st.def.body, signal: o.controller.signal })
      .then(async (res) => {
        const retryAfter = res.headers['retry-after'] !== undefined;
        // Latency includes reading the body: the request is done when the
        // client has the whole response, and reading it frees the connection.
        await res.body.dump({ limit: 1 << 20 });
        this.complete(o, res.statusCode, retryAfter);
      })
      .catch((err: unknown) => this.complete(o, null, false, err));
  }

  /** Schedules every arrival whose intended time is <= now (and < endAt). */
  private schedule(now: number): void {
    const { t0 } = this;
    const until = Math.min(now, this.endAt);
    for (const st of this.streams) {
      let from = st.integratedTo + t0;
      while (from < until) {
        const to = Math.min(until, from + MAX_INTEGRATION_STEP_MS);
        const dt = to - from;
        // Midpoint rule: exact for constant rates, accurate for ramps.
        const raw = st.rate((from + dt / 2 - t0) / 1000);
        const rate = Number.isFinite(raw) && raw > 0 ? raw : 0;
        const accFrom = st.acc;
        const accTo = accFrom + (rate * dt) / 1000;
        // Arrival n is due when the expected count crosses n; its intended
        // time is interpolated inside the step, so late ticks catch up with
        // correctly back-dated sends instead of bunching them at "now".
        // The epsilon absorbs floating-point drift of the running sum, which
        // would otherwise add a phantom arrival right at the end of the run.
        while (st.next < accTo - 1e-9) {
          this.send(st, from + ((st.next - accFrom) / rate) * 1000);
          st.next++;
        }
        st.acc = accTo;
        from = to;
      }
      st.integratedTo = until - t0;
    }
  }

  private sweepTimeouts(now: number): void {
    for (const o of this.outstanding) {
      if (o.intended + this.timeoutMs > now) break;
      const err = Object.assign(new Error('request timed out'), { code: 'TIMEOUT' });
      this.complete(o, null, false, err);
      o.controller.abort(err);
    }
  }

  private snapshot(second: number): SecondStats {
    const row = this.buckets[second] ?? this.streams.map(() => ({ counts: emptyCounts(), latOk: [], latAll: [] }));
    const perStream: Record<string, StreamStats> = {};
    for (const st of this.streams) perStream[st.def.name] = statsOf([row[st.index] as Bucket]);
    return { t: second, streams: perStream, total: statsOf(row) };
  }

  private reportUpTo(secondExclusive: number): void {
    while (this.reported < secondExclusive) {
      const s = this.snapshot(this.reported);
      this.seconds.push(s);
      this.reported++;
      // A throwing callback must not kill the run and leave sockets open.
      try {
        this.opts.onSecond?.(s);
      } catch {
        /* ignore reporting errors */
      }
    }
  }
}

export async function runOpenLoop(opts: LoadOptions): Promise<LoadResult> {
  return new OpenLoop(opts, validate(opts)).run();
}

// ---------------------------------------------------------------------------
// Plain-text reporting

function fmtMs(v: number | null): string {
  if (v === null) return '-';
  return v >= 100 ? String(Math.round(v)) : v.toFixed(1);
}

/** One row per stream plus total, over the whole run. */
export function formatSummary(result: LoadResult): string {
  const columns = [
    'stream', 'offered', 'ok', 'ok%', '429', '503', '502', '504', 'other', 'err', 'drop',
    'p50ok', 'p90ok', 'p99ok', 'maxok', 'p50all', 'p99all', 'retry-after',
  ];
  const rows: string[][] = [];
  const entries: [string, StreamStats][] = Object.entries(result.summary.streams);
  if (entries.length > 1) entries.push(['total', result.summary.total]);
  for (const [name, st] of entries) {
    const okPct = st.offered > 0 ? ((100 * st.ok) / st.offered).toFixed(1) : '-';
    rows.push([
      name,
      String(st.offered),
      String(st.ok),
      okPct,
      String(st.s429),
      String(st.s503),
      String(st.s502),
      String(st.s504),
      String(st.other),
      String(st.errors),
      String(st.droppedByGenerator),
      fmtMs(st.latencyOk.p50),
      fmtMs(st.latencyOk.p90),
      fmtMs(st.latencyOk.p99),
      fmtMs(st.latencyOk.max),
      fmtMs(st.latencyAll.p50),
      fmtMs(st.latencyAll.p99),
      String(st.withRetryAfter),
    ]);
  }
  // Stream names first, then right-aligned numbers: compute widths from data.
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const out = [line(columns), ...rows.map(line)];
  const notes = [
    `duration ${result.durationMs} ms, elapsed ${result.elapsedMs} ms (incl. drain), ` +
      `max in flight ${result.maxInFlightSeen}, max send lag ${result.maxSendLagMs} ms`,
    'latencies in ms from the intended send time; "ok" = 2xx; "err" = no response; "drop" = not sent (generator maxInFlight)',
  ];
  if (result.unfinished > 0) notes.push(`unfinished (aborted after drain timeout): ${result.unfinished}`);
  const codes = Object.entries(result.errorCodes);
  if (codes.length > 0) notes.push(`errors: ${codes.map(([k, v]) => `${k}=${v}`).join(', ')}`);
  const refusedNoRA = result.summary.total.refusedWithoutRetryAfter;
  if (refusedNoRA > 0) notes.push(`429/503 responses without Retry-After: ${refusedNoRA}`);
  return [...out, ...notes].join('\n');
}

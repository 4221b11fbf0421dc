/**
 * The benchmarks' open-loop load generator (undici + HdrHistogram).
 *
 * Open loop: arrival k of a stream is due at t0 + k / rate, whatever the
 * system under test is doing; a slow answer never delays the next send.
 * Latency is measured from that INTENDED send time, not from when the
 * request actually left, so a stall anywhere (the proxy, the generator's own
 * event loop, a connection wait) is charged to the latency instead of
 * silently thinning the load: no coordinated omission.
 *
 * In-flight requests are capped (`maxInFlight`); an arrival that finds the
 * cap reached is not sent and counted as `dropped`. That keeps the generator
 * bounded in memory, and with an offered rate above what the target can do
 * it turns the run into a saturation measurement: throughput = answers per
 * second while `maxInFlight` requests are always outstanding.
 *
 * Per stream it records 200s, refusals by `status:reason` (parsed from
 * Sluice's JSON body), other statuses and errors, HdrHistograms of latency
 * (microsecond resolution, 3 significant digits) over the whole run and per
 * second (by completion time, as a dashboard would show it).
 */
import { build, type Histogram } from 'hdr-histogram-js';
import type { IncomingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';

export interface StreamSpec {
  /** Unique label, e.g. 'interactive'. */
  readonly name: string;
  /** Arrivals per second (constant for the run). */
  readonly rate: number;
  readonly path: string;
  readonly headers?: Record<string, string>;
}

export interface LoadSpec {
  /** Base URL of the target; must be loopback. */
  readonly url: string;
  readonly durationMs: number;
  readonly streams: readonly StreamSpec[];
  /** Sockets to the target. */
  readonly connections: number;
  /** Cap on outstanding requests; arrivals beyond it are dropped and counted. */
  readonly maxInFlight: number;
  /** Per-request timeout from the intended send time. */
  readonly timeoutMs: number;
  /**
   * Optional phase boundaries in ms since the start, ascending: latencies and
   * counts are also kept per phase (by intended send time), e.g. [20000, 40000]
   * gives three phases.
   */
  readonly phasesMs?: readonly number[];
}

export interface PhaseResult {
  readonly ok: number;
  readonly refused: number;
  readonly other: number;
  readonly latencyOk: Percentiles;
}

export interface Percentiles {
  readonly count: number;
  /** Milliseconds; null without samples. */
  readonly p50: number | null;
  readonly p90: number | null;
  readonly p99: number | null;
  readonly p999: number | null;
  readonly max: number | null;
}

export interface StreamResult {
  /** Arrivals due during the run. */
  readonly offered: number;
  /** Not sent: maxInFlight was reached. */
  readonly dropped: number;
  readonly ok: number;
  /** Refusals (429/503) by "status:reason". */
  readonly refused: Record<string, number>;
  /** Refusals without an integer Retry-After >= 1 or without a JSON reason. */
  readonly badRefusals: number;
  /** Other statuses by status code. */
  readonly other: Record<string, number>;
  /** No answer, by error code (TIMEOUT for our own timeout). */
  readonly errors: Record<string, number>;
  /** Latency of 200s, from the intended send time. */
  readonly latencyOk: Percentiles;
  /** Latency of refusals. */
  readonly latencyRefused: Percentiles;
  /** Per phase, when `phasesMs` was given. */
  readonly phases: readonly PhaseResult[];
}

export interface SecondResult {
  /** Seconds since the start (completion time). */
  readonly t: number;
  readonly streams: Record<string, { readonly ok: number; readonly refused: number; readonly other: number; readonly p50: number | null; readonly p99: number | null }>;
}

export interface LoadResult {
  /** Epoch ms of the generator's t0 (arrival 0 of every stream). */
  readonly startedAtEpochMs: number;
  readonly durationMs: number;
  /** CPU seconds the generator process used (user + system): is the generator the bottleneck? */
  readonly cpuSeconds: number;
  readonly elapsedMs: number;
  /** Worst delay between an intended send time and the actual send. */
  readonly maxSendLagMs: number;
  /** Requests still outstanding at the end of the drain budget (aborted). */
  readonly unfinished: number;
  readonly streams: Record<string, StreamResult>;
  readonly seconds: readonly SecondResult[];
}

const TICK_MS = 1;
const DRAIN_MS = 5_000;

function histogram(): Histogram {
  // Microseconds; auto-resizes past the initial range.
  return build({ bitBucketSize: 'packed', lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
}

function ms(us: number): number {
  return Math.round(us / 10) / 100;
}

function percentiles(h: Histogram): Percentiles {
  const n = h.totalCount;
  const at = (p: number): number | null => (n === 0 ? null : ms(h.getValueAtPercentile(p)));
  return { count: n, p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: n === 0 ? null : ms(h.maxValue) };
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

const RETRY_AFTER = /^[1-9][0-9]*$/;
const REASON = /"reason":"([a-z_]+)"/;

class PhaseState {
  ok = 0;
  refused = 0;
  other = 0;
  readonly lat = histogram();
}

class StreamState {
  offered = 0;
  dropped = 0;
  ok = 0;
  badRefusals = 0;
  readonly refused: Record<string, number> = {};
  readonly other: Record<string, number> = {};
  readonly errors: Record<string, number> = {};
  readonly latOk = histogram();
  readonly latRefused = histogram();
  // The current second's counters and histogram, reset when it is reported.
  secOk = 0;
  secRefused = 0;
  secOther = 0;
  readonly secLat = histogram();
  /** Index of the next arrival. */
  next = 0;
  readonly intervalMs: number;
  readonly phases: PhaseState[];
  constructor(
    readonly spec: StreamSpec,
    phaseCount: number,
  ) {
    this.intervalMs = 1000 / spec.rate;
    this.phases = Array.from({ length: phaseCount }, () => new PhaseState());
  }
}

/**
 * One outstanding request, and its undici dispatch handler: the low-level
 * callback API instead of `request()`, so no body stream or promise is made
 * per request. That roughly halves the generator's CPU per request, which
 * matters when it has to outrun a proxy that only refuses.
 */
class Outstanding implements Dispatcher.DispatchHandler {
  status = 0;
  badRefusal = false;
  /** Body chunks, kept only for refusals (to read their reason). */
  chunks: Buffer[] | null = null;
  controller: Dispatcher.DispatchController | null = null;
  /** Set when the request must stop (timeout, end of run) before undici started it. */
  abortWith: Error | null = null;
  constructor(
    readonly run: RunState,
    readonly stream: StreamState,
    readonly intended: number,
    readonly phase: PhaseState,
  ) {}
  abort(err: Error): void {
    if (this.controller !== null) this.controller.abort(err);
    else this.abortWith = err;
  }
  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortWith !== null) controller.abort(this.abortWith);
  }
  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.status = statusCode;
    if (statusCode === 429 || statusCode === 503) {
      this.chunks = [];
      const ra = headers['retry-after'];
      this.badRefusal = typeof ra !== 'string' || !RETRY_AFTER.test(ra);
    }
  }
  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks?.push(chunk);
  }
  onResponseEnd(): void {
    const body = this.chunks === null ? null : Buffer.concat(this.chunks).toString('utf8');
    this.run.answered(this, this.status, body, this.badRefusal || (body !== null && !REASON.test(body)));
  }
  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.run.failed(this, err);
  }
}

interface RunState {
  answered(o: Outstanding, status: number, body: string | null, bad: boolean): void;
  failed(o: Outstanding, err: unknown): void;
}

const TIMEOUT = Object.assign(new Error('request timed out'), { code: 'TIMEOUT' });

/** `onStart` is called at t0 with the epoch ms, before the first arrival. */
export async function runLoad(spec: LoadSpec, onStart?: (epochMs: number) => void): Promise<LoadResult> {
  const base = new URL(spec.url);
  if (base.protocol !== 'http:' || !isLoopback(base.hostname)) throw new Error(`loadgen: only http on loopback, got ${spec.url}`);
  if (!(spec.durationMs > 0)) throw new RangeError('loadgen: durationMs must be > 0');
  for (const s of spec.streams) if (!(s.rate > 0)) throw new RangeError(`loadgen: stream ${s.name}: rate must be > 0`);

  const pool = new Pool(base.origin, {
    connections: spec.connections,
    pipelining: 1,
    headersTimeout: spec.timeoutMs + 1_000,
    bodyTimeout: spec.timeoutMs + 1_000,
  });
  const bounds = spec.phasesMs ?? [];
  const streams = spec.streams.map((s) => new StreamState(s, bounds.length + 1));
  const seconds: SecondResult[] = [];
  // Insertion order = intended-time order, so the timeout sweep stops at the first young entry.
  const outstanding = new Set<Outstanding>();
  let maxSendLag = 0;

  const cpuAtStart = process.cpuUsage();
  const startedAtEpochMs = Date.now();
  const t0 = performance.now();
  onStart?.(startedAtEpochMs);
  const endAt = t0 + spec.durationMs;
  let reportedSecond = 0;

  function reportSecond(): void {
    const row: Record<string, SecondResult['streams'][string]> = {};
    for (const st of streams) {
      const p = percentiles(st.secLat);
      row[st.spec.name] = { ok: st.secOk, refused: st.secRefused, other: st.secOther, p50: p.p50, p99: p.p99 };
      st.secOk = 0;
      st.secRefused = 0;
      st.secOther = 0;
      st.secLat.reset();
    }
    seconds.push({ t: reportedSecond, streams: row });
    reportedSecond++;
  }

  /** `body` is read only for refusals; `bad` = a refusal without an integer Retry-After or a JSON reason. */
  function answered(o: Outstanding, status: number, body: string | null, bad: boolean): void {
    if (!outstanding.delete(o)) return; // already timed out
    const st = o.stream;
    const latency = (performance.now() - o.intended) * 1000;
    if (status === 200) {
      st.ok++;
      st.secOk++;
      st.latOk.recordValue(latency);
      st.secLat.recordValue(latency);
      o.phase.ok++;
      o.phase.lat.recordValue(latency);
    } else if (body !== null) {
      if (bad) st.badRefusals++;
      o.phase.refused++;
      const reason = REASON.exec(body)?.[1] ?? 'unknown';
      const key = `${status}:${reason}`;
      st.refused[key] = (st.refused[key] ?? 0) + 1;
      st.secRefused++;
      st.latRefused.recordValue(latency);
    } else {
      st.other[status] = (st.other[status] ?? 0) + 1;
      st.secOther++;
      o.phase.other++;
    }
  }

  function failed(o: Outstanding, err: unknown): void {
    if (!outstanding.delete(o)) return;
    const e = err as { code?: string; name?: string } | undefined;
    const code = e?.code ?? e?.name ?? 'UNKNOWN';
    const st = o.stream;
    st.errors[code] = (st.errors[code] ?? 0) + 1;
    st.secOther++;
    o.phase.other++;
  }

  function send(st: StreamState, intended: number): void {
    st.offered++;
    if (outstanding.size >= spec.maxInFlight) {
      st.dropped++;
      return;
    }
    const lag = performance.now() - intended;
    if (lag > maxSendLag) maxSendLag = lag;
    let phase = 0;
    while (phase < bounds.length && intended - t0 >= (bounds[phase] as number)) phase++;
    const o = new Outstanding(run, st, intended, st.phases[phase] as PhaseState);
    outstanding.add(o);
    pool.dispatch({ path: st.spec.path, method: 'GET', headers: st.spec.headers }, o);
  }

  const run: RunState = { answered, failed };

  function sweepTimeouts(now: number): void {
    for (const o of outstanding) {
      if (o.intended + spec.timeoutMs > now) break;
      failed(o, TIMEOUT);
      o.abort(TIMEOUT);
    }
  }

  /** Sends every arrival due by `now` (and before the end), each with its exact intended time. */
  function schedule(now: number): void {
    const until = Math.min(now, endAt);
    for (const st of streams) {
      for (let intended = t0 + st.next * st.intervalMs; intended <= until && intended < endAt; intended = t0 + st.next * st.intervalMs) {
        st.next++;
        send(st, intended);
      }
    }
  }

  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      schedule(now);
      sweepTimeouts(now);
      while (now - t0 >= (reportedSecond + 1) * 1000) reportSecond();
      if (now >= endAt && (outstanding.size === 0 || now >= endAt + DRAIN_MS)) {
        clearInterval(timer);
        resolve();
      }
    }, TICK_MS);
  });
  const unfinished = outstanding.size;
  const over = new Error('run over');
  for (const o of [...outstanding]) {
    outstanding.delete(o);
    o.abort(over);
  }
  await pool.destroy().catch(() => undefined);
  const elapsedMs = performance.now() - t0;
  // The last partial second, when it has data.
  if (streams.some((st) => st.secOk + st.secRefused + st.secOther > 0)) reportSecond();

  const results: Record<string, StreamResult> = {};
  for (const st of streams) {
    results[st.spec.name] = {
      offered: st.offered,
      dropped: st.dropped,
      ok: st.ok,
      refused: st.refused,
      badRefusals: st.badRefusals,
      other: st.other,
      errors: st.errors,
      latencyOk: percentiles(st.latOk),
      latencyRefused: percentiles(st.latRefused),
      phases: bounds.length === 0 ? [] : st.phases.map((p) => ({ ok: p.ok, refused: p.refused, other: p.other, latencyOk: percentiles(p.lat) })),
    };
  }
  const cpu = process.cpuUsage(cpuAtStart);
  return {
    startedAtEpochMs,
    durationMs: spec.durationMs,
    cpuSeconds: Math.round((cpu.user + cpu.system) / 1000) / 1000,
    elapsedMs: Math.round(elapsedMs),
    maxSendLagMs: Math.round(maxSendLag * 10) / 10,
    unfinished,
    streams: results,
    seconds,
  };
}

/**
 * Prometheus metrics (../shared/DESIGN.md §7), one Registry per Sluice
 * instance so several instances in one process never collide.
 *
 * Two kinds of numbers:
 * - Events (admitted, refused, queue wait, upstream latency, ...) arrive
 *   through ProxyEvents, which this class implements. Each route is bound
 *   once (on its first event) to its cells, so a request costs a WeakMap
 *   lookup and a few field increments: no label hashing on the hot path.
 *   Cells are keyed by route and lane *name*, so a route that survives a
 *   config reload (a new RouteRuntime object with the same name) keeps
 *   counting in the same series.
 * - State (in-flight, queue depth, limit, overloaded, oldest queued, backlog)
 *   is read at scrape time from the same route view /admin/state shows, by
 *   gauges' collect(); nothing is updated per request for them.
 *
 * Node's default process metrics (prom-client's collectDefaultMetrics) are
 * created once per process and the same metric objects are registered on
 * every instance's registry: they describe the process, and creating them per
 * instance would leave a GC observer and an event-loop monitor behind for
 * every instance ever built.
 */
import { Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { RouteConfig } from '../config/types.js';
import type { Outcome } from '../core/limiter/limiter.js';
import { REFUSAL_STATUS, type Refusal, type RefusalReason } from '../core/limiter/refusal.js';
import { CLIENT_ERROR_CODES, ERROR_CODES, ERRORS, type ErrorCode } from '../proxy/errors.js';
import type { ProxyEvents } from '../proxy/events.js';
import type { RouteRuntime } from '../proxy/runtime.js';
import type { ListenerView } from '../proxy/front.js';
import { registerProtocolMetrics } from './protocol-metrics.js';
import { registerStateGauges } from './state-gauges.js';
import type { RouteState } from './state.js';
import { CounterFamily, HistogramFamily, type CounterCell, type HistogramCell } from './families.js';
import type { HistogramTotals, RouteTotals } from './history.js';

/** Seconds; from sub-millisecond waits up to the longest sensible maxWaitMs. */
const QUEUE_WAIT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds, dispatch to response headers. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Whole seconds, as sent in Retry-After. */
const RETRY_AFTER_BUCKETS = [1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 300];

const REASONS = Object.keys(REFUSAL_STATUS) as RefusalReason[];
const SETTLE_RESULTS: readonly Outcome[] = ['success', 'dropped', 'ignore'];

/** sluice_upstream_errors_total{kind}: each upstream code's kind (proxy/errors.ts). */
const ERROR_KINDS = [...new Set(ERROR_CODES.filter((c) => ERRORS[c].fault === 'upstream').map((c) => ERRORS[c].kind)), 'other'];


const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

export type ReloadResult = 'success' | 'error';

interface BoundLane {
  readonly admitted: CounterCell;
  readonly refused: CounterCell;
  readonly shadowRefused: CounterCell;
  readonly abandoned: CounterCell;
  readonly rejections: Readonly<Record<RefusalReason, CounterCell>>;
  readonly settled: Readonly<Record<Outcome, CounterCell>>;
  readonly queueWait: HistogramCell;
  /** Upstream latency by status class 1..5 (index 0 unused), created on the lane's first response of that class. */
  readonly latency: (HistogramCell | undefined)[];
}

interface BoundRoute {
  readonly name: string;
  readonly lanes: readonly BoundLane[];
  /** By refusal status (429, 503), created on first refusal with it. */
  readonly retryAfter: Map<number, HistogramCell>;
  readonly errors: Readonly<Record<string, CounterCell>>;
}

export interface MetricsOptions {
  /** sluice_info{version}. */
  readonly version: string;
  /** The routes as /admin/state shows them; read at scrape time. */
  readonly routes: () => readonly RouteState[];
  /** Refusal log lines suppressed by sampling since start (read at scrape time). */
  readonly suppressedLogLines?: () => number;
  /** The shared client rate store: true while it is asked (connected, not suspended), false while failing open; null when there is none. */
  readonly rateStoreUp?: () => boolean | null;
  /**
   * sluice_info and the config reload metrics (default true). A worker leaves
   * them out: the primary owns reloads and reports them once for the instance
   * (instance/cluster/), where every other series is summed over the workers.
   */
  readonly perInstance?: boolean;
  /** The proxy listener's protocols (TLS, HTTP/2, WebSockets); read at scrape time. */
  readonly listener?: () => ListenerView;
}

/** Totals per lane for /admin/state (the live page derives rates from them). */
export interface LaneTotals {
  readonly admitted: number;
  readonly refused: number;
}

let processMetrics: readonly Metric[] | null = null;

/**
 * prom-client's default process metrics, created once per process. Left out:
 * nodejs_active_{handles,requests,resources}_total, gauges whose `_total`
 * suffix Prometheus reserves for counters (`promtool check metrics` rejects
 * them); the same numbers are the sum over `type` of their unsuffixed
 * per-type gauges, which stay.
 */
function sharedProcessMetrics(): readonly Metric[] {
  if (processMetrics === null) {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    // getMetricsAsArray() returns the metric instances themselves (typed loosely by prom-client).
    const all = registry.getMetricsAsArray() as unknown as (Metric & { name: string; type: string })[];
    processMetrics = all.filter((m) => !(m.name.endsWith('_total') && m.type !== 'counter'));
  }
  return processMetrics;
}

export class Metrics implements ProxyEvents {
  readonly registry = new Registry();
  private readonly bound = new WeakMap<RouteRuntime, BoundRoute>();

  private readonly requests = new CounterFamily(
    'sluice_requests_total',
    'Requests that reached a route, by what admission decided: admitted (forwarded), refused (503/429), shadow_refused (would have been refused; forwarded in shadow mode), abandoned (the client left while queued).',
    ['route', 'lane', 'outcome'],
  );
  private readonly rejections = new CounterFamily(
    'sluice_rejections_total',
    'Requests refused by admission, by reason code and HTTP status.',
    ['route', 'lane', 'reason', 'status'],
  );
  private readonly settled = new CounterFamily(
    'sluice_settled_total',
    'Admitted requests that finished, by what the limit learned: success (RTT sample), dropped (upstream overload or timeout), ignore (client abort, non-overload error).',
    ['route', 'lane', 'result'],
  );
  private readonly queueWait = new HistogramFamily(
    'sluice_queue_wait_seconds',
    'Time a request spent waiting for a slot: 0 for requests admitted at once; includes requests refused after waiting (queue_timeout, deadline) and clients that left while queued. Refusals at the door are not included.',
    ['route', 'lane'],
    QUEUE_WAIT_BUCKETS,
  );
  private readonly latency = new HistogramFamily(
    'sluice_upstream_latency_seconds',
    'Upstream latency from dispatch to response headers, by lane of the request and response status class.',
    ['route', 'lane', 'status_class'],
    LATENCY_BUCKETS,
  );
  private readonly retryAfter = new HistogramFamily(
    'sluice_retry_after_seconds',
    'Retry-After values sent with refusals.',
    ['route', 'status'],
    RETRY_AFTER_BUCKETS,
  );
  private readonly upstreamErrors = new CounterFamily(
    'sluice_upstream_errors_total',
    'Upstream requests that failed: without a response (refused, reset, timeout (headers), connect_timeout, unreachable, bad_response, deadline_exceeded: the caller\'s budget ran out first), or mid-body (body_timeout, body_reset: the client\'s stream was cut).',
    ['route', 'kind'],
  );
  private readonly clientErrors = new CounterFamily(
    'sluice_client_errors_total',
    'Requests Sluice answered with a 4xx itself before admission: bad_request (unparsable), request_timeout (slow head or body), headers_too_large, bad_path, bad_deadline, no_route, method_not_allowed.',
    ['code'],
  );
  private readonly clientErrorCells = new Map<ErrorCode, CounterCell>();
  private readonly reloads = new CounterFamily(
    'sluice_config_reloads_total',
    'Config reloads, by result (error: the new file was invalid and the running config was kept).',
    ['result'],
  );
  private readonly rateStoreErrors = new CounterFamily(
    'sluice_rate_store_errors_total',
    'Failures of the shared client rate store (clients.rate.store), by kind: timeout (no answer within timeoutMs), error (a failed call), unavailable (a request answered by the local bucket because the store was down), connection (connection lost or refused; it reconnects by itself). Requests are answered by the local bucket meanwhile (fail open).',
    ['kind'],
  );
  /** The last reload's result (the config loaded at start counts as a success) and when one last succeeded. */
  private lastReload = { ok: true, successAtMs: Date.now() };
  /** The config of the routes in force, by name (set by bindRoutes on start and after each reload). */
  private readonly routeConfigs = new Map<string, RouteConfig>();

  constructor(private readonly opts: MetricsOptions) {
    const r = this.registry;
    const perInstance = opts.perInstance ?? true;
    for (const f of [this.requests, this.rejections, this.settled, this.queueWait, this.latency, this.retryAfter, this.upstreamErrors, this.clientErrors, this.rateStoreErrors]) {
      r.registerMetric(f.asMetric());
    }
    if (perInstance) r.registerMetric(this.reloads.asMetric());
    for (const code of CLIENT_ERROR_CODES) this.clientErrorCells.set(code, this.clientErrors.cell(code));
    this.reloads.cell('success');
    this.reloads.cell('error');
    for (const kind of ['timeout', 'error', 'unavailable', 'connection']) this.rateStoreErrors.cell(kind);

    const suppressed = opts.suppressedLogLines;
    if (suppressed !== undefined) {
      const family = new CounterFamily(
        'sluice_log_suppressed_total',
        'Refusal log lines not written because of log sampling (each written line also carries the count it follows).',
        [],
      );
      const cell = family.cell();
      family.collect = () => void (cell.value = suppressed());
      r.registerMetric(family.asMetric());
    }

    const storeUp = opts.rateStoreUp;
    if (storeUp !== undefined) {
      new Gauge({
        name: 'sluice_rate_store_up',
        help: 'The shared client rate store (clients.rate.store): 1 while it is asked, 0 while requests are decided by the local buckets (down or suspended). No sample without a shared store.',
        labelNames: ['store'],
        registers: [r],
        // Across workers: 0 while any worker fails open.
        aggregator: 'min',
        collect() {
          const up = storeUp();
          this.reset();
          if (up !== null) this.set({ store: 'redis' }, up ? 1 : 0);
        },
      });
    }

    if (perInstance) {
      new Gauge({
        name: 'sluice_info',
        help: 'Build information: always 1, labelled with the Sluice version.',
        labelNames: ['version'],
        registers: [r],
        aggregator: 'first',
      }).set({ version: opts.version }, 1);
    }

    const configs = this.routeConfigs;
    registerStateGauges(r, {
      routes: () => this.scrapeRoutes(),
      routeConfig: (name) => configs.get(name),
      lastReload: perInstance ? () => this.lastReload : undefined,
    });

    if (opts.listener !== undefined) registerProtocolMetrics(r, opts.listener);
    for (const m of sharedProcessMetrics()) r.registerMetric(m);
  }

  private routesCache: readonly RouteState[] | null = null;

  /**
   * The route view for this scrape. The registry collects every gauge in one
   * synchronous pass, so caching until the next microtask makes all gauges of
   * a scrape read one consistent snapshot (and take it once).
   */
  private scrapeRoutes(): readonly RouteState[] {
    if (this.routesCache === null) {
      this.routesCache = this.opts.routes();
      queueMicrotask(() => (this.routesCache = null));
    }
    return this.routesCache;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text exposition of everything registered. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Counts a config reload (used by the reload path). */
  configReloaded(result: ReloadResult): void {
    this.reloads.cell(result).value++;
    this.lastReload = result === 'success' ? { ok: true, successAtMs: Date.now() } : { ...this.lastReload, ok: false };
  }

  /** Counts a failure of the shared rate store. */
  rateStoreError(kind: string): void {
    this.rateStoreErrors.cell(kind).value++;
  }

  /** Admitted and refused totals of one lane since start (0 before its first request). */
  laneTotals(route: string, lane: string): LaneTotals {
    return {
      admitted: this.requests.peek(route, lane, 'admitted')?.value ?? 0,
      refused: this.requests.peek(route, lane, 'refused')?.value ?? 0,
    };
  }

  /**
   * A route's cumulative counters for the live page's history (read once a
   * second, never on the request path): per lane admitted, refused, refusals by
   * reason, the queue-wait histogram and upstream latency (every status
   * class); per route upstream latency (every lane), errors by kind and 5xx
   * responses. Zeros before the route's first request.
   */
  routeTotals(route: string, lanes: readonly string[]): RouteTotals {
    const hist = (family: HistogramFamily, cells: (HistogramCell | undefined)[]): HistogramTotals => {
      const counts = new Array<number>(family.buckets.length + 1).fill(0);
      for (const c of cells) {
        if (c === undefined) continue;
        let finite = 0;
        for (let i = 0; i < family.buckets.length; i++) {
          counts[i] = (counts[i] as number) + (c.counts[i] as number);
          finite += c.counts[i] as number;
        }
        counts[family.buckets.length] = (counts[family.buckets.length] as number) + (c.count - finite);
      }
      return { bounds: family.buckets, counts };
    };
    const errors: Record<string, number> = {};
    for (const kind of ERROR_KINDS) errors[kind] = this.upstreamErrors.peek(route, kind)?.value ?? 0;
    return {
      lanes: lanes.map((lane) => {
        const refusals: Record<string, number> = {};
        for (const reason of REASONS) refusals[reason] = this.rejections.peek(route, lane, reason, String(REFUSAL_STATUS[reason]))?.value ?? 0;
        const latency = hist(this.latency, STATUS_CLASSES.map((cls) => this.latency.peek(route, lane, cls)));
        return { ...this.laneTotals(route, lane), name: lane, refusals, queueWait: hist(this.queueWait, [this.queueWait.peek(route, lane)]), upstreamLatency: latency };
      }),
      upstreamLatency: hist(this.latency, lanes.flatMap((lane) => STATUS_CLASSES.map((cls) => this.latency.peek(route, lane, cls)))),
      upstreamErrors: errors,
      responses5xx: lanes.reduce((n, lane) => n + (this.latency.peek(route, lane, '5xx')?.count ?? 0), 0),
    };
  }

  // ------------------------------------------------------------ ProxyEvents (hot path)

  onAdmitted(route: RouteRuntime, lane: number, queuedMs: number): void {
    const l = this.lane(route, lane);
    l.admitted.value++;
    l.queueWait.observe(queuedMs / 1000);
  }

  onRefused(route: RouteRuntime, lane: number, r: Refusal, queuedMs?: number): void {
    const b = this.route(route);
    const l = b.lanes[lane] as BoundLane;
    l.refused.value++;
    l.rejections[r.reason].value++;
    if (queuedMs !== undefined) l.queueWait.observe(queuedMs / 1000);
    let ra = b.retryAfter.get(r.status);
    if (ra === undefined) {
      ra = this.retryAfter.cell(b.name, String(r.status));
      b.retryAfter.set(r.status, ra);
    }
    ra.observe(r.retryAfterSeconds);
  }

  onShadowRefused(route: RouteRuntime, lane: number, _r: Refusal): void {
    this.lane(route, lane).shadowRefused.value++;
  }

  onAbandoned(route: RouteRuntime, lane: number, queuedMs: number): void {
    const l = this.lane(route, lane);
    l.abandoned.value++;
    l.queueWait.observe(queuedMs / 1000);
  }

  onSettled(route: RouteRuntime, lane: number, outcome: Outcome): void {
    this.lane(route, lane).settled[outcome].value++;
  }

  onUpstreamResponse(route: RouteRuntime, lane: number, status: number, rttMs: number): void {
    const b = this.route(route);
    const l = b.lanes[lane] as BoundLane;
    const cls = Math.min(5, Math.max(1, Math.floor(status / 100)));
    let h = l.latency[cls];
    if (h === undefined) {
      h = this.latency.cell(b.name, route.laneNames[lane] as string, STATUS_CLASSES[cls - 1] as string);
      l.latency[cls] = h;
    }
    h.observe(rttMs / 1000);
  }

  onUpstreamError(route: RouteRuntime, code: ErrorCode): void {
    (this.route(route).errors[ERRORS[code].kind] as CounterCell).value++;
  }

  onClientError(code: ErrorCode): void {
    const cell = this.clientErrorCells.get(code);
    if (cell !== undefined) cell.value++;
  }

  // ------------------------------------------------------------ binding

  private lane(route: RouteRuntime, lane: number): BoundLane {
    return this.route(route).lanes[lane] as BoundLane;
  }

  private route(route: RouteRuntime): BoundRoute {
    return this.bound.get(route) ?? this.bind(route);
  }

  /** Resolves a route's cells once (per RouteRuntime object); every label set exists from then on, at 0. */
  private bind(route: RouteRuntime): BoundRoute {
    const name = route.cfg.name;
    const lanes = route.laneNames.map((lane): BoundLane => {
      const rejections = {} as Record<RefusalReason, CounterCell>;
      for (const reason of REASONS) rejections[reason] = this.rejections.cell(name, lane, reason, String(REFUSAL_STATUS[reason]));
      const settled = {} as Record<Outcome, CounterCell>;
      for (const result of SETTLE_RESULTS) settled[result] = this.settled.cell(name, lane, result);
      return {
        admitted: this.requests.cell(name, lane, 'admitted'),
        refused: this.requests.cell(name, lane, 'refused'),
        shadowRefused: this.requests.cell(name, lane, 'shadow_refused'),
        abandoned: this.requests.cell(name, lane, 'abandoned'),
        rejections,
        settled,
        queueWait: this.queueWait.cell(name, lane),
        latency: [],
      };
    });
    const errors: Record<string, CounterCell> = {};
    for (const kind of ERROR_KINDS) errors[kind] = this.upstreamErrors.cell(name, kind);
    const b: BoundRoute = { name, lanes, retryAfter: new Map(), errors };
    this.bound.set(route, b);
    return b;
  }

  /** Binds every route of a runtime now, so its series appear (at 0) before its first request. */
  bindRoutes(routes: readonly RouteRuntime[]): void {
    this.routeConfigs.clear();
    for (const r of routes) {
      this.route(r);
      this.routeConfigs.set(r.cfg.name, r.cfg);
    }
  }
}

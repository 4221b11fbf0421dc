/**
 * What the admin endpoints answer, and how a route's state is read for them:
 * /admin/state (AdminState; the same view feeds the state gauges of
 * /metrics and the live page's history) and /admin/reload (ReloadResult).
 * Types only, plus the one function that reads a route into its view, so
 * every reader imports them from here and nothing imports the listener.
 */
import type { ConfigProblem } from '../config/types.js';
import type { BreakerSnapshot } from '../core/breaker.js';
import type { LaneSnapshot } from '../core/limiter/limiter.js';
import type { ListenerView } from '../proxy/front.js';
import type { RouteRuntime } from '../proxy/runtime.js';
import type { WebSocketState } from '../proxy/websocket.js';
import { backlogSeconds } from './readiness.js';

/** A lane as the limiter sees it, with its totals since start. */
export interface LaneState extends LaneSnapshot {
  /** Requests admitted in this lane since start. */
  readonly admitted: number;
  /** Requests refused in this lane since start. */
  readonly refused: number;
}

export interface RouteState {
  readonly name: string;
  readonly upstream: string;
  readonly algorithm: string;
  readonly limit: number;
  /** The configured bounds of the limit (limit.min, limit.max). */
  readonly limitMin: number;
  readonly limitMax: number;
  readonly inflight: number;
  readonly queued: number;
  /** The shed state: while `overloaded`, lanes after the first are refused at the door. */
  readonly state: 'normal' | 'overloaded';
  /** The shed signal: p90 queue wait of the last closed window (ms). */
  readonly queueWaitP90Ms: number;
  /** The limit's RTT estimates (ms): the last window's and the no-queueing baseline; null when not measured. */
  readonly rtt: { readonly recentMs: number | null; readonly baselineMs: number | null };
  readonly completionsPerSecond: number;
  /** Estimated seconds to drain the queues (queued / completion rate); null when nothing completes while requests wait. */
  readonly backlogSeconds: number | null;
  /** null when the route's breaker is disabled. */
  readonly circuitBreaker: BreakerSnapshot | null;
  /** Connections open to the route's upstream (its pool's, idle keep-alives included). */
  readonly upstreamConnections: number;
  readonly lanes: readonly LaneState[];
  /** The route's WebSockets (open, maxOpen, totals by result and close reason); null for a route without `websocket:`. */
  readonly websocket: WebSocketState | null;
}

/** The last reload attempt, as /admin/state shows it. */
export type LastReload =
  | { readonly at: string; readonly result: 'success'; readonly file: string; readonly warnings: readonly string[] }
  | { readonly at: string; readonly result: 'error'; readonly reason: Extract<ReloadResult, { result: 'error' }>['reason']; readonly file: string; readonly message: string };

export interface AdminState {
  readonly version: string;
  /** When this instance started (ISO 8601, UTC). */
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  /** The last reload attempt (SIGHUP or POST /admin/reload); null when there was none. */
  readonly lastReload: LastReload | null;
  readonly ready: boolean;
  readonly draining: boolean;
  /** The proxy listener: TLS certificate, HTTP/2 client connections (with workers > 1: summed over the workers). */
  readonly listener: ListenerView;
  /** With workers > 1: every route summed over the workers (observability/cluster-view.ts). */
  readonly routes: readonly RouteState[];
  /** With workers > 1: each worker, its own routes included; absent with one process. */
  readonly workers?: readonly WorkerState[];
}

/**
 * A worker as the primary sees it. starting: forked, not serving yet; ready:
 * serving; unresponsive: did not answer this sample in time (its routes are
 * its last answer's); down: dead, waiting for its replacement (backoff);
 * draining: shutting down with the instance.
 */
export type WorkerStatus = 'starting' | 'ready' | 'unresponsive' | 'down' | 'draining';

export interface WorkerState {
  /** Its place among the workers (its share of every split bound, core/split.ts); a replacement keeps it. */
  readonly index: number;
  readonly pid: number | null;
  readonly status: WorkerStatus;
  /** Times a worker in this place died and was replaced since start. */
  readonly restarts: number;
  /** Its own readiness (backlog), null when ready. */
  readonly notReady: string | Readonly<Record<string, unknown>> | null;
  readonly routes: readonly RouteState[];
}

/** What a reload did to the routes, by name. */
export interface RouteChanges {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  /** Kept their limiter; their config changed. */
  readonly changed: readonly string[];
  readonly unchanged: readonly string[];
  /** Of `changed`: routes whose limit config changed, so their limit starts again from `initial`. */
  readonly limitReset: readonly string[];
}

/** The body of POST /admin/reload (and what reload() returns). */
export type ReloadResult =
  | {
      readonly result: 'success';
      readonly file: string;
      readonly routes: RouteChanges;
      /** Changes in the file that a reload cannot apply (listener addresses, log format). */
      readonly warnings: readonly string[];
    }
  | {
      readonly result: 'error';
      /**
       * invalid_config: the file has problems (listed); draining: the instance
       * is shutting down; workers: a worker could not take the new config in
       * time (or failed to), so no worker switched (workers > 1).
       */
      readonly reason: 'invalid_config' | 'draining' | 'workers';
      readonly file: string;
      /** Every problem as FILE:LINE:COL: path: message, one per line. */
      readonly message: string;
      readonly problems: readonly ConfigProblem[];
    };

/**
 * The instance's own facts for /admin/state: version, start, uptime on the
 * injected monotonic clock (a wall-clock step does not change it), and the
 * last reload.
 */
export class InstanceInfo {
  private readonly startedMono: number;
  private readonly startedAt: string;
  private last: LastReload | null = null;

  constructor(
    private readonly clock: { now(): number },
    private readonly version: string,
    private readonly wallNow: () => number = Date.now,
  ) {
    this.startedMono = clock.now();
    this.startedAt = new Date(wallNow()).toISOString();
  }

  reloaded(r: ReloadResult): void {
    const at = new Date(this.wallNow()).toISOString();
    this.last =
      r.result === 'success'
        ? { at, result: 'success', file: r.file, warnings: r.warnings }
        : { at, result: 'error', reason: r.reason, file: r.file, message: r.message };
  }

  view(): Pick<AdminState, 'version' | 'startedAt' | 'uptimeSeconds' | 'lastReload'> {
    const uptimeSeconds = Math.floor((this.clock.now() - this.startedMono) / 1000);
    return { version: this.version, startedAt: this.startedAt, uptimeSeconds, lastReload: this.last };
  }
}

/** One decimal is all an operator needs; keeps /admin/state readable. */
function round1<T extends number | null>(x: T): T {
  return (x === null ? null : Math.round(x * 10) / 10) as T;
}

/** A lane's admitted and refused totals since start (the metrics count them). */
export type LaneTotalsOf = (route: string, lane: string) => { readonly admitted: number; readonly refused: number };

/** A route's WebSockets by its config (proxy/websocket.ts's view). */
export type WebSocketsOf = (cfg: RouteRuntime['cfg']) => WebSocketState | null;

/** A route's view for /admin/state, read from its limiter, breaker and pool (and its WebSockets). */
export function routeState(r: RouteRuntime, laneTotals: LaneTotalsOf, webSockets: WebSocketsOf = () => null): RouteState {
  const s = r.limiter.snapshot();
  return {
    name: r.cfg.name,
    upstream: r.cfg.upstream,
    algorithm: r.cfg.limit.algorithm,
    limit: s.limit,
    limitMin: r.cfg.limit.min,
    limitMax: r.cfg.limit.max,
    inflight: s.inflight,
    queued: s.queued,
    state: s.state,
    queueWaitP90Ms: round1(s.queueWaitP90Ms),
    rtt: { recentMs: round1(s.rtt.recentMs), baselineMs: round1(s.rtt.baselineMs) },
    completionsPerSecond: round1(s.completionsPerSecond),
    backlogSeconds: backlogSeconds(s.queued, s.completionsPerSecond),
    circuitBreaker: r.breaker === null ? null : r.breaker.snapshot(),
    upstreamConnections: r.pool.stats.connected,
    lanes: s.lanes.map((l) => ({ ...l, ...laneTotals(r.cfg.name, l.name) })),
    websocket: webSockets(r.cfg),
  };
}

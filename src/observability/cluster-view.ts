/**
 * /admin/state, /readyz and the live page's history with workers > 1: every
 * worker answers with its own view (WorkerSample); this file adds them up
 * into the one instance the admin API shows, keeping each worker's own view
 * next to the sum (AdminState.workers).
 *
 * How a route is summed over its workers
 *   sum     limit (and its bounds), in flight, queued, completions/s, upstream
 *           connections; per lane: in flight, queued, slots, totals
 *   max     p90 queue wait, backlog (null, "nothing drains", is the worst),
 *           oldest queued: the worst worker is what readiness acts on
 *   worst   shed state (overloaded if any worker is) and circuit breaker (the
 *           worst worker's snapshot, with every worker's openings summed)
 *   mean    RTT estimates of the workers that measured them
 *   sum     WebSockets: open, reserved, maxOpen (the workers' shares) and
 *           every total
 *
 * The proxy listener: the certificate is every worker's, HTTP/2 client
 * counts are summed (sumListeners).
 *
 * Readiness: not ready while the primary drains, while no worker serves, or
 * while any worker is backlogged (its routes are named, with the worker).
 * A worker that is down and being replaced does not fail readiness by itself:
 * the others serve (with their shares: capacity is lower meanwhile).
 *
 * Cumulative totals (the history's rates) keep what a dead worker counted,
 * as cluster-metrics.ts does for /metrics: `ClusterTotals.retire`.
 */
import type { Config } from '../config/types.js';
import type { H2Stats } from '../protocols/h2-server.js';
import type { ListenerView } from '../proxy/front.js';
import type { HistogramTotals, LaneTotals, RouteTotals } from './history.js';
import type { NotReady } from './readiness.js';
import type { AdminState, LaneState, RouteState, WorkerState } from './state.js';
import type { WebSocketState } from '../proxy/websocket.js';

/** One worker's answer to a sample: its state, its readiness, its routes' cumulative totals. */
export interface WorkerSample {
  readonly state: AdminState;
  readonly notReady: string | NotReady | null;
  readonly totals: Readonly<Record<string, RouteTotals>>;
}

function mean(xs: readonly (number | null)[]): number | null {
  const ok = xs.filter((x): x is number => x !== null);
  return ok.length === 0 ? null : Math.round((ok.reduce((a, b) => a + b, 0) / ok.length) * 10) / 10;
}

const sum = <T>(xs: readonly T[], f: (x: T) => number): number => xs.reduce((a, x) => a + f(x), 0);
const max = <T>(xs: readonly T[], f: (x: T) => number): number => xs.reduce((a, x) => Math.max(a, f(x)), 0);

const BREAKER_RANK = { closed: 0, half_open: 1, open: 2 } as const;

function sumLanes(lists: readonly (readonly LaneState[])[]): LaneState[] {
  const byName = groupBy(lists, (l) => l.name);
  return [...byName.values()].map((ls) => ({
    name: (ls[0] as LaneState).name,
    inflight: sum(ls, (l) => l.inflight),
    queued: sum(ls, (l) => l.queued),
    oldestQueuedMs: max(ls, (l) => l.oldestQueuedMs),
    maxSlots: sum(ls, (l) => l.maxSlots),
    minSlots: sum(ls, (l) => l.minSlots),
    admitted: sum(ls, (l) => l.admitted),
    refused: sum(ls, (l) => l.refused),
  }));
}

function groupBy<T>(lists: readonly (readonly T[])[], key: (x: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const list of lists) {
    for (const x of list) {
      const k = key(x);
      const had = out.get(k);
      if (had === undefined) out.set(k, [x]);
      else had.push(x);
    }
  }
  return out;
}

function sumWebSockets(rs: readonly RouteState[]): WebSocketState | null {
  const ws = rs.map((r) => r.websocket).filter((w) => w !== null);
  const first = ws[0];
  if (first === undefined) return null;
  const closed = { ...first.closed };
  for (const w of ws.slice(1)) for (const k of Object.keys(closed) as (keyof typeof closed)[]) closed[k] += w.closed[k];
  return {
    open: sum(ws, (w) => w.open),
    reserved: sum(ws, (w) => w.reserved),
    maxOpen: sum(ws, (w) => w.maxOpen),
    opened: sum(ws, (w) => w.opened),
    refused: sum(ws, (w) => w.refused),
    released: sum(ws, (w) => w.released),
    closed,
    idleTimeoutMs: first.idleTimeoutMs,
  };
}

function sumRoute(rs: readonly RouteState[]): RouteState {
  const first = rs[0] as RouteState;
  const breakers = rs.map((r) => r.circuitBreaker).filter((b) => b !== null);
  const worst = breakers.reduce<(typeof breakers)[number] | null>((w, b) => (w === null || BREAKER_RANK[b.state] > BREAKER_RANK[w.state] ? b : w), null);
  return {
    name: first.name,
    upstream: first.upstream,
    algorithm: first.algorithm,
    limit: sum(rs, (r) => r.limit),
    limitMin: sum(rs, (r) => r.limitMin),
    limitMax: sum(rs, (r) => r.limitMax),
    inflight: sum(rs, (r) => r.inflight),
    queued: sum(rs, (r) => r.queued),
    state: rs.some((r) => r.state === 'overloaded') ? 'overloaded' : 'normal',
    queueWaitP90Ms: max(rs, (r) => r.queueWaitP90Ms),
    rtt: { recentMs: mean(rs.map((r) => r.rtt.recentMs)), baselineMs: mean(rs.map((r) => r.rtt.baselineMs)) },
    completionsPerSecond: Math.round(sum(rs, (r) => r.completionsPerSecond) * 10) / 10,
    backlogSeconds: rs.some((r) => r.backlogSeconds === null) ? null : max(rs, (r) => r.backlogSeconds as number),
    circuitBreaker: worst === null ? null : { ...worst, opens: sum(breakers, (b) => b.opens) },
    upstreamConnections: sum(rs, (r) => r.upstreamConnections),
    lanes: sumLanes(rs.map((r) => r.lanes)),
    websocket: sumWebSockets(rs),
  };
}

/** Every route summed over the workers that have it, in the order the first worker lists them. */
export function sumRoutes(lists: readonly (readonly RouteState[])[]): RouteState[] {
  return [...groupBy(lists, (r) => r.name).values()].map(sumRoute);
}

function addHist(a: HistogramTotals | undefined, b: HistogramTotals): HistogramTotals {
  if (a === undefined || a.counts.length !== b.counts.length) return { bounds: b.bounds, counts: [...b.counts] };
  return { bounds: b.bounds, counts: a.counts.map((c, i) => c + (b.counts[i] as number)) };
}

function addKeys(a: Readonly<Record<string, number>> | undefined, b: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function addTotals(a: RouteTotals | undefined, b: RouteTotals): RouteTotals {
  const lanes = new Map<string, LaneTotals>((a?.lanes ?? []).map((l) => [l.name, l]));
  for (const l of b.lanes) {
    const had = lanes.get(l.name);
    lanes.set(l.name, {
      name: l.name,
      admitted: (had?.admitted ?? 0) + l.admitted,
      refused: (had?.refused ?? 0) + l.refused,
      refusals: addKeys(had?.refusals, l.refusals),
      queueWait: addHist(had?.queueWait, l.queueWait),
      upstreamLatency: addHist(had?.upstreamLatency, l.upstreamLatency),
    });
  }
  return {
    lanes: [...lanes.values()],
    upstreamLatency: addHist(a?.upstreamLatency, b.upstreamLatency),
    upstreamErrors: addKeys(a?.upstreamErrors, b.upstreamErrors),
    responses5xx: (a?.responses5xx ?? 0) + b.responses5xx,
  };
}

/** Route totals summed over several sources (workers, the dead workers' last). */
export function sumTotals(list: readonly Readonly<Record<string, RouteTotals>>[]): Record<string, RouteTotals> {
  const out: Record<string, RouteTotals> = {};
  for (const totals of list) for (const [route, t] of Object.entries(totals)) out[route] = addTotals(out[route], t);
  return out;
}

/** Cumulative totals that stay monotonic when a worker dies (its last answer is kept). */
export class ClusterTotals {
  private readonly last = new Map<number, Readonly<Record<string, RouteTotals>>>();
  private graveyard: Record<string, RouteTotals> = {};

  /** The sum of this sample: `answers` by worker key (null: no answer in time, its last is used). */
  sum(answers: ReadonlyMap<number, Readonly<Record<string, RouteTotals>> | null>): Record<string, RouteTotals> {
    const list: Readonly<Record<string, RouteTotals>>[] = [this.graveyard];
    for (const [key, t] of answers) {
      if (t !== null) this.last.set(key, t);
      const use = t ?? this.last.get(key);
      if (use !== undefined) list.push(use);
    }
    return sumTotals(list);
  }

  retire(key: number): void {
    const t = this.last.get(key);
    this.last.delete(key);
    if (t !== undefined) this.graveyard = sumTotals([this.graveyard, t]);
  }
}

/** The instance's readiness from the primary's phase and every worker's own. */
export function clusterNotReady(draining: boolean, workers: readonly WorkerState[]): string | NotReady | null {
  if (draining) return 'draining';
  if (!workers.some((w) => w.status === 'ready')) return { reason: 'no_workers', workers: workers.map((w) => ({ worker: w.index, status: w.status })) };
  const backlogged = workers.filter((w) => w.status === 'ready' && w.notReady !== null && typeof w.notReady === 'object' && w.notReady['reason'] === 'backlog');
  if (backlogged.length === 0) return null;
  const first = backlogged[0]!.notReady as NotReady;
  return {
    reason: 'backlog',
    maxBacklogSeconds: first['maxBacklogSeconds'],
    routes: backlogged.flatMap((w) => ((w.notReady as NotReady)['routes'] as readonly Record<string, unknown>[]).map((r) => ({ ...r, worker: w.index }))),
  };
}

/**
 * The proxy listener over the workers: its scheme and certificate are every
 * worker's (the first answer's), HTTP/2 client counts are summed. Without
 * any answer, what the config says (no counts).
 */
export function sumListeners(config: Config, views: readonly ListenerView[]): ListenerView {
  const first = views[0];
  if (first === undefined) return { scheme: config.listen.tls === undefined ? 'http' : 'https', http2: config.listen.http2, tls: null, http2Clients: null };
  const h2 = views.map((v) => v.http2Clients).filter((h): h is H2Stats => h !== null);
  const http2Clients: H2Stats | null =
    h2.length === 0
      ? null
      : {
          sessions: sum(h2, (h) => h.sessions),
          sessionsTotal: sum(h2, (h) => h.sessionsTotal),
          streamsTotal: sum(h2, (h) => h.streamsTotal),
          streamsResetTotal: sum(h2, (h) => h.streamsResetTotal),
          rapidResetCloses: sum(h2, (h) => h.rapidResetCloses),
        };
  return { ...first, http2Clients };
}

/**
 * The primary's sums over its workers (observability/cluster-view.ts,
 * cluster-metrics.ts), on views and registries as workers produce them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Gauge, Registry } from 'prom-client';
import { ClusterMetrics, type RegistryJson } from '../src/observability/cluster-metrics.js';
import { ClusterTotals, clusterNotReady, sumRoutes } from '../src/observability/cluster-view.js';
import { CounterFamily } from '../src/observability/families.js';
import type { RouteTotals } from '../src/observability/history.js';
import type { RouteState, WorkerState } from '../src/observability/state.js';

function route(o: Partial<RouteState> & { inflight: number; limit: number }): RouteState {
  return {
    name: 'r',
    upstream: 'http://u',
    algorithm: 'fixed',
    limitMin: 1,
    limitMax: o.limit,
    queued: 0,
    state: 'normal',
    queueWaitP90Ms: 0,
    rtt: { recentMs: null, baselineMs: null },
    completionsPerSecond: 10,
    backlogSeconds: 0,
    circuitBreaker: null,
    upstreamConnections: 1,
    lanes: [{ name: 'a', inflight: o.inflight, queued: o.queued ?? 0, oldestQueuedMs: 0, maxSlots: o.limit, minSlots: 0, admitted: 5, refused: 1 }],
    websocket: null,
    ...o,
  };
}

test('sumRoutes: counts and limits add up, the worst worker decides shed state and backlog', () => {
  const [r] = sumRoutes([
    [route({ limit: 2, inflight: 2, queued: 3, state: 'overloaded', backlogSeconds: 4, queueWaitP90Ms: 30 })],
    [route({ limit: 1, inflight: 1, queued: 1, backlogSeconds: 1, queueWaitP90Ms: 10 })],
  ]);
  assert.deepEqual(
    { limit: r!.limit, inflight: r!.inflight, queued: r!.queued, state: r!.state, backlog: r!.backlogSeconds, p90: r!.queueWaitP90Ms, cps: r!.completionsPerSecond },
    { limit: 3, inflight: 3, queued: 4, state: 'overloaded', backlog: 4, p90: 30, cps: 20 },
  );
  assert.deepEqual(r!.lanes[0], { name: 'a', inflight: 3, queued: 4, oldestQueuedMs: 0, maxSlots: 3, minSlots: 0, admitted: 10, refused: 2 });
  // Requests waiting while nothing drains on one worker: the route's backlog is unbounded.
  assert.equal(sumRoutes([[route({ limit: 1, inflight: 1, backlogSeconds: null })], [route({ limit: 1, inflight: 0 })]])[0]!.backlogSeconds, null);
});

function worker(index: number, status: WorkerState['status'], notReady: WorkerState['notReady'] = null): WorkerState {
  return { index, pid: 100 + index, status, restarts: 0, notReady, routes: [] };
}

test('clusterNotReady: draining first, then no serving worker, then any worker backlogged (named)', () => {
  assert.equal(clusterNotReady(true, [worker(0, 'ready')]), 'draining');
  assert.deepEqual(clusterNotReady(false, [worker(0, 'down'), worker(1, 'starting')]), {
    reason: 'no_workers',
    workers: [{ worker: 0, status: 'down' }, { worker: 1, status: 'starting' }],
  });
  assert.equal(clusterNotReady(false, [worker(0, 'ready'), worker(1, 'down')]), null);
  const backlog = { reason: 'backlog', maxBacklogSeconds: 10, routes: [{ route: 'r', queued: 90, completionsPerSecond: 3, backlogSeconds: 30 }] };
  assert.deepEqual(clusterNotReady(false, [worker(0, 'ready'), worker(1, 'ready', backlog)]), {
    reason: 'backlog',
    maxBacklogSeconds: 10,
    routes: [{ route: 'r', queued: 90, completionsPerSecond: 3, backlogSeconds: 30, worker: 1 }],
  });
});

const totals = (admitted: number): Record<string, RouteTotals> => ({
  r: {
    lanes: [{ name: 'a', admitted, refused: 0, refusals: {}, queueWait: { bounds: [1], counts: [admitted, 0] }, upstreamLatency: { bounds: [1], counts: [admitted, 0] } }],
    upstreamLatency: { bounds: [1], counts: [admitted, 0] },
    upstreamErrors: {},
    responses5xx: 0,
  },
});

test('ClusterTotals: a dead worker\'s last totals stay in the sum; a silent worker counts with its last answer', () => {
  const t = new ClusterTotals();
  assert.equal(t.sum(new Map([[1, totals(10)], [2, totals(5)]]))['r']!.lanes[0]!.admitted, 15);
  assert.equal(t.sum(new Map([[1, totals(12)], [2, null]]))['r']!.lanes[0]!.admitted, 17);
  t.retire(2);
  // Worker 2's replacement (pid 3) starts from 0: the sum does not go back.
  assert.equal(t.sum(new Map([[1, totals(12)], [3, totals(0)]]))['r']!.lanes[0]!.admitted, 17);
});

async function workerRegistry(admitted: number, breaker: 'closed' | 'open'): Promise<RegistryJson> {
  const r = new Registry();
  const requests = new CounterFamily('sluice_requests_total', 'requests', ['route']);
  requests.cell('r').value = admitted;
  r.registerMetric(requests.asMetric());
  const state = new Gauge({ name: 'sluice_circuit_breaker_state', help: 'state', labelNames: ['route', 'state'], registers: [r] });
  for (const s of ['closed', 'half_open', 'open']) state.set({ route: 'r', state: s }, s === breaker ? 1 : 0);
  return (await r.getMetricsAsJSON()) as unknown as RegistryJson;
}

test('ClusterMetrics: series summed once, the breaker is the worst worker\'s, counters never go back when a worker dies', async () => {
  const own = new Registry();
  const m = new ClusterMetrics(own);
  const text = await m.render(new Map([[1, await workerRegistry(7, 'closed')], [2, await workerRegistry(3, 'open')]]));
  assert.match(text, /^sluice_requests_total\{route="r"\} 10$/m);
  assert.match(text, /^sluice_circuit_breaker_state\{route="r",state="open"\} 1$/m);
  assert.match(text, /^sluice_circuit_breaker_state\{route="r",state="closed"\} 0$/m);
  m.retire(2);
  const after = await m.render(new Map([[1, await workerRegistry(8, 'closed')], [3, await workerRegistry(0, 'closed')]]));
  assert.match(after, /^sluice_requests_total\{route="r"\} 11$/m);
  assert.match(after, /^sluice_circuit_breaker_state\{route="r",state="closed"\} 1$/m);
});

test('sumRoutes: WebSockets add up over the workers (open, maxOpen shares, every total); a route without them stays null', () => {
  const ws = (open: number, maxOpen: number, idle: number) => ({
    open,
    reserved: 1,
    maxOpen,
    opened: open + 2,
    refused: 1,
    released: 0,
    closed: { client: 2, upstream: 0, idle, drain: 0, error: 0 },
    idleTimeoutMs: 300_000,
  });
  const [r] = sumRoutes([[route({ limit: 2, inflight: 0, websocket: ws(3, 4, 1) })], [route({ limit: 2, inflight: 0, websocket: ws(2, 3, 0) })]]);
  assert.deepEqual(r!.websocket, { open: 5, reserved: 2, maxOpen: 7, opened: 9, refused: 2, released: 0, closed: { client: 4, upstream: 0, idle: 1, drain: 0, error: 0 }, idleTimeoutMs: 300_000 });
  const [plain] = sumRoutes([[route({ limit: 1, inflight: 0 })], [route({ limit: 1, inflight: 0 })]]);
  assert.equal(plain!.websocket, null);
});

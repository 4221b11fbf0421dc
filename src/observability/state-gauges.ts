/**
 * The state gauges of /metrics: read at scrape time, by collect(), from the
 * same route view /admin/state shows (./state.ts); nothing is updated per
 * request for them. Per route: limit and its bounds, algorithm, shed state,
 * backlog, circuit breaker; per lane: in flight, queued, oldest queued, the
 * configured maximum wait; per instance: the last config reload; the
 * WebSocket series (./websocket-metrics.ts).
 *
 * With workers > 1 each worker exports its own and the primary combines them
 * (observability/cluster-metrics.ts) by each gauge's `aggregator`: sum for
 * counts and limits (the route's total), max for "how bad is the worst
 * worker" (overloaded, backlog, oldest queued), and the worst worker's state
 * for the circuit breaker.
 */
import { Gauge, type Aggregator, type Registry } from 'prom-client';
import type { RouteConfig } from '../config/types.js';
import { CounterFamily } from './families.js';
import type { LaneState, RouteState } from './state.js';
import { registerWebSocketMetrics } from './websocket-metrics.js';

export interface StateSource {
  /** The route view of this scrape (one consistent snapshot for every gauge). */
  routes(): readonly RouteState[];
  /** The config of a route in force, by name. */
  routeConfig(name: string): RouteConfig | undefined;
  /** The last reload's result (the config loaded at start counts as a success) and when one last succeeded; absent in a worker (the primary reports it). */
  readonly lastReload: (() => { readonly ok: boolean; readonly successAtMs: number }) | undefined;
}

/** Best to worst (the order cluster-metrics.ts picks a route's worst worker by). */
export const BREAKER_STATES = ['closed', 'half_open', 'open'] as const;

/** A gauge whose series are all set again at each scrape by `fill`. */
function scraped(
  r: Registry,
  name: string,
  help: string,
  labelNames: string[],
  fill: (set: (labels: Record<string, string>, v: number) => void) => void,
  aggregator: Aggregator = 'sum',
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [r],
    aggregator,
    collect() {
      this.reset();
      fill((labels, v) => this.set(labels, v));
    },
  });
}

function routeGauges(r: Registry, src: StateSource): void {
  const perRoute = (name: string, help: string, value: (s: RouteState) => number, aggregator: Aggregator = 'sum') =>
    scraped(
      r,
      name,
      help,
      ['route'],
      (set) => {
        for (const s of src.routes()) set({ route: s.name }, value(s));
      },
      aggregator,
    );
  perRoute('sluice_concurrency_limit', "The route's current concurrency limit.", (s) => s.limit);
  perRoute('sluice_concurrency_limit_min', "The route's configured limit.min.", (s) => s.limitMin);
  perRoute('sluice_concurrency_limit_max', "The route's configured limit.max.", (s) => s.limitMax);
  scraped(
    r,
    'sluice_route_info',
    'Always 1 per configured route, labelled with its limit algorithm (for joins, e.g. adaptive routes only).',
    ['route', 'algorithm'],
    (set) => {
      for (const s of src.routes()) set({ route: s.name, algorithm: s.algorithm }, 1);
    },
    'max',
  );
  perRoute('sluice_route_overloaded', "1 while the route's shed state is overloaded (on any worker), else 0.", (s) => (s.state === 'overloaded' ? 1 : 0), 'max');
  perRoute(
    'sluice_backlog_seconds',
    'Estimated time to drain the route\'s queues at its recent completion rate (+Inf when requests wait and nothing completes; the worst worker\'s with workers > 1); /readyz fails above readiness.maxBacklogSeconds.',
    (s) => (s.backlogSeconds === null ? Infinity : s.backlogSeconds),
    'max',
  );
}

function breakerGauges(r: Registry, src: StateSource): void {
  scraped(
    r,
    'sluice_circuit_breaker_state',
    "1 for the state each route's circuit breaker is in (closed, open, half_open), 0 for the others; routes with the breaker disabled have no series.",
    ['route', 'state'],
    (set) => {
      for (const s of src.routes()) {
        const b = s.circuitBreaker;
        if (b !== null) for (const state of BREAKER_STATES) set({ route: s.name, state }, b.state === state ? 1 : 0);
      }
    },
    // Across workers: the worst worker's state (cluster-metrics.ts combines it before any aggregator runs).
    'max',
  );
  const opens = new CounterFamily('sluice_circuit_breaker_opens_total', "Times the route's circuit breaker opened.", ['route']);
  opens.collect = () => {
    for (const s of src.routes()) if (s.circuitBreaker !== null) opens.cell(s.name).value = s.circuitBreaker.opens;
  };
  r.registerMetric(opens.asMetric());
}

function laneGauges(r: Registry, src: StateSource): void {
  const perLane = (name: string, help: string, value: (l: LaneState) => number, aggregator: Aggregator = 'sum') =>
    scraped(
      r,
      name,
      help,
      ['route', 'lane'],
      (set) => {
        for (const s of src.routes()) for (const l of s.lanes) set({ route: s.name, lane: l.name }, value(l));
      },
      aggregator,
    );
  perLane('sluice_inflight', 'Requests admitted and not yet finished.', (l) => l.inflight);
  perLane('sluice_queue_depth', 'Requests waiting for a slot.', (l) => l.queued);
  perLane('sluice_oldest_queued_seconds', 'Age of the oldest request waiting in the lane (0 when empty).', (l) => l.oldestQueuedMs / 1000, 'max');
  scraped(
    r,
    'sluice_queue_max_wait_seconds',
    "The lane's configured queue.maxWaitMs in seconds: no request waits longer (queue_timeout); alerts compare waits with it.",
    ['route', 'lane'],
    (set) => {
      for (const s of src.routes()) {
        for (const lane of src.routeConfig(s.name)?.lanes ?? []) set({ route: s.name, lane: lane.name }, lane.queue.maxWaitMs / 1000);
      }
    },
    'max',
  );
}

function reloadGauges(r: Registry, lastReload: NonNullable<StateSource['lastReload']>): void {
  new Gauge({
    name: 'sluice_config_last_reload_successful',
    help: '1 when the last config reload succeeded (or none was tried since start), 0 when it failed and an older config is still running.',
    registers: [r],
    collect() {
      this.set(lastReload().ok ? 1 : 0);
    },
  });
  new Gauge({
    name: 'sluice_config_last_reload_success_timestamp_seconds',
    help: 'Unix time of the last successful config load (start or reload).',
    registers: [r],
    collect() {
      this.set(lastReload().successAtMs / 1000);
    },
  });
}

export function registerStateGauges(r: Registry, src: StateSource): void {
  routeGauges(r, src);
  breakerGauges(r, src);
  laneGauges(r, src);
  if (src.lastReload !== undefined) reloadGauges(r, src.lastReload);
  registerWebSocketMetrics(r, () => src.routes());
}

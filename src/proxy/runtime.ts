/**
 * The proxy's view of one loaded config: the route table with a limiter and
 * a connection pool per route, the classifier and the per-client rate
 * buckets. Built once per config; the hot path only reads it.
 */
import type { Pool } from 'undici';
import type { Config, RouteConfig } from '../config/types.js';
import type { Clock, Random } from '../core/clock.js';
import { createLimit } from '../core/limit/create.js';
import type { Limit } from '../core/limit/limit.js';
import { ClientRate } from '../core/limiter/client-rate.js';
import { Limiter } from '../core/limiter/limiter.js';
import { createPool } from './upstream.js';
import { RouteTable, clientKeyFn, type ClassifyInput } from './routes.js';

export interface RouteRuntime {
  readonly cfg: RouteConfig;
  readonly limiter: Limiter;
  readonly pool: Pool;
  readonly overloadStatuses: ReadonlySet<number>;
  readonly laneNames: readonly string[];
}

export interface Runtime {
  readonly config: Config;
  readonly routes: readonly RouteRuntime[];
  readonly table: RouteTable<RouteRuntime>;
  readonly clientKey: (headers: ClassifyInput['headers'], ip: string) => string;
  readonly clientRate: ClientRate | null;
}

export interface RuntimeDeps {
  readonly clock: Clock;
  readonly random: Random;
  /** Builds a route's limit; default: the algorithm its `limit` config names (core/limit/create.ts). */
  readonly createLimit?: (route: RouteConfig) => Limit;
}

export function createRouteRuntime(cfg: RouteConfig, config: Config, deps: RuntimeDeps): RouteRuntime {
  const limit = deps.createLimit ? deps.createLimit(cfg) : createLimit(cfg.limit);
  return {
    cfg,
    limiter: new Limiter({
      lanes: cfg.lanes,
      limit,
      clientMaxShare: config.clients.maxShare,
      retryAfter: config.retryAfter,
      clock: deps.clock,
      random: deps.random,
      // The shed signal is measured over the limit's window length.
      overload: { ...cfg.overload, windowMs: cfg.limit.window.windowMs },
    }),
    pool: createPool(cfg),
    overloadStatuses: new Set(cfg.limit.overloadStatuses),
    laneNames: cfg.lanes.map((l) => l.name),
  };
}

export function createRuntime(config: Config, deps: RuntimeDeps): Runtime {
  const routes = config.routes.map((r) => createRouteRuntime(r, config, deps));
  const rate = config.clients.rate;
  return {
    config,
    routes,
    table: new RouteTable(routes),
    clientKey: clientKeyFn(config.clients.key),
    clientRate: rate ? new ClientRate(rate.perSecond, rate.burst) : null,
  };
}

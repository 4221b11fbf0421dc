/**
 * The proxy's view of one loaded config: the route table with a gate
 * (limiter, breaker, client rate) and a connection pool per route, the
 * classifier and the per-client rate buckets. Built once per config; the hot
 * path only reads it. A reload builds the next one from these building
 * blocks, carrying over what each surviving route has learned
 * (instance/next-runtime.ts).
 */
import type { Pool } from 'undici';
import type { Config, RouteConfig } from '../config/types.js';
import { Breaker, type BreakerStateName } from '../core/breaker.js';
import type { Clock, Random } from '../core/clock.js';
import { createLimit } from '../core/limit/create.js';
import type { Limit } from '../core/limit/limit.js';
import { RouteGate, type InUse } from '../core/gate/gate.js';
import { Limiter, type LimiterPolicy } from '../core/limiter/limiter.js';
import { rateLimitPolicy } from '../core/rate/headers.js';
import { createRateStore, type RateStoreFailure, type RateStoreHandle } from '../ratestore/create.js';
import { TrustedProxies } from './client-address.js';
import { headerPolicy, type HeaderPolicy } from './headers.js';
import { createPool } from './upstream.js';
import { RouteTable, clientKeyFn, type ClassifyInput } from './routes.js';

/**
 * Requests (queued or in flight) that may still send through a pool: counted
 * by the route's gate from admission to settlement. Shared by every
 * RouteRuntime that uses the pool.
 */
export type PoolUse = InUse;

export interface RouteRuntime {
  readonly cfg: RouteConfig;
  /** The admission decision: limiter, breaker, client rate, shadow, deadline (core/gate). */
  readonly gate: RouteGate;
  readonly limiter: Limiter;
  readonly pool: Pool;
  readonly poolUse: PoolUse;
  /** cfg.mode === 'shadow': decide and count, never refuse or queue. */
  readonly shadow: boolean;
  /** null when the route's circuitBreaker is disabled. */
  readonly breaker: Breaker | null;
  readonly overloadStatuses: ReadonlySet<number>;
  readonly laneNames: readonly string[];
  /** Hop-by-hop, forwarding and Host rules (./headers.ts), resolved from cfg.forwarding and cfg.preserveHost. */
  readonly headerPolicy: HeaderPolicy;
}

export interface Runtime {
  readonly config: Config;
  readonly routes: readonly RouteRuntime[];
  readonly table: RouteTable<RouteRuntime>;
  readonly clientKey: (headers: ClassifyInput['headers'], ip: string) => string;
  /** clients.rate: local buckets or the shared store; null without a rate. */
  readonly clientRate: RateStoreHandle | null;
  /** The RateLimit-Policy value when clients.rateLimitHeaders is on (and there is a rate), else null. */
  readonly rateLimitPolicy: string | null;
  /** The top-level forwarding's trusted proxies: the client address of a request no route matched (logs). */
  readonly trusted: TrustedProxies;
}

export interface RuntimeDeps {
  readonly clock: Clock;
  readonly random: Random;
  /** Builds a route's limit; default: the algorithm its `limit` config names (core/limit/create.ts). */
  readonly createLimit?: (route: RouteConfig) => Limit;
  /** Told of every failure of the shared rate store (metrics, sampled log). */
  readonly onRateStoreError?: (kind: RateStoreFailure, err?: unknown) => void;
  /** Told of every circuit breaker state change (metrics, logs). */
  readonly onBreakerState?: (route: RouteRuntime, state: BreakerStateName) => void;
}

export function limitFor(cfg: RouteConfig, deps: RuntimeDeps): Limit {
  return deps.createLimit ? deps.createLimit(cfg) : createLimit(cfg.limit);
}

export function limiterPolicy(cfg: RouteConfig, config: Config): LimiterPolicy {
  return {
    lanes: cfg.lanes,
    clientMaxShare: config.clients.maxShare,
    clientSlots: cfg.clientSlots,
    clientWeights: config.clients.weights,
    retryAfter: config.retryAfter,
    // The shed signal is measured over the limit's window length.
    overload: { ...cfg.overload, windowMs: cfg.limit.window.windowMs },
  };
}

/**
 * A breaker reports its state changes under the RouteRuntime that holds it
 * now: a reload wraps a kept breaker in a new RouteRuntime.
 */
const breakerOwner = new WeakMap<Breaker, { route: RouteRuntime | null }>();

export function newBreaker(cfg: RouteConfig, deps: RuntimeDeps): Breaker | null {
  if (!cfg.circuitBreaker.enabled) return null;
  const owner: { route: RouteRuntime | null } = { route: null };
  const onBreakerState = deps.onBreakerState;
  const breaker = new Breaker({
    config: cfg.circuitBreaker,
    clock: deps.clock,
    random: deps.random,
    onChange: onBreakerState && ((state) => owner.route !== null && onBreakerState(owner.route, state)),
  });
  breakerOwner.set(breaker, owner);
  return breaker;
}

/** What a route's gate shares with the rest of its config. */
export interface Shared {
  readonly config: Config;
  readonly clientRate: RateStoreHandle | null;
  readonly deps: RuntimeDeps;
}

export function routeRuntime(cfg: RouteConfig, limiter: Limiter, pool: Pool, poolUse: PoolUse, breaker: Breaker | null, shared: Shared): RouteRuntime {
  const shadow = cfg.mode === 'shadow';
  const { clock, random } = shared.deps;
  const gate = new RouteGate({ limiter, breaker, clientRate: shared.clientRate?.store ?? null, shadow, use: poolUse, retryAfter: shared.config.retryAfter, clock, random });
  const route: RouteRuntime = {
    cfg,
    gate,
    limiter,
    pool,
    poolUse,
    shadow,
    breaker,
    overloadStatuses: new Set(cfg.limit.overloadStatuses),
    laneNames: cfg.lanes.map((l) => l.name),
    headerPolicy: headerPolicy(cfg.forwarding, cfg.preserveHost),
  };
  return route;
}

/**
 * From now on each route's breaker reports its state changes under that
 * route. Called when a runtime goes into service (not when a reload merely
 * prepares one: a prepared runtime that is aborted must leave no trace).
 */
export function adoptBreakers(rt: Runtime): void {
  for (const route of rt.routes) {
    const owner = route.breaker === null ? undefined : breakerOwner.get(route.breaker);
    if (owner !== undefined) owner.route = route;
  }
}

export function createRouteRuntime(cfg: RouteConfig, shared: Shared): RouteRuntime {
  const { config, deps } = shared;
  const limiter = new Limiter({
    ...limiterPolicy(cfg, config),
    limit: limitFor(cfg, deps),
    clock: deps.clock,
    random: deps.random,
  });
  return routeRuntime(cfg, limiter, createPool(cfg), { active: 0 }, newBreaker(cfg, deps), shared);
}

export function runtimeOf(config: Config, routes: RouteRuntime[], clientRate: RateStoreHandle | null): Runtime {
  return {
    config,
    routes,
    table: new RouteTable(routes),
    clientKey: clientKeyFn(config.clients.key),
    clientRate,
    rateLimitPolicy: config.clients.rate && config.clients.rateLimitHeaders ? rateLimitPolicy(config.clients.rate.perSecond, config.clients.rate.burst) : null,
    trusted: new TrustedProxies(config.forwarding.trustedProxies),
  };
}

export function newClientRate(config: Config, deps: RuntimeDeps): RateStoreHandle | null {
  const rate = config.clients.rate;
  return rate ? createRateStore(rate, { clock: deps.clock, random: deps.random, onError: deps.onRateStoreError }) : null;
}

/** Ends what a runtime holds outside the process (the shared rate store's connection). Pools are the caller's. */
export async function closeRuntime(rt: Runtime): Promise<void> {
  await rt.clientRate?.close();
}

export function createRuntime(config: Config, deps: RuntimeDeps): Runtime {
  const shared: Shared = { config, clientRate: newClientRate(config, deps), deps };
  const rt = runtimeOf(
    config,
    config.routes.map((r) => createRouteRuntime(r, shared)),
    shared.clientRate,
  );
  adoptBreakers(rt);
  return rt;
}

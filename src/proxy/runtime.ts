/**
 * The proxy's view of one loaded config: the route table with a limiter and
 * a connection pool per route, the classifier and the per-client rate
 * buckets. Built once per config; the hot path only reads it.
 *
 * A reload builds the next Runtime from the previous one (nextRuntime) and
 * the proxy swaps to it between two requests. Requests hold the RouteRuntime
 * they were admitted under, so they finish under the config they started
 * with. What carries over for a route that keeps its name:
 *   limiter   the same object, reconfigured in place: its limit (unless the
 *             limit config changed), in-flight, queues and per-client counts
 *             stay, so a reload never lets a route exceed its limit;
 *   pool      the same, unless the upstream or its timeouts changed;
 *   breaker   the same (its state and backoff), unless the upstream or the
 *             circuitBreaker config changed;
 *   metrics   routes are named the same, so counters continue.
 * A removed route leaves the table (no new requests) and finishes what it
 * holds; its pool, like a replaced one, is retired: it closes once no request
 * that may still use it remains (PoolUse.active reaches 0).
 */
import { isDeepStrictEqual } from 'node:util';
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

function limitFor(cfg: RouteConfig, deps: RuntimeDeps): Limit {
  return deps.createLimit ? deps.createLimit(cfg) : createLimit(cfg.limit);
}

function limiterPolicy(cfg: RouteConfig, config: Config): LimiterPolicy {
  return {
    lanes: cfg.lanes,
    clientMaxShare: config.clients.maxShare,
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

function newBreaker(cfg: RouteConfig, deps: RuntimeDeps): Breaker | null {
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
interface Shared {
  readonly config: Config;
  readonly clientRate: RateStoreHandle | null;
  readonly deps: RuntimeDeps;
}

function routeRuntime(cfg: RouteConfig, limiter: Limiter, pool: Pool, poolUse: PoolUse, breaker: Breaker | null, shared: Shared): RouteRuntime {
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
  };
  const owner = breaker === null ? undefined : breakerOwner.get(breaker);
  if (owner !== undefined) owner.route = route;
  return route;
}

function createRouteRuntime(cfg: RouteConfig, shared: Shared): RouteRuntime {
  const { config, deps } = shared;
  const limiter = new Limiter({
    ...limiterPolicy(cfg, config),
    limit: limitFor(cfg, deps),
    clock: deps.clock,
    random: deps.random,
  });
  return routeRuntime(cfg, limiter, createPool(cfg), { active: 0 }, newBreaker(cfg, deps), shared);
}

function runtimeOf(config: Config, routes: RouteRuntime[], clientRate: RateStoreHandle | null): Runtime {
  return {
    config,
    routes,
    table: new RouteTable(routes),
    clientKey: clientKeyFn(config.clients.key),
    clientRate,
    rateLimitPolicy: config.clients.rate && config.clients.rateLimitHeaders ? rateLimitPolicy(config.clients.rate.perSecond, config.clients.rate.burst) : null,
  };
}

function newClientRate(config: Config, deps: RuntimeDeps): RateStoreHandle | null {
  const rate = config.clients.rate;
  return rate ? createRateStore(rate, { clock: deps.clock, random: deps.random, onError: deps.onRateStoreError }) : null;
}

/** Ends what a runtime holds outside the process (the shared rate store's connection). Pools are the caller's. */
export async function closeRuntime(rt: Runtime): Promise<void> {
  await rt.clientRate?.close();
}

export function createRuntime(config: Config, deps: RuntimeDeps): Runtime {
  const shared: Shared = { config, clientRate: newClientRate(config, deps), deps };
  return runtimeOf(
    config,
    config.routes.map((r) => createRouteRuntime(r, shared)),
    shared.clientRate,
  );
}

/** A route whose pool (and with it, in-flight upstream connections) a reload has let go. */
export interface Retired {
  readonly route: RouteRuntime;
  /** 'removed': gone from the config; 'replaced': its upstream or timeouts changed. */
  readonly why: 'removed' | 'replaced';
}

export interface RouteChanges {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  /** Kept their limiter; their config changed. */
  readonly changed: readonly string[];
  readonly unchanged: readonly string[];
  /** Of `changed`: routes whose limit config changed, so their limit starts again from `initial`. */
  readonly limitReset: readonly string[];
}

export interface NextRuntime {
  readonly runtime: Runtime;
  /** Pools to close once their `poolUse.active` reaches 0. */
  readonly retired: readonly Retired[];
  readonly changes: RouteChanges;
}

/**
 * The runtime for a reloaded `config`, carrying over what `prev` has learned
 * and counts (see the file comment). Everything new is built before any
 * running limiter is touched, so a failure leaves `prev` exactly as it was.
 */
export function nextRuntime(prev: Runtime, config: Config, deps: RuntimeDeps): NextRuntime {
  const byName = new Map(prev.routes.map((r) => [r.cfg.name, r]));
  const retired: Retired[] = [];
  const changes = { added: [] as string[], removed: [] as string[], changed: [] as string[], unchanged: [] as string[], limitReset: [] as string[] };
  const policyChanged =
    config.clients.maxShare !== prev.config.clients.maxShare || !isDeepStrictEqual(config.retryAfter, prev.config.retryAfter);
  const reconfigure: (() => void)[] = [];
  // Buckets carry over while their parameters stay: a reload is no way around a rate limit.
  const clientRate = isDeepStrictEqual(config.clients.rate, prev.config.clients.rate) ? prev.clientRate : newClientRate(config, deps);
  const shared: Shared = { config, clientRate, deps };

  const routes = config.routes.map((cfg): RouteRuntime => {
    const old = byName.get(cfg.name);
    if (old === undefined) {
      changes.added.push(cfg.name);
      return createRouteRuntime(cfg, shared);
    }
    byName.delete(cfg.name);
    if (isDeepStrictEqual(old.cfg, cfg) && !policyChanged) {
      changes.unchanged.push(cfg.name);
      // The same route; only a new set of rate buckets needs a new gate.
      return clientRate === prev.clientRate ? old : routeRuntime(cfg, old.limiter, old.pool, old.poolUse, old.breaker, shared);
    }
    changes.changed.push(cfg.name);
    let limit: Limit | undefined;
    if (!isDeepStrictEqual(old.cfg.limit, cfg.limit)) {
      limit = limitFor(cfg, deps);
      changes.limitReset.push(cfg.name);
    }
    reconfigure.push(() => old.limiter.reconfigure(limiterPolicy(cfg, config), limit));
    // What the breaker learned is about this upstream under these rules: a new upstream or new rules start afresh.
    const sameBreaker = old.cfg.upstream === cfg.upstream && isDeepStrictEqual(old.cfg.circuitBreaker, cfg.circuitBreaker);
    const breaker = sameBreaker ? old.breaker : newBreaker(cfg, deps);
    const samePool = old.cfg.upstream === cfg.upstream && isDeepStrictEqual(old.cfg.timeouts, cfg.timeouts);
    if (samePool) return routeRuntime(cfg, old.limiter, old.pool, old.poolUse, breaker, shared);
    retired.push({ route: old, why: 'replaced' });
    return routeRuntime(cfg, old.limiter, createPool(cfg), { active: 0 }, breaker, shared);
  });
  for (const old of byName.values()) {
    changes.removed.push(old.cfg.name);
    retired.push({ route: old, why: 'removed' });
  }

  const runtime = runtimeOf(config, routes, clientRate);
  for (const apply of reconfigure) apply();
  // A replaced shared store's connection ends; requests still waiting on it are answered by its local bucket.
  if (clientRate !== prev.clientRate) void prev.clientRate?.close();
  return { runtime, retired, changes };
}

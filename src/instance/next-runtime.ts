/**
 * The runtime for a reloaded config, built from the running one. The proxy
 * swaps to it between two requests (instance/runtimes.ts); requests hold the
 * RouteRuntime they were admitted under, so they finish under the config
 * they started with. What carries over for a route that keeps its name:
 *   limiter   the same object, reconfigured in place: its limit (unless the
 *             limit config changed), in-flight, queues and per-client counts
 *             stay, so a reload never lets a route exceed its limit;
 *   pool      the same, unless the upstream, its timeouts or http2 changed;
 *   breaker   the same (its state and backoff), unless the upstream or the
 *             circuitBreaker config changed;
 *   buckets   the client rate buckets, while clients.rate stays;
 *   metrics   routes are named the same, so counters continue.
 * A removed route leaves the table (no new requests) and finishes what it
 * holds; its pool, like a replaced one, is retired: it closes once no request
 * that may still use it remains (its gate's pool count reaches 0).
 *
 * Two steps: prepareRuntime builds everything new and touches nothing that
 * runs; commit() applies it to the surviving limiters (in place) and breakers;
 * abort() closes what the preparation opened.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../config/types.js';
import type { Limit } from '../core/limit/limit.js';
import type { RouteChanges } from '../observability/state.js';
import type { Pool } from 'undici';
import {
  adoptBreakers,
  createRouteRuntime,
  limitFor,
  limiterPolicy,
  newBreaker,
  newClientRate,
  routeRuntime,
  runtimeOf,
  type RouteRuntime,
  type Runtime,
  type RuntimeDeps,
  type Shared,
} from '../proxy/runtime.js';
import { createPool } from '../proxy/upstream.js';

/** A route whose pool (and with it, in-flight upstream connections) a reload has let go. */
export interface Retired {
  readonly route: RouteRuntime;
  /** 'removed': gone from the config; 'replaced': its upstream or timeouts changed. */
  readonly why: 'removed' | 'replaced';
}

export interface NextRuntime {
  readonly runtime: Runtime;
  /** Pools to close once their `poolUse.active` reaches 0. */
  readonly retired: readonly Retired[];
  readonly changes: RouteChanges;
}

/**
 * A next runtime built but not in force: nothing running has changed yet.
 * `commit()` or `abort()`, once. A reload across workers prepares in every
 * worker first and commits only when all of them could (instance/cluster/).
 */
export interface PreparedRuntime extends NextRuntime {
  /** Applies it to what keeps running (reconfigures surviving limiters, adopts breakers, closes a replaced rate store); swap it in right after. */
  commit(): void;
  /** Lets it go: closes what it opened (new pools, a new rate store); the running runtime is untouched. */
  abort(): Promise<void>;
}

/**
 * The runtime for a reloaded `config`, carrying over what `prev` has learned
 * and counts (see the file comment), prepared: every new part is built, no
 * running limiter, breaker or store is touched until `commit()`.
 */
export function prepareRuntime(prev: Runtime, config: Config, deps: RuntimeDeps): PreparedRuntime {
  const byName = new Map(prev.routes.map((r) => [r.cfg.name, r]));
  const retired: Retired[] = [];
  const opened: Pool[] = [];
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
      const route = createRouteRuntime(cfg, shared);
      opened.push(route.pool);
      return route;
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
    const samePool = old.cfg.upstream === cfg.upstream && old.cfg.http2 === cfg.http2 && isDeepStrictEqual(old.cfg.timeouts, cfg.timeouts);
    if (samePool) return routeRuntime(cfg, old.limiter, old.pool, old.poolUse, breaker, shared);
    retired.push({ route: old, why: 'replaced' });
    const pool = createPool(cfg);
    opened.push(pool);
    return routeRuntime(cfg, old.limiter, pool, { active: 0 }, breaker, shared);
  });
  for (const old of byName.values()) {
    changes.removed.push(old.cfg.name);
    retired.push({ route: old, why: 'removed' });
  }

  const runtime = runtimeOf(config, routes, clientRate);
  let done = false;
  const once = (what: string) => {
    if (done) throw new Error(`prepared runtime: ${what} after it was committed or aborted`);
    done = true;
  };
  return {
    runtime,
    retired,
    changes,
    commit() {
      once('commit');
      for (const apply of reconfigure) apply();
      adoptBreakers(runtime);
      // A replaced shared store's connection ends; requests still waiting on it are answered by its local bucket.
      if (clientRate !== prev.clientRate) void prev.clientRate?.close();
    },
    async abort() {
      once('abort');
      await Promise.all(opened.map((p) => p.close().catch(() => undefined)));
      if (clientRate !== prev.clientRate) await clientRate?.close();
    },
  };
}

/** prepareRuntime and commit at once (one process: nothing to agree with). */
export function nextRuntime(prev: Runtime, config: Config, deps: RuntimeDeps): NextRuntime {
  const prepared = prepareRuntime(prev, config, deps);
  prepared.commit();
  return prepared;
}

/**
 * Builds the client rate store a config asks for (clients.rate): local
 * buckets, or the quota shared in Redis (clients.rate.store) with the local
 * fallback. Owns the Redis connection's life: `close()` ends it.
 */
import type { ClientRateConfig } from '../config/types.js';
import type { Clock, Random } from '../core/clock.js';
import { LocalRate, SharedRate, type RateStore, type RateStoreErrorKind, type SharedRateStats } from '../core/rate/rate-store.js';
import { RedisRate } from './redis.js';

/** What may go wrong with the shared store: its own kinds plus a lost or refused connection. */
export type RateStoreFailure = RateStoreErrorKind | 'connection';

export interface RateStoreHandle {
  readonly store: RateStore;
  /** null for local buckets. */
  stats(): SharedRateStats | null;
  close(): Promise<void>;
}

export interface RateStoreDeps {
  readonly clock: Clock;
  readonly random: Random;
  /** Every failure of the shared store (count it; sample before logging). */
  readonly onError?: (kind: RateStoreFailure, err?: unknown) => void;
}

export function createRateStore(rate: ClientRateConfig, deps: RateStoreDeps): RateStoreHandle {
  const s = rate.store;
  if (s === undefined) {
    const store = new LocalRate(rate.perSecond, rate.burst, deps.clock);
    return { store, stats: () => null, close: async () => undefined };
  }
  const remote = new RedisRate({
    url: s.redis.url,
    prefix: s.redis.prefix,
    perSecond: rate.perSecond,
    burst: rate.burst,
    onConnectionError: (err) => deps.onError?.('connection', err),
  });
  const store = new SharedRate({
    perSecond: rate.perSecond,
    burst: rate.burst,
    instances: s.instances,
    timeoutMs: s.redis.timeoutMs,
    remote,
    clock: deps.clock,
    random: deps.random,
    onError: deps.onError,
  });
  remote.start();
  return { store, stats: () => store.stats(), close: () => remote.close() };
}

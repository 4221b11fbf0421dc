/**
 * Where client rate limits (clients.rate) are kept: in this process
 * (LocalRate), or shared by every instance in a remote store such as Redis
 * (SharedRate, with the I/O behind the RemoteRate interface:
 * ../../ratestore/redis.ts). This is the interface the gate asks:
 *
 *   take(key) → RateVerdict           decided now, synchronously
 *             | PendingRate           ask the shared store; settles within timeoutMs
 *
 * SharedRate, the request's way
 * 1. A client known to be over its limit (the store said so, or said it had
 *    nothing left) is refused from a local cache until its next request can
 *    conform: a refused burst costs no round trip. Exact, not a guess: under
 *    GCRA a client refused until t stays refused until t whatever other
 *    instances do (they can only move its TAT later).
 * 2. The store is down (not connected, or suspended after failures): the
 *    local bucket decides at once (fail open), at the configured rate
 *    divided by `instances`, so N instances together still admit about the
 *    configured rate. Counted as `unavailable`.
 * 3. Otherwise one call to the store (calls issued in the same tick are
 *    pipelined by the client), raced against timeoutMs: an answer after that
 *    is ignored and the local bucket decides (`timeout`); a failed call does
 *    the same (`error`).
 *
 * Health: `tripAfter` failures in a row (timeouts or errors) suspend the
 * store for a backoff (doubling from minBackoffMs to maxBackoffMs,
 * jittered) so that a slow Redis does not cost every request its timeout;
 * the first request after the backoff probes it again, and one success
 * clears the backoff. A lost connection is the client's to re-establish
 * (with its own backoff); while it is not ready, step 2 applies.
 */
import type { Clock, Random } from '../clock.js';
import { ClientRate } from './client-rate.js';
import { limited, type RateVerdict } from './gcra.js';

export type { RateVerdict } from './gcra.js';

/** A verdict the shared store will give; the promise never rejects and settles within timeoutMs. */
export interface PendingRate {
  readonly kind: 'pending';
  readonly verdict: Promise<RateVerdict>;
}

export interface RateStore {
  /** Takes one request of `key`'s rate. */
  take(key: string): RateVerdict | PendingRate;
}

/** The shared store's side: one GCRA step per call (the rate is the store's configuration). */
export interface RemoteRate {
  /** Connected and able to answer; while false the shared store is not asked. */
  readonly ready: boolean;
  take(key: string): Promise<RateVerdict>;
}

export type RateStoreErrorKind = 'timeout' | 'error' | 'unavailable';

export interface SharedRateOptions {
  readonly perSecond: number;
  readonly burst: number;
  /** How many instances share the quota: the local fallback runs at rate / instances. */
  readonly instances: number;
  readonly timeoutMs: number;
  readonly remote: RemoteRate;
  readonly clock: Clock;
  readonly random: Random;
  /** Told of every failure (`unavailable`: each request answered locally because the store is down); sample before logging. */
  readonly onError?: (kind: RateStoreErrorKind, err?: unknown) => void;
  readonly tripAfter?: number;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

export interface SharedRateStats {
  readonly state: 'up' | 'down';
  /** Failures by kind since start (the sluice_rate_store_errors_total counter). */
  readonly errors: Readonly<Record<RateStoreErrorKind, number>>;
  /** Requests refused from the local over-limit cache, without a round trip. */
  readonly cachedRefusals: number;
  /** Calls made to the shared store. */
  readonly calls: number;
  /** Clients in the over-limit cache now. */
  readonly cached: number;
}

/** The rate kept in this process only. */
export class LocalRate implements RateStore {
  private readonly buckets: ClientRate;
  constructor(
    perSecond: number,
    burst: number,
    private readonly clock: Clock,
  ) {
    this.buckets = new ClientRate(perSecond, burst);
  }
  take(key: string): RateVerdict {
    return this.buckets.check(key, this.clock.now());
  }
}

/**
 * Clients known to be over their limit, each until the time its next
 * request conforms. Bounded by activity: expired entries are dropped when
 * looked up, and swept when the map has doubled since the last sweep.
 */
class OverLimit {
  private readonly until = new Map<string, number>();
  private sweepAt = 1024;

  get size(): number {
    return this.until.size;
  }

  /** The time key stays refused until, or 0 when it is not known to be. */
  get(key: string, now: number): number {
    const t = this.until.get(key);
    if (t === undefined) return 0;
    if (t > now) return t;
    this.until.delete(key);
    return 0;
  }

  set(key: string, until: number, now: number): void {
    if (this.until.size >= this.sweepAt) {
      for (const [k, t] of this.until) if (t <= now) this.until.delete(k);
      this.sweepAt = Math.max(1024, this.until.size * 2);
    }
    this.until.set(key, until);
  }
}

export class SharedRate implements RateStore {
  private readonly fallback: ClientRate;
  private readonly cache = new OverLimit();
  private readonly tripAfter: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private failures = 0;
  private backoffMs = 0;
  private suspendedUntil = -Infinity;
  private readonly errors: Record<RateStoreErrorKind, number> = { timeout: 0, error: 0, unavailable: 0 };
  private cachedRefusals = 0;
  private calls = 0;

  constructor(private readonly opts: SharedRateOptions) {
    this.fallback = new ClientRate(opts.perSecond / opts.instances, Math.max(1, opts.burst / opts.instances));
    this.tripAfter = opts.tripAfter ?? 3;
    this.minBackoffMs = opts.minBackoffMs ?? 250;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5000;
  }

  take(key: string): RateVerdict | PendingRate {
    const now = this.opts.clock.now();
    const until = this.cache.get(key, now);
    if (until > 0) {
      this.cachedRefusals++;
      return limited((until - now) / 1000);
    }
    if (!this.opts.remote.ready || now < this.suspendedUntil) {
      this.failed('unavailable', undefined);
      return this.fallback.check(key, now);
    }
    this.calls++;
    return { kind: 'pending', verdict: this.ask(key, now) };
  }

  stats(): SharedRateStats {
    const now = this.opts.clock.now();
    const up = this.opts.remote.ready && now >= this.suspendedUntil;
    return { state: up ? 'up' : 'down', errors: { ...this.errors }, cachedRefusals: this.cachedRefusals, calls: this.calls, cached: this.cache.size };
  }

  private ask(key: string, startedAt: number): Promise<RateVerdict> {
    return new Promise<RateVerdict>((resolve) => {
      let done = false;
      const local = (kind: RateStoreErrorKind, err: unknown): void => {
        if (done) return;
        done = true;
        timer.cancel();
        this.failed(kind, err);
        this.trip();
        resolve(this.fallback.check(key, this.opts.clock.now()));
      };
      const timer = this.opts.clock.setTimer(() => local('timeout', undefined), this.opts.timeoutMs);
      this.opts.remote.take(key).then(
        (v) => {
          if (done) return;
          done = true;
          timer.cancel();
          this.failures = 0;
          this.backoffMs = 0;
          // Nothing left: the next request before waitSeconds is refused; no need to ask.
          if (v.remaining === 0) this.cache.set(key, startedAt + v.waitSeconds * 1000, startedAt);
          resolve(v);
        },
        (err: unknown) => local('error', err),
      );
    });
  }

  private failed(kind: RateStoreErrorKind, err: unknown): void {
    this.errors[kind]++;
    this.opts.onError?.(kind, err);
  }

  /** A failure in a row: after tripAfter of them the store is suspended for a (growing, jittered) backoff. */
  private trip(): void {
    if (++this.failures < this.tripAfter) return;
    this.backoffMs = Math.min(this.maxBackoffMs, this.backoffMs === 0 ? this.minBackoffMs : this.backoffMs * 2);
    const jittered = this.backoffMs * (0.75 + 0.5 * this.opts.random());
    this.suspendedUntil = this.opts.clock.now() + jittered;
  }
}

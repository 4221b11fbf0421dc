/**
 * Retry-After, every formula in one place. A refused client is told, in
 * whole seconds, when a retry is likely to be served: the estimate (queue
 * ahead ÷ recent throughput, or time until a token refills) is clamped to
 * [min, max] and jittered by ±jitter so refused clients do not come back in
 * lockstep. Always >= 1: a Retry-After of 0 invites an immediate retry storm.
 *
 *   estimate      queue_full, queue_timeout, deadline, client_share (queue
 *                 ahead ÷ completion rate), client_rate (token refill),
 *                 draining (0: another instance can take it at once)
 *   openCircuit   circuit_open: the time left open, jittered upwards only
 *   shed          shed_batch: never below the cooldown still to run
 */
import type { RetryAfterConfig } from '../config/types.js';
import type { Random } from './clock.js';

export function retryAfterSeconds(estimateSeconds: number, cfg: RetryAfterConfig, random: Random): number {
  const base = Number.isFinite(estimateSeconds) ? estimateSeconds : cfg.maxSeconds;
  const clamped = Math.min(cfg.maxSeconds, Math.max(cfg.minSeconds, base));
  const jittered = clamped * (1 + cfg.jitter * (2 * random() - 1));
  return Math.max(1, Math.min(cfg.maxSeconds, Math.max(cfg.minSeconds, Math.ceil(jittered))));
}

/**
 * circuit_open: the time left open, rounded up and jittered upwards only (a
 * retry before the breaker probes again is refused for sure). While
 * half-open (nothing left open) the next probe may close it any moment:
 * about a second.
 */
export function openCircuitRetryAfter(openRemainingMs: number, cfg: RetryAfterConfig, random: Random): number {
  if (openRemainingMs <= 0) return retryAfterSeconds(1, cfg, random);
  const s = Math.ceil((openRemainingMs / 1000) * (1 + cfg.jitter * random()));
  return Math.min(cfg.maxSeconds, Math.max(cfg.minSeconds, s));
}

/**
 * shed_batch: come back no sooner than the route can be normal again. The
 * usual estimate (clamped, jittered) applies above that floor, so refused
 * batch clients spread out after the cooldown instead of returning together.
 */
export function shedRetryAfter(cooldownLeftMs: number, estimateSeconds: number, cfg: RetryAfterConfig, random: Random): number {
  const leftSeconds = cooldownLeftMs / 1000;
  const seconds = retryAfterSeconds(Math.max(leftSeconds, estimateSeconds), cfg, random);
  return Math.max(seconds, Math.ceil(leftSeconds));
}

/**
 * Events per second, smoothed: counts events in 1 s buckets and keeps an
 * exponentially weighted average of completed buckets (weight 0.5), decayed
 * across idle seconds. Before the first bucket completes it extrapolates the
 * partial one, so a fresh route still gets a sensible estimate.
 */
export class RateMeter {
  private bucketStart: number;
  private count = 0;
  private ewma = 0;
  private primed = false;

  constructor(now: number) {
    this.bucketStart = now;
  }

  mark(now: number): void {
    this.roll(now);
    this.count++;
  }

  perSecond(now: number): number {
    this.roll(now);
    if (this.primed) return this.ewma;
    const elapsed = Math.max(0.1, (now - this.bucketStart) / 1000);
    return this.count / elapsed;
  }

  private roll(now: number): void {
    const elapsedBuckets = Math.floor((now - this.bucketStart) / 1000);
    if (elapsedBuckets <= 0) return;
    this.ewma = this.primed ? 0.5 * this.ewma + 0.5 * this.count : this.count;
    this.primed = true;
    // Idle seconds after the bucket count as zero-event buckets.
    if (elapsedBuckets > 1) this.ewma *= Math.pow(0.5, Math.min(64, elapsedBuckets - 1));
    this.count = 0;
    this.bucketStart += elapsedBuckets * 1000;
  }
}

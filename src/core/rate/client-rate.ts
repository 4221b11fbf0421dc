/**
 * Per-client token buckets (clients.rate): perSecond tokens refill a bucket
 * of `burst`; a request takes one. A refused request learns how long until
 * its next token, which becomes its Retry-After.
 *
 * The same decisions as GCRA (./gcra.ts), which the shared store in
 * Redis runs; this one is local to the process.
 *
 * Memory stays bounded by activity, not by the number of keys ever seen: a
 * bucket that has refilled completely carries no information, so sweeps
 * (amortised: when the map has doubled since the last one) delete it.
 */
import { allowed, limited, type RateVerdict } from './gcra.js';

export class ClientRate {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private sweepAt = 1024;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  /** Takes a token; returns 0 when allowed, else the seconds until one is available. */
  take(key: string, now: number): number {
    const tokens = this.fill(key, now);
    return tokens >= 0 ? 0 : -tokens / this.perSecond;
  }

  /** Takes a token, and says what is left (for RateLimit headers): the same decision as take(). */
  check(key: string, now: number): RateVerdict {
    const left = this.fill(key, now);
    if (left < 0) return limited(-left / this.perSecond);
    const remaining = Math.floor(left + 1e-9);
    return allowed(remaining, (1 - Math.max(0, left - remaining)) / this.perSecond);
  }

  /** Refills key's bucket to now and takes a token: returns the tokens left, or minus the tokens missing for one (nothing taken). */
  private fill(key: string, now: number): number {
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.sweepAt) this.sweep(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return b.tokens;
    }
    return b.tokens - 1;
  }

  get size(): number {
    return this.buckets.size;
  }

  private sweep(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(key);
    }
    this.sweepAt = Math.max(1024, this.buckets.size * 2);
  }
}

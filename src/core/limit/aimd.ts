/**
 * AIMD: additive increase, multiplicative decrease, steered by drops only.
 *
 *   window with a drop:   L ← L · backoff            [backoff 0.9]
 *   otherwise:            L ← L + increase           [increase 1]
 *
 * (AdaptiveLimit adds what every algorithm shares: no growth while the
 * upstream is not using the limit — max inflight < L/2 —, clamping to
 * [min, max] and the hysteresis of ./hysteresis.ts.)
 *
 * AIMD ignores latency, so it needs an upstream that says when it is
 * overloaded (429/503/504, or timeouts). Against an upstream that only gets
 * slower it grows until something drops; its limit saw-tooths between
 * backoff·P and P, where P is the concurrency at which drops begin.
 */
import type { Algorithm } from './adaptive.js';
import type { Window } from './window.js';

export class Aimd implements Algorithm {
  readonly usesLatency = false;

  constructor(private readonly cfg: { readonly backoff: number; readonly increase: number }) {}

  next(limit: number, w: Window): number {
    return w.drops > 0 ? limit * this.cfg.backoff : limit + this.cfg.increase;
  }
}

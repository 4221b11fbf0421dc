/**
 * Vegas, after TCP Vegas and Netflix's VegasLimit: estimate how many of our
 * requests are queued at the upstream and keep that between alpha and beta.
 *
 *   queue = inflight · (1 − rttNoLoad / windowRtt)     inflight = the window's max
 *   step  = max(1, log10 L)
 *   window with a drop:   L ← 0.9 · L
 *   queue < alpha:        L ← L + step                 [alpha 3]
 *   queue > beta:         L ← max(L/2, L − max(step, (queue − beta) / 2))   [beta 6]
 *   otherwise:            L unchanged
 *
 * With C upstream workers and L > C in flight, windowRtt ≈ rttNoLoad · L / C,
 * so queue = L − C exactly and the limit settles in [C + alpha, C + beta].
 * Growth is additive and slow (log10 L per window), as in Vegas; a queue far
 * above beta is worked off halfway per window rather than one step at a time,
 * so a sudden loss of upstream capacity is answered promptly. The in-flight
 * count is the measured one, not the limit: a route that does not fill its
 * limit has a smaller queue than L would suggest.
 *
 * rttNoLoad is kept by AdaptiveLimit: the lowest window RTT since the last
 * probe, re-measured at half the limit every 600 windows.
 */
import type { Algorithm } from './adaptive.js';
import type { Window } from './window.js';

export class Vegas implements Algorithm {
  readonly usesLatency = true;

  constructor(private readonly cfg: { readonly alpha: number; readonly beta: number }) {}

  next(limit: number, w: Window, baselineMs: number): number {
    if (w.drops > 0) return limit * 0.9;
    if (!(w.rttMs > 0 && baselineMs > 0)) return limit;
    const queue = w.maxInflight * (1 - baselineMs / w.rttMs);
    const step = Math.max(1, Math.log10(limit));
    if (queue < this.cfg.alpha) return limit + step;
    if (queue > this.cfg.beta) return Math.max(limit / 2, limit - Math.max(step, (queue - this.cfg.beta) / 2));
    return limit;
  }
}

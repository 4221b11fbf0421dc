/**
 * Gradient, after Netflix's Gradient2 and Envoy's gradient controller: the
 * limit moves with the ratio of the baseline RTT to the current RTT.
 *
 *   gradient = clamp(tolerance · baselineRtt / windowRtt, 0.5, 1)
 *              (0.5 when the window had a drop)
 *   target   = L · gradient + queueAllowance           [√L, or a fixed number]
 *              (no allowance when the window had a drop)
 *   L        ← (1 − smoothing) · L + smoothing · target  [smoothing 0.2]
 *
 * Why it settles: while the upstream is not queueing, windowRtt ≈ baseline,
 * gradient = 1 and L grows by smoothing · allowance per window. Beyond the
 * upstream's concurrency C, latency grows in proportion to the queue
 * (windowRtt ≈ baseline · L / C), so L · gradient ≈ tolerance · C and the
 * fixed point is L* = tolerance · C + allowance: the upstream kept busy with
 * a standing queue of about √L. Hence the default tolerance of 1: the limit
 * aims at C + √L, a small queue that keeps every worker busy through jitter,
 * while 1.5 would aim at 1.5·C + √L, i.e. half the upstream's concurrency
 * again queued in front of it (50% more latency for no more throughput).
 * A drop halves the target, so with the default smoothing a drop window costs
 * 10% (like AIMD's backoff). Decreases are smoothed too: the window RTT lags
 * the upstream's queue, and unsmoothed decreases undershoot.
 *
 * The baseline (Netflix's "long RTT", Envoy's minRTT) is kept by
 * AdaptiveLimit: the lowest window RTT since the last probe, re-measured at
 * half the limit every `longWindow` windows. Netflix's long RTT is a moving
 * average of all RTTs; under sustained load that average follows the very
 * queueing latency it should reveal and the limit creeps up with it, so here
 * it is a probed minimum instead, and `longWindow` is the probe period.
 */
import type { Algorithm } from './adaptive.js';
import type { Window } from './window.js';

export interface GradientConfig {
  readonly tolerance: number;
  readonly smoothing: number;
  readonly queueAllowance: 'sqrt' | number;
}

export class Gradient implements Algorithm {
  readonly usesLatency = true;

  constructor(private readonly cfg: GradientConfig) {}

  next(limit: number, w: Window, baselineMs: number): number {
    const { tolerance, smoothing, queueAllowance } = this.cfg;
    let target: number;
    if (w.drops > 0) {
      target = limit * 0.5;
    } else {
      const ratio = w.rttMs > 0 && baselineMs > 0 ? (tolerance * baselineMs) / w.rttMs : 1;
      const gradient = Math.max(0.5, Math.min(1, ratio));
      target = limit * gradient + (queueAllowance === 'sqrt' ? Math.sqrt(limit) : queueAllowance);
    }
    return (1 - smoothing) * limit + smoothing * target;
  }
}

/**
 * Hysteresis, layer 1: what the algorithms propose is not always what the
 * route gets. The published limit (an integer) follows the algorithm's
 * estimate (a real number) asymmetrically:
 *
 * - decreases apply at once (the upstream is hurting now);
 * - increases apply only after `increaseAfterWindows` consecutive healthy
 *   windows (no drop, the estimate at or above the published limit), and each
 *   applied increase starts a new count (growth is earned, window by window);
 * - a change smaller than `deadBand` (relative to the published limit) is not
 *   applied in either direction, so noise does not move the limit.
 *
 * The estimate itself keeps evolving inside the algorithm, so steps smaller
 * than the dead band still add up: AIMD's +1 at a limit of 100 is published
 * once the estimate has moved 5 past it, not never.
 */
export interface HysteresisConfig {
  readonly increaseAfterWindows: number;
  readonly deadBand: number;
}

export class Hysteresis {
  private healthy = 0;

  constructor(private readonly cfg: HysteresisConfig) {}

  /**
   * The limit to publish after one window. `target` is the algorithm's new
   * estimate, already clamped to [min, max]; `dropped`: the window had drops.
   */
  next(published: number, target: number, dropped: boolean): number {
    if (dropped || target < published) {
      this.healthy = 0;
      if (published - target < this.cfg.deadBand * published) return published;
      return Math.max(1, Math.floor(target));
    }
    this.healthy++;
    const up = Math.floor(target);
    if (this.healthy < this.cfg.increaseAfterWindows || up <= published) return published;
    if (up - published < this.cfg.deadBand * published) return published;
    this.healthy = 0;
    return up;
  }

  /** Starts counting healthy windows afresh (after a probe, for instance). */
  reset(): void {
    this.healthy = 0;
  }
}

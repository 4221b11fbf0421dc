/**
 * Rate-limited logging for hot events (refusals): at most `perSecond` lines
 * per second are written; the rest are counted, and the next line written
 * carries `suppressed: N` so nothing disappears without a trace. Logging must
 * never become the bottleneck of an overloaded proxy.
 */
import type { Clock } from '../core/clock.js';

export class SampledLog {
  private windowStart = -Infinity;
  private written = 0;
  private suppressed = 0;
  /** Lines suppressed since this sampler was made (the sluice_log_suppressed_total counter). */
  suppressedTotal = 0;

  constructor(
    private readonly clock: Clock,
    private readonly perSecond: number,
  ) {}

  /** Returns the number of lines suppressed since the last written one, or -1 to suppress this one. */
  admit(): number {
    const now = this.clock.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.written = 0;
    }
    if (this.written >= this.perSecond) {
      this.suppressed++;
      this.suppressedTotal++;
      return -1;
    }
    this.written++;
    const s = this.suppressed;
    this.suppressed = 0;
    return s;
  }
}

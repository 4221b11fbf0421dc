/**
 * A log-linear histogram of non-negative values (milliseconds), for window
 * percentiles on the hot path: O(1) record, fixed memory, no allocation.
 *
 * Buckets: one for values below MIN_MS (treated as 0, e.g. "admitted without
 * waiting"), then SUB buckets per power of two from MIN_MS up to MAX_MS
 * (values above are clamped into the last bucket). With SUB = 64 a bucket is
 * 1.1% wide, and a percentile is reported as its bucket's geometric middle,
 * so it is within ±0.6% of an exact sample percentile; that is far below the
 * noise of any RTT it is compared with.
 *
 * `reset()` and `percentile()` touch only the range of buckets used since
 * the last reset, so a window of similar values costs a few dozen slots.
 */

const SUB = 64;
const MIN_EXP = -10; // 2^-10 ms ≈ 1 µs
const MAX_EXP = 22; // 2^22 ms ≈ 70 min
const MIN_MS = 2 ** MIN_EXP;
const BUCKETS = 1 + (MAX_EXP - MIN_EXP) * SUB;

export class LogHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  private lo = BUCKETS;
  private hi = -1;
  /** Values recorded since the last reset. */
  count = 0;

  record(ms: number): void {
    let i: number;
    if (!(ms >= MIN_MS)) i = 0; // also NaN and negatives: they carry no latency
    else i = Math.min(BUCKETS - 1, 1 + Math.floor((Math.log2(ms) - MIN_EXP) * SUB));
    this.counts[i]!++;
    if (i < this.lo) this.lo = i;
    if (i > this.hi) this.hi = i;
    this.count++;
  }

  /** The p-quantile (0 < p <= 1) of the recorded values; NaN when empty. */
  percentile(p: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(p * this.count));
    let seen = 0;
    for (let i = this.lo; i <= this.hi; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return i === 0 ? 0 : 2 ** ((i - 0.5) / SUB + MIN_EXP);
    }
    return NaN; // unreachable: the counts add up to `count`
  }

  reset(): void {
    if (this.hi >= this.lo) this.counts.fill(0, this.lo, this.hi + 1);
    this.lo = BUCKETS;
    this.hi = -1;
    this.count = 0;
  }
}

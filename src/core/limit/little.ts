/**
 * Little: the limit follows the upstream's useful concurrency, estimated by
 * Little's law from one window and the unqueued RTT (./probe.ts).
 *
 *   U        = n · min(1, baseline / rtt)   useful concurrency: what is in service
 *   queued   = n − U                        what waits in the upstream's queue
 *   allow    = queue · √U                   the standing queue we keep   [queue 0.4]
 *
 *   queued > allow             → L ← U + allow        (shrink to it at once)
 *   headroom¹ in the last 3 windows, the window filled the limit
 *                              → L ← max(U + allow, L · (1 + growth))   [growth 0.5]
 *   the window filled the limit → L ← max(L, U + allow)  (creep up to it)
 *   otherwise (app-limited)    → L unchanged
 *   a window with drops        → L ← min(that, 0.9 · L)
 *   ¹ queued < allow / 2 by more than the window's RTT error · n
 *   A change smaller than twice the window's RTT error is noise: only 30% of
 *   it is applied.
 *
 * n is the mean in-flight count at dispatch of the window's samples, rtt
 * their percentile RTT (./window.ts), baseline the same percentile with no
 * queue. Pairing each sample's RTT with the in-flight count it was dispatched
 * at removes the lag that makes a plain gradient undershoot: the window
 * describes the concurrency that caused its latency.
 *
 * Why it converges: an upstream with C workers and service time S (a FIFO
 * in front) answers in S while n ≤ C and in S · n / C beyond. So U = n while
 * n ≤ C (nothing queued: grow) and U = C beyond (shrink straight to
 * C + allow): one window reaches the fixed point L* = C + 0.4 · √C, e.g.
 * 17.6 for 16 workers, and L* is stable (there queued = allow exactly).
 * The √ makes several instances sharing one upstream converge to equal
 * shares: each sees the same RTT, so instance i settles where
 * L_i · (1 − baseline / rtt) = 0.4 · √(U_i); the right side grows slower than
 * the left, which pushes the larger instance down and the smaller up
 * (a proportional allowance would keep any split forever).
 * Growth is multiplicative only when three windows in a row show headroom
 * beyond their noise: the published limit is an integer below L*, so the
 * real standing queue can be a request short of the allowance, and one
 * noisy window must not take that for headroom. A noisy upstream creeps
 * rather than jumps.
 */
import type { Window } from './window.js';

export interface LittleConfig {
  /** Standing queue allowance: queue · √U requests waiting at the upstream. */
  readonly queue: number;
  /** Growth per increase while the RTT shows headroom (0.5 = ×1.5). */
  readonly growth: number;
  /** Windows between two routine baseline probes. */
  readonly probeEvery: number;
}

/** Multiplicative backoff for a window in which the upstream signalled overload. */
const DROP_BACKOFF = 0.9;
/** Share of a change within the window's noise that is applied. */
const NOISE_SMOOTHING = 0.3;

/** What one window says about the upstream, given the baseline. */
export interface Reading {
  /** U: the useful concurrency (requests in service). */
  readonly useful: number;
  /** The queue allowance for U. */
  readonly allow: number;
  /** Requests of ours waiting at the upstream. */
  readonly queued: number;
  /** The queue is below allow / 2 by more than the window's noise. */
  readonly headroom: boolean;
}

export function read(w: Window, baselineMs: number, queue: number): Reading {
  const n = w.meanInflight;
  const ratio = w.rttMs > 0 && baselineMs > 0 ? Math.min(1, baselineMs / w.rttMs) : 1;
  const useful = n * ratio;
  const allow = queue * Math.sqrt(useful);
  const error = Number.isFinite(w.rttError) ? w.rttError : 0;
  return { useful, allow, queued: n - useful, headroom: n - useful + error * n < allow / 2 };
}

/**
 * The next estimate from `estimate` (the real-valued limit) after window `w`;
 * `published` is the integer limit the window ran under; `run`: how many
 * windows in a row (this one included) showed headroom.
 */
export function littleNext(estimate: number, published: number, w: Window, r: Reading, run: number, cfg: LittleConfig): number {
  const { useful, allow, queued } = r;
  const filled = w.maxInflight >= published;
  const error = Number.isFinite(w.rttError) ? w.rttError : 0;
  let target: number;
  if (queued > allow) target = useful + allow;
  else if (!filled) target = estimate;
  else if (run > 0) target = Math.max(useful + allow, published + Math.min(published * cfg.growth, allow * 2 ** (run - 2)));
  else target = Math.max(estimate, useful + allow);
  if (w.drops > 0) target = Math.min(target, estimate * DROP_BACKOFF);
  else if (Math.abs(target - estimate) <= 2 * error * estimate) target = estimate + NOISE_SMOOTHING * (target - estimate);
  return target;
}

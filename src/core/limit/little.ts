/**
 * Little: the limit follows the upstream's useful concurrency, estimated by
 * Little's law from one window and the unqueued RTT (the baseline, measured
 * by the probes of ./probe.ts).
 *
 *   U      = n · baseline / rtt       useful concurrency: the requests in service
 *   queued = n − U                    ours waiting in the upstream's queue
 *   allow  = max(queue · √U, min(0.1 · U, 4 · noise · U))      [queue 0.3]
 *            the standing queue we keep: a square root (see fairness, below),
 *            at least 4 standard errors of the queue estimate so it stays
 *            measurable on a noisy upstream, never more than 10% of U for that
 *
 *   queued > allow                 → L ← U + allow    (a fall below 2/3 · L is
 *                                    probed first: ./little-limit.ts, ./probe.ts)
 *   the window did not fill L      → L unchanged      (app-limited)
 *   headroom² in 2+ windows in a row → L ← max(U + allow, min(L + step, L_pub · (1 + growth)))
 *                                    step = allow · 2^(run − 3), doubling   [growth 1]
 *   otherwise                      → L ← U + allow
 *   a window with drops            → L ← min(that, 0.9 · L)
 *
 *   filled¹: the window's max in-flight reached the published limit and its
 *   mean was at least 0.9 of it. headroom²: queued + n · SE < allow / 2.
 *   A change of less than 3 standard errors (SE) of the window's RTT is
 *   partly noise: only max(0.25, (change / 3 SE)²) of it is applied, all of
 *   it beyond; on a noisy upstream the limit is an average over windows, a
 *   real change moves it at once.
 *
 * n is the mean in-flight count at dispatch of the window's samples, rtt
 * their percentile RTT (./window.ts), baseline the same percentile with no
 * queue. Pairing each sample's RTT with the in-flight count it was
 * dispatched at removes the lag that makes a plain gradient undershoot: the
 * window describes the concurrency that caused its latency.
 *
 * Why it converges: an upstream with C workers and service time S (a FIFO
 * in front) answers in S while n ≤ C and in S · n / C beyond. So U = n while
 * n ≤ C (nothing queued: grow) and U = C beyond (shrink straight to
 * C + allow): one window reaches the fixed point L* = C + 0.3 · √C (17.2 for
 * 16 workers), and L* is stable: there queued = allow.
 * Fairness: instances sharing one upstream see the same RTT, so instance i
 * settles where L_i · (1 − baseline / rtt) = 0.3 · √U_i; the right side grows
 * slower than the left, which pushes the larger instance down and the
 * smaller up, towards equal shares (an allowance proportional to U would
 * keep any split forever). The integer published limit dithers around the
 * estimate (./little-limit.ts) so this correction, often a fraction of a
 * request, reaches the upstream.
 * Growth waits for two windows in a row of headroom: near L* the real queue
 * can be a request below the allowance, and one noisy window must not take
 * that for room. A noisy upstream creeps rather than jumps.
 */
import type { Window } from './window.js';

export interface LittleConfig {
  /** Standing queue allowance: queue · √U requests waiting at the upstream. */
  readonly queue: number;
  /** Most growth per increase while the RTT shows headroom (1 = ×2). */
  readonly growth: number;
  /** Windows between two routine baseline probes. */
  readonly probeEvery: number;
}

/** Multiplicative backoff for a window in which the upstream signalled overload. */
const DROP_BACKOFF = 0.9;
/** A change of this many standard errors of the window's RTT is applied in full. */
const NOISE_Z = 3;
/** The least share of a change that is applied: below 3 SE the limit is an average of this gain. */
const MIN_GAIN = 0.25;
/** A window filled the limit when its mean in-flight count at dispatch was at least this share of it. */
const FILLED = 0.9;
/** The allowance covers this many standard errors of the queue estimate... */
const NOISE_ALLOW = 4;
/** ...but never more than this share of U. */
const MAX_NOISE_ALLOW = 0.1;
/** U may exceed n by this factor at most (a window faster than the baseline). */
const MAX_RATIO = 1.25;

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

/**
 * `noise`: the RTT's usual relative standard error per window (smoothed). The
 * allowance is at least 4 of them (in requests: 4 · noise · U, up to 10% of U),
 * so the standing queue stays measurable: below that, a window cannot tell
 * it from headroom.
 */
export function read(w: Window, baselineMs: number, queue: number, noise = 0): Reading {
  const n = w.meanInflight;
  // Not clamped at 1: a window a little faster than the baseline is noise, and
  // cutting it off would bias U low on a noisy upstream (only the noise above
  // the baseline would count). Clamped at MAX_RATIO against a stale baseline.
  const ratio = w.rttMs > 0 && baselineMs > 0 ? Math.min(MAX_RATIO, baselineMs / w.rttMs) : 1;
  const useful = n * ratio;
  const allow = Math.max(queue * Math.sqrt(useful), Math.min(MAX_NOISE_ALLOW * useful, NOISE_ALLOW * noise * useful));
  const error = Number.isFinite(w.rttError) ? w.rttError : 0;
  return { useful, allow, queued: n - useful, headroom: n - useful + error * n < allow / 2 };
}

/**
 * The next estimate from `estimate` (the real-valued limit) after window `w`;
 * `published` is the integer limit the window ran under; `run`: how many
 * windows in a row (this one included) showed headroom, 0 when this one did not.
 */
export function littleNext(estimate: number, published: number, w: Window, r: Reading, run: number, cfg: LittleConfig): number {
  const { useful, allow, queued } = r;
  // The limit was what bounded the window: requests were dispatched at (about) the limit.
  const filled = w.maxInflight >= published && w.meanInflight >= FILLED * published;
  const error = Number.isFinite(w.rttError) ? w.rttError : 0;
  let target: number;
  if (queued > allow) target = useful + allow;
  else if (!filled) target = estimate;
  else if (r.headroom && run > 0) {
    // The estimate may run a step ahead of the published limit (hysteresis publishes every K windows), no more.
    const step = allow * 2 ** (run - 3);
    target = Math.max(useful + allow, Math.min(published * (1 + cfg.growth), Math.max(estimate, published) + step));
  }
  else target = useful + allow;
  if (w.drops > 0) return Math.min(target, estimate * DROP_BACKOFF);
  // How much of the change to believe: all of it beyond 3 standard errors, less and less below.
  const z = error > 0 ? Math.abs(target - estimate) / (NOISE_Z * error * estimate) : Infinity;
  return estimate + Math.max(MIN_GAIN, Math.min(1, z * z)) * (target - estimate);
}

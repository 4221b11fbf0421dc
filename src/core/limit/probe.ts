/**
 * The baseline: the upstream's RTT with nothing queued, and the probes that
 * measure it. Under sustained load no window shows it (a limit at the
 * upstream's concurrency keeps a small queue on purpose), so it is measured
 * by running a window at reduced concurrency. The question every probe
 * answers is the one a stale baseline gets wrong: is the upstream slower,
 * or are we queueing at it?
 *
 * In front of a FIFO upstream the RTT is flat in the in-flight count n up to
 * the upstream's concurrency and proportional to n beyond. So between two
 * windows at n1 > n2 with RTTs r1, r2, the elasticity
 *   e = ln(r1 / r2) / ln(n1 / n2)
 * is ~1 where requests queue and ~0 where they do not: a slower upstream
 * keeps its RTT when we send less, a queue loses it.
 *
 * Probes:
 * - deep: halve the limit, window by window, until the RTT stops falling
 *   (e < 0.3, or a fall within two standard errors of the two windows'
 *   RTTs) or the limit is at its minimum; the baseline is the RTT of the
 *   last (unqueued) step. Run at start (so an initial limit far above the
 *   upstream's capacity is measured right: each halving drains half the
 *   queue), and on demand when the limit has fallen below 2/3 of its highest
 *   value since the last deep probe: that fall is either a queue (then the probe
 *   confirms the baseline) or a slower upstream (then the baseline rises).
 *   On demand the first step runs at the fallen limit itself (but not below
 *   half the high: at a slow upstream, steps at low concurrency are slow to
 *   fill and starve the first lane); at start, at half the initial limit. Flat needs two steps of the same probe: the
 *   windows around a change mix old and new behaviour, so the window that
 *   made the limit fall is no evidence. "Highest value" is the highest in-flight count the
 *   upstream actually had (an overshoot the upstream never reached does not
 *   count).
 * - routine: every `probeEvery` windows one window at 80% of the limit,
 *   which drains the standing queue the limit keeps (0.4·√C ≤ 20% of C).
 *   A result within ±25% of the baseline is pooled with it, weighted by
 *   samples (the baseline counting for at most 100, so it keeps following a
 *   drifting upstream; a deep probe's few low-concurrency samples are soon
 *   outweighed); lower
 *   replaces it (the upstream got faster); higher by more than 25% starts a
 *   deep probe to find out why.
 * A route that did not reach the routine probe's limit by itself in the
 * window when a routine probe is due has just run one: that window is the
 * measurement, and the limit does not move.
 * Between probes, a window whose RTT is below the baseline beyond its noise
 * (4 standard errors, and 10% or more) starts a deep probe at once: the
 * upstream got faster, or another instance's queue drained. The deep
 * probe's baseline pools its last two steps when their RTTs agree within
 * twice their combined standard error (weighted by their samples), so a
 * step at low concurrency, with few samples, does not decide alone.
 *
 * After a probe the limit returns. When the deep probe found a queue
 * (some step had e ≥ 0.3), the steps measured the useful concurrency
 * directly, so the limit returns to no more than the largest n · baseline / rtt
 * of its steps plus the queue allowance. Otherwise the limit returns to its
 * value before the probe, scaled by how much the baseline rose (never above
 * its highest value since the last probe): a three times slower upstream
 * took the limit to a third, and the probe gives it back.
 *
 * A deep probe's last steps run at low concurrency with few samples, so a
 * routine probe follows 5 windows later to refine its baseline.
 *
 * Costs: a routine probe keeps 20% of the limit idle for about one window
 * per `probeEvery` (under 1% of throughput with the defaults).
 */
import type { Window } from './window.js';

/** A point of the RTT curve: RTT at mean in-flight n. */
interface Point {
  readonly n: number;
  readonly rttMs: number;
  /** Successful samples behind rttMs. */
  readonly samples: number;
  /** Relative standard error of rttMs (0 when unknown). */
  readonly error: number;
}

/** start: the first probe (from half the initial limit); deep: on demand (from the fallen limit); routine: on a timer. */
export type ProbeKind = 'start' | 'deep' | 'routine';

/** Elasticity below which the RTT is considered flat in the in-flight count. */
const FLAT = 0.3;
const MAX_DEEP_STEPS = 8;
const ROUTINE_DEPTH = 0.8;
const ROUTINE_BAND = 0.25;
/** Within the band, a routine probe's result is pooled with the baseline, which weighs at most this many samples. */
const WEIGHT_CAP = 100;
/** Windows from a deep probe to the routine probe that refines its baseline (its last steps had few samples). */
const SOON = 5;
/** The limit fell below this share of its high since the last probe: probe deep. */
const FALL = 2 / 3;

function pointOf(w: Window): Point {
  return { n: w.meanInflight, rttMs: w.rttMs, samples: w.samples - w.drops, error: Number.isFinite(w.rttError) ? w.rttError : 0 };
}

/** A routine probe's limit rounds up: it must drain the standing queue, not dig under the capacity. */
function routineCap(current: number): number {
  return Math.min(current - 1, Math.ceil(current * ROUTINE_DEPTH));
}

function elasticity(a: Point, b: Point): number {
  if (!(a.rttMs > 0 && b.rttMs > 0) || a.n <= b.n) return 0;
  return Math.log(a.rttMs / b.rttMs) / Math.log(a.n / b.n);
}

interface Probing {
  readonly kind: 'deep' | 'routine';
  /** The limit before the probe started. */
  readonly restore: number;
  /** The in-flight cap of the step in progress. */
  cap: number;
  /** Points measured so far, one per step. */
  readonly steps: Point[];
  queueFound: boolean;
}

/** What to do after a window outside a probe. */
export type SteadyAdvice = 'none' | ProbeKind;

export class Baseline {
  /** The unqueued RTT (ms); NaN until the first probe ends. */
  ms = NaN;
  /** Samples behind `ms`. */
  private weight = 0;
  private probing: Probing | null = null;
  private untilRoutine: number;
  /** The highest in-flight count the upstream had (within the limit) since the last deep probe ended. */
  private high = 0;

  constructor(
    private readonly cfg: { readonly probeEvery: number; readonly min: number },
  ) {
    this.untilRoutine = cfg.probeEvery;
  }

  /** The in-flight cap for samples to count (Infinity outside a probe). */
  get cap(): number {
    return this.probing?.cap ?? Infinity;
  }


  get active(): boolean {
    return this.probing !== null;
  }

  /** Starts a probe from published limit `current`; returns the limit to run its first step at. */
  start(kind: ProbeKind, current: number): number {
    let cap: number;
    if (kind === 'routine') cap = routineCap(current);
    else if (kind === 'start') cap = Math.floor(current / 2);
    // After a fall, from the fallen limit but no lower than half the high: the steps at
    // low concurrency of a slow upstream take long to fill, and starve the first lane.
    else cap = Math.max(current, Math.floor(this.high / 2));
    cap = Math.max(this.cfg.min, cap);
    this.probing = { kind: kind === 'routine' ? 'routine' : 'deep', restore: current, cap, steps: [], queueFound: false };
    return cap;
  }

  /**
   * A window of a probe closed. Returns the limit for the next step, or,
   * when the probe is over, `{ done: limit }` with the limit to return to.
   * `queue` is the allowance coefficient (see ./little.ts).
   */
  probeWindow(w: Window, queue: number): { readonly step: number } | { readonly done: number } {
    const p = this.probing as Probing;
    if (!(w.rttMs > 0)) return { step: p.cap }; // no successful sample: measure again
    const point = pointOf(w);
    if (p.kind === 'routine') return this.endRoutine(p, point);
    const prev = p.steps[p.steps.length - 1];
    p.steps.push(point);
    // Flat needs two points of this probe, the second at a clearly lower in-flight count
    // (the first step at start also holds the ramp-up from zero: no evidence either way).
    const e = prev === undefined ? 1 : elasticity(prev, point);
    // A fall counts when it is also beyond the two windows' noise (two standard errors).
    const significant = prev !== undefined && Math.log(prev.rttMs / point.rttMs) > 2 * Math.hypot(prev.error, point.error);
    const fell = e >= FLAT && significant;
    const falling = prev === undefined || prev.n < 1.5 * point.n || fell;
    if (fell) p.queueFound = true;
    if (falling && p.cap > this.cfg.min && p.steps.length < MAX_DEEP_STEPS) {
      p.cap = Math.max(this.cfg.min, Math.floor(p.cap / 2));
      return { step: p.cap };
    }
    return { done: this.endDeep(p, queue) };
  }

  /**
   * The window is faster than the baseline beyond its noise (4 standard
   * errors, and 10% or more): the upstream got faster, or another instance's
   * queue drained. The baseline is stale: measure it again (deep) before
   * using it, since a stale high baseline would read the window as headroom
   * that is not there.
   */
  faster(w: Window): boolean {
    const noise = Number.isFinite(w.rttError) ? 4 * w.rttError : 0;
    return w.rttMs > 0 && w.rttMs < this.ms * (1 - Math.max(0.1, noise));
  }

  /** A window outside a probe closed, under published limit `current`: probe? */
  steadyWindow(w: Window, current: number): SteadyAdvice {
    // What the upstream really had in flight, not a limit it never reached (an overshoot).
    const had = Math.min(w.meanInflight, current);
    if (had > this.high) this.high = had;
    if (current < FALL * this.high) return 'deep';
    if (--this.untilRoutine > 0) return 'none';
    // A route that stayed within the routine probe's limit by itself has just run one.
    if (w.maxInflight <= routineCap(current) && w.rttMs > 0) {
      const point = pointOf(w);
      if (point.rttMs > this.ms * (1 + ROUTINE_BAND)) return 'deep';
      this.routineResult(point);
      return 'none';
    }
    return 'routine';
  }

  private endRoutine(p: Probing, point: Point): { readonly step: number } | { readonly done: number } {
    if (point.rttMs > this.ms * (1 + ROUTINE_BAND)) {
      // Slower at lower concurrency: find out how much, keeping where we came from.
      this.probing = { kind: 'deep', restore: p.restore, cap: Math.max(this.cfg.min, Math.floor(p.cap / 2)), steps: [point], queueFound: false };
      return { step: this.probing.cap };
    }
    this.routineResult(point);
    // A routine probe changes nothing about where the limit has been: `high` stays.
    this.probing = null;
    return { done: p.restore };
  }

  /** Folds a routine measurement (within the band, or lower) into the baseline. */
  private routineResult(point: Point): void {
    const old = this.ms;
    if (point.rttMs < old * (1 - ROUTINE_BAND) || !(old > 0)) this.measured(point.rttMs, point.samples);
    else {
      // Within the band: pool by samples, the older ones weighing at most WEIGHT_CAP.
      const w = Math.min(this.weight, WEIGHT_CAP);
      this.ms = (old * w + point.rttMs * point.samples) / (w + point.samples);
      this.weight = w + point.samples;
    }
    this.untilRoutine = this.cfg.probeEvery;
  }

  private endDeep(p: Probing, queue: number): number {
    const old = this.ms;
    const last = p.steps[p.steps.length - 1] as Point;
    const prev = p.steps[p.steps.length - 2];
    // The last two steps agree within their noise: both measured the unqueued RTT, pool them.
    const agree = prev !== undefined && prev.rttMs <= last.rttMs * (1 + 2 * Math.hypot(prev.error, last.error));
    if (agree) this.measured((prev.rttMs * prev.samples + last.rttMs * last.samples) / (prev.samples + last.samples), prev.samples + last.samples);
    else this.measured(last.rttMs, last.samples);
    let limit: number;
    if (p.queueFound) {
      // The steps in the queue measured the useful concurrency itself.
      // (Not below half the way back: another instance's queue looks the same as ours.)
      const useful = Math.max(...p.steps.map((s) => s.n * Math.min(1, this.ms / s.rttMs)));
      const measured = useful + queue * Math.sqrt(useful);
      this.probing = null;
      this.untilRoutine = Math.min(this.cfg.probeEvery, SOON);
      this.high = Math.max(this.cfg.min, Math.floor(measured));
      return Math.min(p.restore, Math.max(measured, p.restore / 2));
    } else {
      // The baseline rose by as much as the limit fell (within 20%): the fall was the upstream
      // being slower, not a queue, so the limit goes back where it was.
      const rose = old > 0 ? this.ms / old : 1;
      const high = Math.max(this.high, p.restore);
      limit = rose <= 1 ? p.restore : p.restore * rose >= 0.8 * high ? high : p.restore * rose;
    }
    return this.finish(limit);
  }

  private measured(ms: number, samples: number): void {
    this.ms = ms;
    this.weight = samples;
  }

  /** Ends a deep probe returning to `limit`, which becomes the new high. */
  private finish(limit: number): number {
    this.probing = null;
    this.untilRoutine = Math.min(this.cfg.probeEvery, SOON);
    this.high = Math.max(this.cfg.min, Math.floor(limit));
    return limit;
  }
}

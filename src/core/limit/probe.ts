/**
 * The baseline: the upstream's RTT with nothing queued, and the probes that
 * measure it. Under sustained load no window shows it (the limit keeps a
 * small queue on purpose), so it is measured by running windows at reduced
 * concurrency. The question every probe answers is the one a stale baseline
 * gets wrong: is the upstream slower, or are we queueing at it?
 *
 * In front of a FIFO upstream the RTT is flat in the in-flight count n up to
 * the upstream's concurrency and proportional to n beyond. So between two
 * windows at n1 > n2 with RTTs r1, r2 the elasticity
 *   e = ln(r1 / r2) / ln(n1 / n2)
 * is ~1 where requests queue and ~0 where they do not: a slower upstream
 * keeps its RTT when we send less, a queue loses it.
 *
 * Deep probes lower the limit step by step, one window each, until the RTT
 * stops falling. A step "fell" when e >= 0.3 and the fall exceeds two
 * standard errors of the two windows' RTTs; it is inconclusive when the
 * in-flight counts differ by less than 1.2x or the RTT rose beyond noise
 * (the upstream changed meanwhile); the probe goes on while steps fall or
 * are inconclusive (at most 8 steps, never below `min`). After a fall the
 * next step goes straight to the useful concurrency the falling step shows
 * (n · baseline / rtt), else the limit is divided by the probe's step.
 * The baseline becomes the last step's RTT, pooled with the one before when
 * they agree within twice their combined standard error. Kinds:
 * - start: one window at half the initial limit, one back at the initial
 *   limit; flat between them, the probe is over (a sane initial limit costs
 *   one window at half); a fall, it goes on down from half, halving, so an
 *   initial limit far above the upstream's capacity is drained step by step
 *   and measured right.
 * - fall: when a window asks to cut the limit below 2/3 of it (./little.ts),
 *   before cutting; the window is the first point, the first step runs at
 *   limit / 1.25, steps ÷1.25 (gentle, so the first lane keeps its slots
 *   while we find out). A slower upstream reads flat at once and keeps its
 *   limit; fewer workers read as a fall and go straight to them.
 * - deep: when the limit has fallen below 2/3 of the highest in-flight count
 *   since the last deep probe (a fall in small steps), or a window was faster
 *   than the baseline beyond its noise (4 standard errors and 10%: the
 *   upstream got faster, or another instance's queue drained); from the
 *   limit, but not below half that high, steps ÷1.25.
 * - routine: every `probeEvery` windows one window at 80% of the limit,
 *   which drains the standing queue the limit keeps. A result within ±25% of
 *   the baseline is pooled with it by samples (the baseline weighing at most
 *   100, so it keeps following a drifting upstream); lower replaces it; higher
 *   by more than 25% turns the probe into a deep one. A route that stayed
 *   within 80% of its limit by itself in the window a routine probe is due
 *   has just run one: that window is the measurement, the limit stays.
 *   A routine probe follows 5 windows after a deep one, to refine a
 *   baseline measured on few samples.
 *
 * After a deep probe the limit returns. When some step fell (a queue), the
 * steps measured the useful concurrency itself: the limit returns to no
 * more than the largest n · baseline / rtt of the steps plus the allowance.
 * Otherwise it returns to its value before the probe, and when the baseline
 * rose about as much as the limit had fallen (the fall was a slower
 * upstream, not a queue), to the highest value since the last deep probe:
 * a three times slower upstream gives its third back.
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

/**
 * start: the first probe (from half the initial limit); fall: before a fall of more than
 * a third is applied (from the limit, the window that called for the fall as the first
 * point); deep: on demand after the limit fell or the upstream got faster; routine: on a timer.
 */
export type ProbeKind = 'start' | 'fall' | 'deep' | 'routine';

/**
 * A probe on demand divides the limit by this per step (the start probe halves: it
 * may have far to go). Gentler than halving, so the first lane is not starved while a
 * slower upstream is being told from a queue.
 */
const DEEP_STEP = 1.25;
/** Two steps tell flat from falling only when their in-flight counts differ by this factor. */
const MIN_STEP_RATIO = 1.2;
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
  /** Each step divides the cap by this. */
  readonly step: number;
  /** Points measured so far, one per step. */
  readonly steps: Point[];
  queueFound: boolean;
  /** The start probe (see startCheck). */
  readonly atStart: boolean;
  /** The start probe's check against the initial limit is done. */
  checked?: boolean;
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

  get active(): boolean {
    return this.probing !== null;
  }

  /**
   * Starts a probe from published limit `current`; returns the limit to run its first
   * step at. `first`: for a fall probe, the window that called for the fall.
   */
  start(kind: ProbeKind, current: number, first?: Window): number {
    let cap: number;
    if (kind === 'routine') cap = routineCap(current);
    else if (kind === 'start') cap = Math.floor(current / 2);
    else if (kind === 'fall') cap = Math.min(current - 1, Math.ceil(current / DEEP_STEP));
    // After a fall, from the fallen limit but no lower than half the high: the steps at
    // low concurrency of a slow upstream take long to fill, and starve the first lane.
    else cap = Math.max(current, Math.floor(this.high / 2));
    cap = Math.max(this.cfg.min, cap);
    const steps = kind === 'fall' && first !== undefined && first.rttMs > 0 ? [pointOf(first)] : [];
    const k = kind === 'routine' ? 'routine' : 'deep';
    this.probing = { kind: k, restore: current, cap, step: kind === 'start' ? 2 : DEEP_STEP, steps, queueFound: false, atStart: kind === 'start' };
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
    if (p.atStart) {
      const check = this.startCheck(p, point, queue);
      if (check !== null) return check;
    }
    const prev = p.steps[p.steps.length - 1];
    p.steps.push(point);
    // Flat needs two points of this probe, the second at a clearly lower in-flight count
    // (the first step at start also holds the ramp-up from zero: no evidence either way).
    const e = prev === undefined ? 1 : elasticity(prev, point);
    // A fall counts when it is also beyond the two windows' noise (two standard errors).
    const significant = prev !== undefined && Math.log(prev.rttMs / point.rttMs) > 2 * Math.hypot(prev.error, point.error);
    const fell = e >= FLAT && significant;
    // The RTT rose beyond noise while the in-flight count fell: the upstream changed during
    // the probe (or its first point mixed old and new), no evidence either way.
    const rose = prev !== undefined && Math.log(point.rttMs / prev.rttMs) > 2 * Math.hypot(prev.error, point.error);
    const falling = prev === undefined || prev.n < MIN_STEP_RATIO * point.n || fell || rose;
    if (fell) p.queueFound = true;
    if (falling && p.cap > this.cfg.min && p.steps.length < MAX_DEEP_STEPS) {
      // A queue, and a baseline to read it with: the useful concurrency is n · baseline / rtt,
      // so the next step goes straight there (it then needs one more to be seen flat).
      const useful = fell && this.ms > 0 ? Math.floor((point.n * this.ms) / point.rttMs) : Infinity;
      p.cap = Math.max(this.cfg.min, Math.min(Math.floor(p.cap / p.step), useful));
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

  /**
   * The start probe's first two windows: one at half the initial limit, then
   * one back at the initial limit. Flat between them: nothing was queued at
   * the initial limit either; the baseline is the lower window's RTT and the
   * probe is over without going lower (the first lane keeps its slots). A
   * fall: the initial limit queues, so the probe goes on down from the lower
   * window, halving. Null when the probe is past this.
   */
  private startCheck(p: Probing, point: Point, queue: number): { readonly step: number } | { readonly done: number } | null {
    if (p.steps.length === 0) {
      p.steps.push(point);
      p.cap = Math.max(this.cfg.min, p.restore);
      return { step: p.cap };
    }
    if (p.steps.length !== 1 || p.checked) return null;
    p.checked = true;
    const low = p.steps[0] as Point;
    const noise = 2 * Math.hypot(low.error, point.error);
    const fell = point.n >= MIN_STEP_RATIO * low.n && elasticity(point, low) >= FLAT && Math.log(point.rttMs / low.rttMs) > noise;
    if (!fell) {
      // Pooled with the upper window when it is no slower beyond noise (both unqueued).
      if (point.rttMs <= low.rttMs * (1 + noise)) this.measured((low.rttMs * low.samples + point.rttMs * point.samples) / (low.samples + point.samples), low.samples + point.samples);
      else this.measured(low.rttMs, low.samples);
      return { done: this.finish(p.restore) };
    }
    // Queued at the initial limit: go on down from the lower step, with the upper one as evidence.
    p.queueFound = true;
    p.steps.splice(0, 1, point, low);
    p.cap = Math.max(this.cfg.min, Math.floor(low.n / 2));
    return { step: p.cap };
  }

  private endRoutine(p: Probing, point: Point): { readonly step: number } | { readonly done: number } {
    if (point.rttMs > this.ms * (1 + ROUTINE_BAND)) {
      // Slower at lower concurrency: find out how much, keeping where we came from.
      this.probing = { kind: 'deep', restore: p.restore, cap: Math.max(this.cfg.min, Math.floor(p.cap / DEEP_STEP)), step: DEEP_STEP, steps: [point], queueFound: false, atStart: false };
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
      // (At start, not below half the way back: another instance's queue looks the same as ours.)
      const useful = Math.max(...p.steps.map((s) => s.n * Math.min(1, this.ms / s.rttMs)));
      const measured = useful + queue * Math.sqrt(useful);
      this.probing = null;
      this.untilRoutine = Math.min(this.cfg.probeEvery, SOON);
      this.high = Math.max(this.cfg.min, Math.floor(measured));
      return Math.min(p.restore, measured);
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

/**
 * LittleLimit: the default adaptive limit (`algorithm: little`). It composes
 * the windowing (./window.ts), the baseline and its probes (./probe.ts), the
 * Little rule (./little.ts), clamping and the hysteresis of ./hysteresis.ts:
 *
 *   onSample ─▶ SampleWindow ─▶ probing? ── Baseline.probeWindow ─▶ next step | limit back
 *                                 │ no
 *                                 ▼
 *          faster than the baseline? ── yes ─▶ deep probe
 *                                 │ no
 *                                 ▼
 *          littleNext(estimate, window, reading) ─▶ clamp [min, max]
 *          ─▶ below 2/3 of the limit? ── yes ─▶ fall probe (the cut waits for its verdict)
 *                                 │ no
 *                                 ▼
 *          Hysteresis ─▶ dithering ─▶ current ─▶ Baseline.steadyWindow ─▶ deep / routine probe?
 *
 * Windows stay open until their RTT is known to ±5% (one standard error, up
 * to 10 windowMs), so a noisy upstream is read over longer windows rather
 * than noisier ones.
 *
 * The published limit is the integer the hysteresis holds, plus one when
 * the estimate's fraction above it exceeds d, d stepping through [0, 1) in
 * golden-ratio steps: over a few windows it averages the estimate. A plain
 * floor would keep an instance whose fair share is 4.4 at 4 forever: the
 * small correction the Little rule asks for would never reach the upstream,
 * and neither would the √ that makes instances fair.
 *
 * While a probe runs, `current` is the probe's step limit and the window
 * counts only requests dispatched since the step began (./window.ts
 * addProbe); the estimate is left alone. A probe window in which the
 * upstream signalled overload ends the probe and is fed to the rule, which
 * backs off.
 */
import type { LimitConfig } from '../../config/types.js';
import { Hysteresis } from './hysteresis.js';
import type { Limit, RttEstimates, Sample } from './limit.js';
import { littleNext, read, type LittleConfig } from './little.js';
import { Baseline } from './probe.js';
import { SampleWindow, type Window } from './window.js';

/** Windows stay open until their RTT is known to ±5% (one standard error): see ./window.ts. */
const WINDOW_ERROR = 0.05;

/** A window asking for a limit below this share of the published one is probed first (./probe.ts). */
const FALL_PROBE = 2 / 3;
/** Weight of each window in the average RTT standard error. */
const NOISE_GAIN = 0.2;
/** Fractional part of the golden ratio: the most even sequence of offsets in [0, 1). */
const GOLDEN = 0.6180339887;

type Bounds = Pick<LimitConfig, 'initial' | 'min' | 'max' | 'window' | 'hysteresis'>;

export class LittleLimit implements Limit {
  current: number;
  private estimate: number;
  private readonly window: SampleWindow;
  private readonly hysteresis: Hysteresis;
  private readonly baseline: Baseline;
  private recentMs = NaN;
  private recentSpread = 0;
  /** The windows' usual RTT standard error (an average; see little.ts `read`). */
  private noise = NaN;
  /** Steady windows that showed headroom, in a row (halved by a window that did not, see steadyWindow). */
  private headroomRun = 0;
  /** When the running probe step began (ms, sample time). */
  private stepFrom = -Infinity;
  /** The integer the hysteresis holds; `current` is it or one more (dithering). */
  private held: number;
  /** The dithering offset of the last publication, in [0, 1). */
  private dither = 0;
  /** Steady windows that showed headroom, strictly in a row. */
  private headroomInARow = 0;

  constructor(
    private readonly cfg: Bounds,
    private readonly little: LittleConfig,
  ) {
    this.estimate = cfg.initial;
    this.window = new SampleWindow(cfg.window, WINDOW_ERROR);
    this.hysteresis = new Hysteresis(cfg.hysteresis);
    this.baseline = new Baseline({ probeEvery: little.probeEvery, min: cfg.min });
    this.held = cfg.initial;
    this.current = this.baseline.start('start', cfg.initial);
  }

  /** Runs a probe step at `limit` from time `at` (ms): the window restarts. */
  private startStep(limit: number, at: number): void {
    this.current = limit;
    this.stepFrom = at;
    this.window.clear();
  }

  /**
   * A probe step counts requests completed this long after it began (see
   * SampleWindow.addProbe): the last RTT stretched by twice its spread, so
   * the step's first requests have come back, slow ones included.
   */
  private warmupMs(): number {
    return Number.isFinite(this.recentMs) ? this.recentMs * (1 + 2 * this.recentSpread) : 0;
  }

  get rtt(): RttEstimates {
    const b = this.baseline.ms;
    return { recentMs: Number.isNaN(this.recentMs) ? null : this.recentMs, baselineMs: Number.isNaN(b) ? null : b };
  }

  onSample(s: Sample): void {
    // A probe step closes on half the samples and does not stretch for precision: steps run at low concurrency.
    const probing = this.baseline.active;
    if (this.stepFrom === -Infinity) this.stepFrom = s.startedAt; // the start probe begins with the first request
    const w = probing
      ? this.window.addProbe(s, this.stepFrom, this.warmupMs(), Math.max(3, Math.ceil(this.cfg.window.minSamples / 2)))
      : this.window.add(s);
    if (w === null) return;
    if (w.rttMs > 0) {
      this.recentMs = w.rttMs;
      this.recentSpread = Number.isFinite(w.rttSpread) ? w.rttSpread : 0;
    }
    // Sample time now: the completion of the sample that closed the window.
    const now = s.startedAt + s.rttMs;
    if (this.baseline.active) this.probeWindow(w, now);
    else this.steadyWindow(w, now);
  }

  private probeWindow(w: Window, now: number): void {
    if (w.drops > 0) {
      this.endProbe(this.estimate);
      this.steadyWindow(w, now);
      return;
    }
    const r = this.baseline.probeWindow(w, this.little.queue);
    this.window.clear();
    if ('step' in r) this.startStep(r.step, now);
    else this.endProbe(r.done);
  }

  private endProbe(limit: number): void {
    this.headroomRun = this.headroomInARow = 0;
    this.estimate = this.clamp(limit);
    this.current = this.held = Math.max(1, Math.floor(this.estimate));
    this.hysteresis.reset();
  }

  private steadyWindow(w: Window, now: number): void {
    const published = this.current;
    if (this.baseline.faster(w)) {
      this.startStep(this.baseline.start('deep', published), now);
      return;
    }
    if (Number.isFinite(w.rttError)) this.noise = Number.isNaN(this.noise) ? w.rttError : this.noise + NOISE_GAIN * (w.rttError - this.noise);
    const r = read(w, this.baseline.ms, this.little.queue, Number.isNaN(this.noise) ? 0 : this.noise);
    // A queue beyond the allowance ends a run of headroom; a window merely without
    // headroom (noise near the knee) halves it, so growth resumes where it was.
    this.headroomRun = r.headroom ? this.headroomRun + 1 : r.queued > r.allow ? 0 : this.headroomRun >> 1;
    this.headroomInARow = r.headroom ? this.headroomInARow + 1 : 0;
    // One window alone is not headroom: near the knee, noise shows some.
    const run = this.headroomInARow >= 2 ? this.headroomRun : 0;
    const target = this.clamp(littleNext(this.estimate, published, w, r, run, this.little));
    if (target < FALL_PROBE * published) {
      // A fall this deep is either fewer workers (a queue: fall) or a slower upstream (keep
      // the limit, raise the baseline): probe a little below the limit before deciding.
      this.startStep(this.baseline.start('fall', published, w), now);
      return;
    }
    this.estimate = target;
    this.held = this.hysteresis.next(this.held, target, w.drops > 0);
    // Dithered publication: one more than the held integer when the estimate's fraction
    // above it exceeds d, d running through [0, 1) in golden-ratio steps, so the published
    // integer averages the estimate instead of its floor.
    this.dither = (this.dither + GOLDEN) % 1;
    this.current = this.held + (target - this.held > this.dither ? 1 : 0);
    const advice = this.baseline.steadyWindow(w, this.current);
    if (advice === 'none') return;
    this.startStep(this.baseline.start(advice, this.current), now);
  }

  private clamp(x: number): number {
    return Math.min(this.cfg.max, Math.max(this.cfg.min, x));
  }
}

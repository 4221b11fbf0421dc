/**
 * Windowing: per-request samples are too noisy to steer a limit one by one,
 * so they are gathered into windows and each window is one update.
 *
 * A window closes on the sample that makes it hold at least `minSamples`
 * samples AND span at least `windowMs` (whichever comes later), so a busy
 * route updates every `windowMs` and a quiet one every `minSamples` requests.
 * Time is the samples' completion time (startedAt + rttMs): no clock here.
 *
 * Aggregates: the window's RTT is the configured percentile of the RTTs of
 * its successful samples (a dropped request's RTT says nothing about
 * queueing: a fast 503 would look like an idle upstream, a timeout like a
 * slow one), how precise that percentile is, the largest and the mean
 * in-flight count seen at dispatch, and the number of drops.
 *
 * Precision: the relative standard error of a sample percentile is about
 * 1.25 · σ / (√n · value) (exact for the median of a normal distribution),
 * with σ estimated robustly as IQR / 1.35. It tells a controller how large
 * a change must be to be more than this window's noise. A window given a
 * `maxError` also stays open until its RTT is that precise (or it spans
 * MAX_STRETCH windows): a noisy upstream gets longer windows instead of
 * noisier ones. The error is re-checked each time the count grew by a
 * quarter, so the check costs O(log n) percentile walks per window.
 */
import type { WindowConfig } from '../../config/types.js';
import { LogHistogram } from '../histogram.js';
import type { Sample } from './limit.js';

/** One closed window. */
export interface Window {
  /** Completion time (ms) of its first and latest sample. */
  readonly startMs: number;
  readonly endMs: number;
  /** Samples in the window, drops included. */
  readonly samples: number;
  /** The percentile RTT of the successful samples; NaN when every sample was a drop. */
  readonly rttMs: number;
  /** Relative standard error of rttMs (see above); NaN with fewer than 2 successes. */
  readonly rttError: number;
  /** Interquartile range of the RTTs over rttMs: how spread the service is (0.1 steady, 0.7 lognormal CoV 0.5). */
  readonly rttSpread: number;
  readonly maxInflight: number;
  /** Mean in-flight count at dispatch of the window's samples (each sample counts itself). */
  readonly meanInflight: number;
  readonly drops: number;
}

/** How many windowMs a window with `maxError` may stretch to. */
const MAX_STRETCH = 10;

export class SampleWindow {
  private readonly rtts = new LogHistogram();
  /** Sample count at which to look at the error again (maxError windows). */
  private checkAt = 0;
  private samples = 0;
  private drops = 0;
  private maxInflight = 0;
  private sumInflight = 0;
  private startMs = 0;
  private endMs = 0;

  constructor(
    private readonly cfg: WindowConfig,
    /** Close only once the RTT's relative standard error is at most this (see above). */
    private readonly maxError = Infinity,
  ) {}

  /**
   * Adds a sample; returns the window when this sample closed it (the next
   * sample starts a new one), else null. Samples dispatched while more than
   * `inflightCap` requests were in flight are left out (gradient's probes).
   */
  add(s: Sample, inflightCap = Infinity): Window | null {
    if (s.inflight > inflightCap) return null;
    return this.take(s, this.cfg.minSamples, this.maxError);
  }

  /**
   * A probe step's window: only samples dispatched from `from` on (ms) that
   * completed `warmupMs` after it, closing on `minSamples` and without
   * stretching for precision. Filtering on dispatch time rather than on the
   * in-flight count keeps the window unbiased: right after the limit fell,
   * the requests dispatched before are slow to come back and the new ones
   * fast, so an in-flight filter would keep the fast ones only (a lognormal
   * service would read 15% low); after the warm-up, slow and fast requests
   * of the step come back in their true proportions.
   */
  addProbe(s: Sample, from: number, warmupMs: number, minSamples: number): Window | null {
    if (s.startedAt < from || s.startedAt + s.rttMs < from + warmupMs) return null;
    return this.take(s, minSamples, Infinity);
  }

  private include(s: Sample): void {
    const end = s.startedAt + s.rttMs;
    if (this.samples === 0) this.startMs = this.endMs = end;
    else if (end > this.endMs) this.endMs = end;
    this.samples++;
    if (s.dropped) this.drops++;
    else this.rtts.record(s.rttMs);
    if (s.inflight > this.maxInflight) this.maxInflight = s.inflight;
    this.sumInflight += s.inflight;
  }

  private take(s: Sample, minSamples: number, maxError: number): Window | null {
    this.include(s);
    const span = this.endMs - this.startMs;
    if (this.samples < minSamples || span < this.cfg.windowMs || this.samples < this.checkAt) return null;
    const w = this.close();
    if (w.rttError > maxError && span < MAX_STRETCH * this.cfg.windowMs) {
      this.checkAt = Math.ceil(this.samples * 1.25);
      return null;
    }
    this.clear();
    return w;
  }

  /** The window as it stands (clear() starts the next one). */
  private close(): Window {
    const rttMs = this.rtts.percentile(this.cfg.percentile);
    const n = this.rtts.count;
    const rttSpread = n >= 2 && rttMs > 0 ? (this.rtts.percentile(0.75) - this.rtts.percentile(0.25)) / rttMs : NaN;
    return {
      startMs: this.startMs,
      endMs: this.endMs,
      samples: this.samples,
      rttMs,
      rttError: (1.25 * rttSpread) / 1.35 / Math.sqrt(n),
      rttSpread,
      maxInflight: this.maxInflight,
      meanInflight: this.samples > 0 ? this.sumInflight / this.samples : 0,
      drops: this.drops,
    };
  }

  /** Forgets the open window. */
  clear(): void {
    this.checkAt = 0;
    this.rtts.reset();
    this.samples = this.drops = this.maxInflight = this.sumInflight = 0;
  }
}

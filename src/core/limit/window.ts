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
 * slow one), the largest in-flight count seen at dispatch, and the number of
 * drops.
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
  readonly maxInflight: number;
  readonly drops: number;
}

export class SampleWindow {
  private readonly rtts = new LogHistogram();
  private samples = 0;
  private drops = 0;
  private maxInflight = 0;
  private startMs = 0;
  private endMs = 0;

  constructor(private readonly cfg: WindowConfig) {}

  /**
   * Adds a sample; returns the window when this sample closed it (the next
   * sample starts a new one), else null. Samples dispatched while more than
   * `inflightCap` requests were in flight are left out (used by probes).
   */
  add(s: Sample, inflightCap = Infinity): Window | null {
    if (s.inflight > inflightCap) return null;
    const end = s.startedAt + s.rttMs;
    if (this.samples === 0) this.startMs = this.endMs = end;
    else if (end > this.endMs) this.endMs = end;
    this.samples++;
    if (s.dropped) this.drops++;
    else this.rtts.record(s.rttMs);
    if (s.inflight > this.maxInflight) this.maxInflight = s.inflight;
    if (this.samples < this.cfg.minSamples || this.endMs - this.startMs < this.cfg.windowMs) return null;
    const w: Window = {
      startMs: this.startMs,
      endMs: this.endMs,
      samples: this.samples,
      rttMs: this.rtts.percentile(this.cfg.percentile),
      maxInflight: this.maxInflight,
      drops: this.drops,
    };
    this.clear();
    return w;
  }

  /** Forgets the open window. */
  clear(): void {
    this.rtts.reset();
    this.samples = this.drops = this.maxInflight = 0;
  }
}

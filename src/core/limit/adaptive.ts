/**
 * AdaptiveLimit: the windowing decorator, the RTT baseline, the probe and
 * hysteresis layer 1 around one algorithm (aimd, gradient, vegas).
 *
 *   onSample ─▶ SampleWindow ─(one Window per window)─▶ baseline ─▶ algorithm
 *            ─▶ app-limited rule, clamp [min, max] ─▶ Hysteresis ─▶ current
 *
 * The algorithm owns one real number, the estimate; `current` is the
 * published integer the limiter counts against (see ./hysteresis.ts for how
 * the two differ). Rules shared by every algorithm:
 * - Never grow while the upstream is not using the limit: in a window without
 *   drops whose max inflight < current / 2, the estimate may fall but not rise
 *   (otherwise a quiet route would "learn" a limit it never tested).
 * - The estimate is clamped to [min, max].
 *
 * The baseline RTT (latency algorithms only) is the upstream's RTT without
 * queueing. Inferring it from traffic alone is ambiguous under sustained load
 * (a limit above the upstream's concurrency queues every request, so no
 * window ever shows the unqueued RTT), so it is measured on purpose:
 * 1. Probes: the first window, and then one window every PROBE_INTERVAL_MS
 *    of sample time, runs at half the limit, and the baseline becomes the RTT
 *    of the requests dispatched while no more than that were in flight (in
 *    either direction). Halving the concurrency drains any queue we caused,
 *    so the first probe is right even when `initial` is above the upstream's
 *    capacity (up to 2x; beyond, each probe halves the error), and a later
 *    probe follows an upstream that became permanently slower (without it
 *    the limit would stay low forever). After a probe the limit returns to
 *    its value before it; a probe window with drops is also fed to the
 *    algorithm, which backs off; one without any successful sample is
 *    repeated at the next window.
 * 2. Between probes, a window faster than the baseline pulls it down with
 *    weight min(1, successful samples / followSamples) (gradient: longWindow;
 *    vegas: 1, i.e. the minimum): an upstream that got faster is followed at
 *    once, while single-window noise moves it little. It never rises between
 *    probes, so it cannot creep up with the queueing latency it is there to
 *    detect (the weakness of a plain moving average).
 * A probe costs one window at half concurrency per interval (about 0.2% of
 * throughput with 100 ms windows).
 */
import type { LimitConfig } from '../../config/types.js';
import { Hysteresis } from './hysteresis.js';
import type { Limit, RttEstimates, Sample } from './limit.js';
import { SampleWindow, type Window } from './window.js';

/** One adaptive algorithm: a pure rule from (estimate, window) to the next estimate. */
export interface Algorithm {
  /** True when `next` compares window RTTs with the baseline (then it is measured and probed). */
  readonly usesLatency: boolean;
  /** The next estimate, unclamped. `baselineMs` is NaN until measured (or when !usesLatency). */
  next(estimate: number, w: Window, baselineMs: number): number;
}

/** How often the baseline is re-measured, in sample time (Envoy's minRTT interval default). */
export const PROBE_INTERVAL_MS = 60_000;

type LimitBounds = Pick<LimitConfig, 'initial' | 'min' | 'max' | 'window' | 'hysteresis'>;

export class AdaptiveLimit implements Limit {
  current: number;
  private estimate: number;
  private readonly window: SampleWindow;
  private readonly hysteresis: Hysteresis;
  private baselineMs = NaN;
  private recentMs = NaN;
  /** Sample time at which the next probe starts; NaN until the first window. */
  private probeAt = NaN;
  /** While probing: the limit to return to. */
  private restore = 0;
  private probing = false;

  constructor(
    private readonly cfg: LimitBounds,
    private readonly algorithm: Algorithm,
    /** Rule 2's weight: samples over which the baseline follows lower RTTs. */
    private readonly followSamples = 1,
  ) {
    this.current = cfg.initial;
    this.estimate = cfg.initial;
    this.window = new SampleWindow(cfg.window);
    this.hysteresis = new Hysteresis(cfg.hysteresis);
    if (algorithm.usesLatency) this.startProbe();
  }

  get rtt(): RttEstimates {
    return {
      recentMs: Number.isNaN(this.recentMs) ? null : this.recentMs,
      baselineMs: Number.isNaN(this.baselineMs) ? null : this.baselineMs,
    };
  }

  onSample(s: Sample): void {
    const w = this.window.add(s, this.probing ? this.current : Infinity);
    if (w === null) return;
    if (this.probing) this.endProbe(w);
    else this.update(w);
  }

  private update(w: Window): void {
    const latency = this.algorithm.usesLatency;
    if (latency && w.rttMs < this.baselineMs) {
      const weight = Math.min(1, (w.samples - w.drops) / this.followSamples);
      this.baselineMs += (w.rttMs - this.baselineMs) * weight;
    }
    if (w.rttMs >= 0) this.recentMs = w.rttMs;

    const dropped = w.drops > 0;
    let target = this.algorithm.next(this.estimate, w, this.baselineMs);
    if (!dropped && w.maxInflight < this.current / 2) target = Math.min(target, this.estimate);
    target = Math.min(this.cfg.max, Math.max(this.cfg.min, target));
    this.estimate = target;
    this.current = this.hysteresis.next(this.current, target, dropped);

    if (latency && w.endMs >= this.probeAt) this.startProbe();
  }

  private startProbe(): void {
    this.probing = true;
    this.restore = this.current;
    this.current = Math.max(this.cfg.min, Math.floor(this.current / 2));
    this.window.clear();
  }

  private endProbe(w: Window): void {
    this.probing = false;
    if (w.rttMs >= 0) this.baselineMs = this.recentMs = w.rttMs;
    this.probeAt = Number.isNaN(this.baselineMs) ? w.endMs : w.endMs + PROBE_INTERVAL_MS;
    this.current = this.restore;
    this.hysteresis.reset();
    if (w.drops > 0) this.update(w);
  }
}

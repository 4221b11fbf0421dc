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
 * queueing: the lowest window RTT since the last probe, as BBR keeps its
 * RTprop. Inferring it from traffic alone is ambiguous under sustained load
 * (a limit above the upstream's concurrency queues every request, so no
 * window ever shows the unqueued RTT), so it is also measured on purpose:
 * - Probes: the first window, and then one window in every `probeEvery`
 *   (gradient: longWindow; vegas: 600), runs at half the limit, and the
 *   baseline restarts from the RTT of the requests dispatched while no more
 *   than that were in flight. Halving the concurrency drains any queue we
 *   caused, so the first probe is right even when `initial` is above the
 *   upstream's capacity (up to 2x; beyond, each probe halves the error), and
 *   a later probe follows an upstream that became permanently slower (without
 *   it the limit would stay low forever). After a probe the limit returns to
 *   its value before it; a probe window with drops is also fed to the
 *   algorithm, which backs off; one without a successful sample is repeated.
 * - Between probes a faster window lowers the baseline at once (a cold or
 *   contended first probe is corrected by the next quiet window), and nothing
 *   raises it, so it cannot creep up with the queueing latency it is there to
 *   detect (the weakness of a moving average, which follows the queue).
 * A probe costs half a window's throughput per `probeEvery` windows (under
 * 0.1% with the defaults).
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

/** Windows between baseline probes when the algorithm has no setting for it (60 s of 100 ms windows). */
export const PROBE_EVERY_WINDOWS = 600;

type LimitBounds = Pick<LimitConfig, 'initial' | 'min' | 'max' | 'window' | 'hysteresis'>;

export class AdaptiveLimit implements Limit {
  current: number;
  private estimate: number;
  private readonly window: SampleWindow;
  private readonly hysteresis: Hysteresis;
  private baselineMs = NaN;
  private recentMs = NaN;
  /** Windows left until the next probe. */
  private untilProbe = 0;
  /** While probing: the limit to return to. */
  private restore = 0;
  private probing = false;

  constructor(
    private readonly cfg: LimitBounds,
    private readonly algorithm: Algorithm,
    /** Windows from one baseline probe to the next. */
    private readonly probeEvery = PROBE_EVERY_WINDOWS,
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
    if (latency && w.rttMs < this.baselineMs) this.baselineMs = w.rttMs;
    if (w.rttMs >= 0) this.recentMs = w.rttMs;

    const dropped = w.drops > 0;
    let target = this.algorithm.next(this.estimate, w, this.baselineMs);
    if (!dropped && w.maxInflight < this.current / 2) target = Math.min(target, this.estimate);
    target = Math.min(this.cfg.max, Math.max(this.cfg.min, target));
    this.estimate = target;
    this.current = this.hysteresis.next(this.current, target, dropped);

    if (latency && --this.untilProbe <= 0) this.startProbe();
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
    this.untilProbe = w.rttMs >= 0 ? this.probeEvery : 1;
    this.current = this.restore;
    this.hysteresis.reset();
    if (w.drops > 0) this.update(w);
  }
}

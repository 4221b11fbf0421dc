/**
 * Hysteresis, layer 2: the route's shed state.
 *
 *            p90 queue wait of a window > enterMs
 *   normal ───────────────────────────────────────▶ overloaded
 *          ◀───────────────────────────────────────
 *            every window since calmSince < exitMs, for >= cooldownMs
 *
 * The signal is the 90th percentile of the queue waits that ended in one
 * window (`windowMs`, the limit's window), where a request admitted without
 * queueing waited 0 ms and one that timed out or left waited until then. A
 * window in which nobody asked counts as 0 (nobody waited). Entering takes a
 * single bad window; leaving takes a calm stretch of cooldownMs, and a value
 * between exitMs and enterMs neither enters nor counts as calm, so a signal
 * hovering there cannot make the state flap.
 *
 * While overloaded the limiter refuses every lane but the first at the door
 * (503 shed_batch) and lets the first lane's queue run adaptive LIFO.
 *
 * Windows close lazily, on the next event that looks at the state, so an
 * idle route needs no timer; a run of empty windows is one calm stretch.
 */
import { LogHistogram } from '../histogram.js';

export type ShedState =
  | { readonly kind: 'normal' }
  | {
      readonly kind: 'overloaded';
      /** When the route became overloaded. */
      readonly since: number;
      /** Start of the current run of calm windows (signal < exitMs), or null. */
      readonly calmSince: number | null;
    };

export interface ShedConfig {
  readonly enterMs: number;
  readonly exitMs: number;
  readonly cooldownMs: number;
  /** Length of one signal window. */
  readonly windowMs: number;
}

const NORMAL: ShedState = { kind: 'normal' };

/** The state after a window [start, end) whose signal was `signalMs`. Pure. */
export function nextShedState(s: ShedState, signalMs: number, start: number, end: number, cfg: ShedConfig): ShedState {
  if (s.kind === 'normal') {
    return signalMs > cfg.enterMs ? { kind: 'overloaded', since: end, calmSince: null } : s;
  }
  if (signalMs >= cfg.exitMs) return s.calmSince === null ? s : { ...s, calmSince: null };
  const calmSince = s.calmSince ?? start;
  if (end - calmSince >= cfg.cooldownMs) return NORMAL;
  return s.calmSince === calmSince ? s : { ...s, calmSince };
}

/** The shed state of one route, fed with queue waits. */
export class ShedControl {
  private s: ShedState = NORMAL;
  private readonly waits = new LogHistogram();
  private windowStart: number;
  private lastSignal = 0;

  constructor(
    private cfg: ShedConfig,
    now: number,
  ) {
    this.windowStart = now;
  }

  /** A reload changed the thresholds or the window length: the state and the window in progress carry over. */
  reconfigure(cfg: ShedConfig): void {
    this.cfg = cfg;
  }

  /** A request's queue wait ended (admitted, timed out, or its client left). */
  record(waitMs: number, now: number): void {
    this.roll(now);
    this.waits.record(waitMs);
  }

  state(now: number): ShedState {
    this.roll(now);
    return this.s;
  }

  overloaded(now: number): boolean {
    this.roll(now);
    return this.s.kind === 'overloaded';
  }

  /** The last closed window's p90 queue wait (ms). */
  signalMs(now: number): number {
    this.roll(now);
    return this.lastSignal;
  }

  /**
   * The least time until the route can be normal again: the rest of the
   * cooldown when calm windows have begun, else a whole cooldown after the
   * current window. 0 when normal.
   */
  cooldownLeftMs(now: number): number {
    const s = this.state(now);
    if (s.kind === 'normal') return 0;
    if (s.calmSince === null) return this.windowStart + this.cfg.windowMs - now + this.cfg.cooldownMs;
    return Math.max(0, s.calmSince + this.cfg.cooldownMs - now);
  }

  private roll(now: number): void {
    const w = this.cfg.windowMs;
    const end = this.windowStart + w;
    if (now < end) return;
    this.lastSignal = this.waits.count > 0 ? this.waits.percentile(0.9) : 0;
    this.s = nextShedState(this.s, this.lastSignal, this.windowStart, end, this.cfg);
    this.waits.reset();
    // Whole windows that passed without a single event: one calm stretch.
    const idle = Math.floor((now - end) / w);
    if (idle > 0) {
      this.lastSignal = 0;
      this.s = nextShedState(this.s, 0, end, end + idle * w, this.cfg);
    }
    this.windowStart = end + idle * w;
  }
}

/**
 * A circuit breaker for one route's upstream: stop sending to an upstream
 * that is failing, probe it gently, and come back only once it has proven
 * healthy again.
 *
 * The algorithm
 *
 *   closed ──trip──▶ open ──openMs elapsed──▶ half_open ──N successes in a row──▶ closed
 *                     ▲                           │
 *                     └────── any failure ────────┘   (openMs doubles, up to maxOpenMs)
 *
 * - closed: everything passes. Results feed two detectors; either trips:
 *   `consecutiveFailures` failures in a row, or a failure share of at least
 *   `failureRatio` among at least `minRequests` results in the last
 *   `windowMs` (a ring of 10 buckets, so the window slides in tenths).
 * - open: everything is refused for the open period; a timer moves the
 *   breaker to half_open when it ends (so the state and its metric are right
 *   even without traffic).
 * - half_open: a request becomes a probe when no probe is in flight (so even
 *   a trickle of traffic probes, one at a time) or, beyond that, with
 *   probability `halfOpenRatio`; the rest are refused. `closeAfterSuccesses`
 *   probe successes in a row close it; one probe failure reopens it for twice
 *   the last open period (capped at maxOpenMs).
 *
 * Against flapping: only probes count in half_open, so a request admitted
 * while closed that happens to succeed later cannot close the breaker
 * ("closed by one lucky request"). Every admission carries the generation
 * (one per state entered) it was admitted in; a result from an older
 * generation is ignored. And an upstream that trips again within maxOpenMs
 * of closing keeps its backoff: it opens for twice the last period instead of
 * starting over at openMs.
 *
 * Results: 'success' (the upstream answered), 'failure' (it did not: see the
 * proxy for the exact list) and 'ignore' (nothing learned: the client left,
 * the request was refused before dispatch). Every admission must be recorded
 * exactly once, 'ignore' included, so probes in flight are counted exactly.
 */
import type { CircuitBreakerConfig } from '../config/types.js';
import type { Clock, Random, Timer } from './clock.js';

export type BreakerStateName = 'closed' | 'open' | 'half_open';
export type BreakerResult = 'success' | 'failure' | 'ignore';

/** Returned by `admit()` for a refused request. Admissions are generations >= 0. */
export const REFUSED = -1;

const BUCKETS = 10;

/** Failures and totals over a sliding window of BUCKETS buckets. */
class FailureWindow {
  private readonly totals = new Array<number>(BUCKETS).fill(0);
  private readonly failures = new Array<number>(BUCKETS).fill(0);
  private readonly bucketMs: number;
  private epoch: number;
  total = 0;
  failed = 0;

  constructor(windowMs: number, now: number) {
    this.bucketMs = Math.max(1, windowMs / BUCKETS);
    this.epoch = Math.floor(now / this.bucketMs);
  }

  add(now: number, failed: boolean): void {
    const e = Math.floor(now / this.bucketMs);
    if (e > this.epoch) {
      // Clear the buckets that slid out of the window since the last result.
      for (let k = 1, n = Math.min(BUCKETS, e - this.epoch); k <= n; k++) {
        const i = (this.epoch + k) % BUCKETS;
        this.total -= this.totals[i] as number;
        this.failed -= this.failures[i] as number;
        this.totals[i] = 0;
        this.failures[i] = 0;
      }
      this.epoch = e;
    }
    const i = this.epoch % BUCKETS;
    (this.totals[i] as number)++;
    this.total++;
    if (failed) {
      (this.failures[i] as number)++;
      this.failed++;
    }
  }
}

type State =
  | { readonly kind: 'closed'; readonly window: FailureWindow; failuresInRow: number }
  | { readonly kind: 'open'; readonly until: number; readonly openMs: number; readonly timer: Timer }
  | { readonly kind: 'half_open'; readonly openMs: number; probes: number; successes: number };

export interface BreakerSnapshot {
  readonly state: BreakerStateName;
  /** Times the breaker has opened since it was created. */
  readonly opens: number;
  /** The current (open) or last open period, ms; 0 before the first opening. */
  readonly openMs: number;
  /** Time until an open breaker starts probing; 0 unless open. */
  readonly openRemainingMs: number;
  /** Closed: failures in a row, and results / failures in the ratio window. */
  readonly failuresInRow: number;
  readonly windowRequests: number;
  readonly windowFailures: number;
  /** Half-open: probes in flight and successes in a row. */
  readonly probesInFlight: number;
  readonly probeSuccesses: number;
}

export interface BreakerOptions {
  readonly config: CircuitBreakerConfig;
  readonly clock: Clock;
  readonly random: Random;
  /** Called on every state change, after it happened. */
  readonly onChange?: (state: BreakerStateName) => void;
}

export class Breaker {
  private readonly cfg: CircuitBreakerConfig;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly onChange: ((state: BreakerStateName) => void) | undefined;
  private s: State;
  private gen = 0;
  private opens = 0;
  private lastOpenMs = 0;
  private closedAt = -Infinity;

  constructor(opts: BreakerOptions) {
    this.cfg = opts.config;
    this.clock = opts.clock;
    this.random = opts.random;
    this.onChange = opts.onChange;
    this.s = this.closed();
  }

  get state(): BreakerStateName {
    return this.s.kind;
  }

  /**
   * May a request go to the upstream now? Returns its admission (a
   * generation >= 0) to hand back to `record`, or REFUSED.
   */
  admit(): number {
    const s = this.s;
    if (s.kind === 'closed') return this.gen;
    if (s.kind === 'open') return REFUSED;
    if (s.probes === 0 || this.random() < this.cfg.halfOpenRatio) {
      s.probes++;
      return this.gen;
    }
    return REFUSED;
  }

  /** The result of an admitted request. Call exactly once per admission. */
  record(admission: number, result: BreakerResult): void {
    // A result from an earlier state says nothing about this one.
    if (admission !== this.gen) return;
    const s = this.s;
    if (s.kind === 'closed') {
      if (result === 'ignore') return;
      const failed = result === 'failure';
      s.window.add(this.clock.now(), failed);
      if (!failed) {
        s.failuresInRow = 0;
        return;
      }
      s.failuresInRow++;
      const w = s.window;
      if (
        s.failuresInRow >= this.cfg.consecutiveFailures ||
        (w.total >= this.cfg.minRequests && w.failed >= this.cfg.failureRatio * w.total)
      ) {
        this.open(this.clock.now() - this.closedAt < this.cfg.maxOpenMs ? this.lastOpenMs * 2 : this.cfg.openMs);
      }
      return;
    }
    if (s.kind !== 'half_open') return;
    s.probes--;
    if (result === 'failure') this.open(s.openMs * 2);
    else if (result === 'success' && ++s.successes >= this.cfg.closeAfterSuccesses) {
      this.closedAt = this.clock.now();
      this.enter(this.closed());
    }
  }

  /** Time until an open breaker starts probing (the basis of Retry-After); 0 unless open. */
  openRemainingMs(): number {
    return this.s.kind === 'open' ? Math.max(0, this.s.until - this.clock.now()) : 0;
  }

  snapshot(): BreakerSnapshot {
    const s = this.s;
    return {
      state: s.kind,
      opens: this.opens,
      openMs: s.kind === 'closed' ? this.lastOpenMs : s.openMs,
      openRemainingMs: this.openRemainingMs(),
      failuresInRow: s.kind === 'closed' ? s.failuresInRow : 0,
      windowRequests: s.kind === 'closed' ? s.window.total : 0,
      windowFailures: s.kind === 'closed' ? s.window.failed : 0,
      probesInFlight: s.kind === 'half_open' ? s.probes : 0,
      probeSuccesses: s.kind === 'half_open' ? s.successes : 0,
    };
  }

  private closed(): State {
    return { kind: 'closed', window: new FailureWindow(this.cfg.windowMs, this.clock.now()), failuresInRow: 0 };
  }

  private open(requestedMs: number): void {
    const openMs = Math.min(this.cfg.maxOpenMs, Math.max(this.cfg.openMs, requestedMs));
    this.opens++;
    this.lastOpenMs = openMs;
    const timer = this.clock.setTimer(() => {
      if (this.s.kind === 'open' && this.s.timer === timer) this.enter({ kind: 'half_open', openMs, probes: 0, successes: 0 });
    }, openMs);
    this.enter({ kind: 'open', until: this.clock.now() + openMs, openMs, timer });
  }

  private enter(next: State): void {
    this.s = next;
    this.gen++;
    this.onChange?.(next.kind);
  }
}

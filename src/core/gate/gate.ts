/**
 * RouteGate: the one admission decision of a route (../shared/DESIGN.md §3).
 * It owns the route's limiter, circuit breaker, the client rate buckets it
 * shares with the other routes, the shadow policy and the deadline check,
 * and composes them in a fixed order; HTTP is not its business.
 *
 *   enter(lane, clientKey, budgetMs) → Hold | Queued | Refusal
 *
 *   1. breaker      open (or half-open with its probes taken) → circuit_open
 *   2. deadline     a budget below 1 ms is already spent      → deadline
 *   3. client rate  no token left for this client             → client_rate
 *                   (local buckets, or the quota shared in Redis: see
 *                   ../rate/rate-store.ts; a Redis check that must wait
 *                   makes the request a Queued whose fate comes within
 *                   the store's timeoutMs, then the limiter decides)
 *   4. limiter      permit → Hold; a place in a lane queue → Queued;
 *                   queue_full, client_share, shed_batch, deadline (the
 *                   queue ahead cannot meet the budget)
 *
 * The first check that refuses decides; later checks do not run (a request
 * refused by the breaker takes no rate token). Shadow routes run the same
 * checks but never refuse or queue: the first would-be refusal rides along
 * on a Hold (`wouldRefuse`) for the caller to report, and the request
 * starts now (limiter.acquireShadow).
 *
 * Accounting (the invariants the proxy relies on)
 * - `use.active` counts what may still send through the route's upstream
 *   pool: +1 for every Hold or Queued handed out, -1 exactly once when it
 *   ends (Hold.settle, Queued.cancel, or the queue's refusal). A drain or a
 *   retired pool waits for it to reach 0.
 * - Every breaker admission is recorded exactly once: 'ignore' when the
 *   request is refused after the breaker let it through, or leaves the
 *   queue; the caller's result when its Hold settles. So half-open probes
 *   in flight are counted exactly.
 * - Hold.settle does all three (permit, breaker, pool count) in one
 *   idempotent step: client-abort detection is not perfectly reliable, and
 *   a second call must change nothing.
 * After any load ends, every route's in-flight and `use.active` are 0.
 */
import { REFUSED, type Breaker, type BreakerResult } from '../breaker.js';
import type { Clock, Random } from '../clock.js';
import type { Limiter, Outcome, Permit, Ticket } from '../limiter/limiter.js';
import { refusal, type Refusal } from '../limiter/refusal.js';
import type { PendingRate, RateStore, RateVerdict } from '../rate/rate-store.js';
import { openCircuitRetryAfter, retryAfterSeconds } from '../retry-after.js';
import type { RetryAfterConfig } from '../../config/types.js';

/** Requests (held or queued) that may still use a pool; shared by every gate whose route uses that pool. */
export interface InUse {
  active: number;
}

/** An admitted request: it may go upstream now. Settle it exactly once when its exchange ends. */
export interface Hold {
  readonly kind: 'hold';
  readonly lane: number;
  /** Time spent queued before admission (0 when admitted at once). */
  readonly queuedMs: number;
  /** The caller's deadline as clock ms (Infinity: none); what is left of it goes upstream. */
  readonly deadline: number;
  /** Shadow mode: what enforce mode would have answered instead; null when it would have admitted. */
  readonly wouldRefuse: Refusal | null;
  /** The client's rate after this request (for RateLimit headers); null without clients.rate. */
  readonly rate: RateVerdict | null;
  /**
   * Ends the hold: the permit settles (success feeds an RTT sample, dropped
   * backs the limit off, ignore feeds nothing), the breaker learns `result`
   * and the pool count drops. Idempotent: returns false and changes nothing
   * after the first call.
   */
  settle(outcome: Outcome, result: BreakerResult, rttMs?: number): boolean;
}

/** What a queued request learns later: a Hold, or a Refusal (queue_timeout, deadline, draining) after `queuedMs`. */
export type Later = (result: Hold | Refusal, queuedMs: number) => void;

/** A request waiting in a lane queue. */
export interface Queued {
  readonly kind: 'queued';
  /** Names the receiver of the request's fate; call it right after enter() returned. */
  wait(later: Later): void;
  /** The client left: it leaves the queue and is never admitted. Returns the ms it waited, or -1 when it was no longer queued. */
  cancel(): number;
}

export interface GateParts {
  readonly limiter: Limiter;
  /** null when the route's breaker is disabled. */
  readonly breaker: Breaker | null;
  /** The per-client rate (shared by every route of a config: local buckets or the shared store), or null without clients.rate. */
  readonly clientRate: RateStore | null;
  /** mode: shadow — decide and report, never refuse or queue. */
  readonly shadow: boolean;
  readonly use: InUse;
  readonly retryAfter: RetryAfterConfig;
  readonly clock: Clock;
  readonly random: Random;
}

class GateHold implements Hold {
  readonly kind = 'hold' as const;
  private done = false;
  constructor(
    private readonly parts: GateParts,
    private readonly permit: Permit,
    private readonly admission: number,
    readonly deadline: number,
    readonly wouldRefuse: Refusal | null,
    readonly rate: RateVerdict | null,
  ) {}
  get lane(): number {
    return this.permit.lane;
  }
  get queuedMs(): number {
    return this.permit.queuedMs;
  }
  settle(outcome: Outcome, result: BreakerResult, rttMs?: number): boolean {
    if (this.done) return false;
    this.done = true;
    if (this.admission !== REFUSED) (this.parts.breaker as Breaker).record(this.admission, result);
    this.parts.use.active--;
    // Last: settling may start queued work at once (their waiters run here), and this hold is complete by then.
    this.permit.settle(outcome, rttMs);
    return true;
  }
}

/** A queued request's fate, held until wait() names its receiver if it comes first. */
abstract class Waiting {
  readonly kind = 'queued' as const;
  private later: Later | null = null;
  private early: { result: Hold | Refusal; queuedMs: number } | null = null;

  wait(later: Later): void {
    const e = this.early;
    if (e === null) this.later = later;
    else {
      this.early = null;
      later(e.result, e.queuedMs);
    }
  }

  protected deliver(result: Hold | Refusal, queuedMs: number): void {
    if (this.later !== null) this.later(result, queuedMs);
    else this.early = { result, queuedMs };
  }
}

class GateQueued extends Waiting implements Queued {
  ticket: Ticket | null = null;
  constructor(
    private readonly parts: GateParts,
    private readonly admission: number,
    private readonly deadline: number,
    private readonly enqueuedAt: number,
    private readonly rate: RateVerdict | null,
  ) {
    super();
  }

  cancel(): number {
    const t = this.ticket;
    if (t === null) return -1;
    this.ticket = null;
    t.cancel();
    this.release();
    return this.parts.clock.now() - this.enqueuedAt;
  }

  /** The limiter's waiter: a permit or a refusal, once. */
  resolve(r: Permit | Refusal): void {
    if (this.ticket === null) return;
    this.ticket = null;
    let result: Hold | Refusal;
    if (r.kind === 'permit') result = new GateHold(this.parts, r, this.admission, this.deadline, null, this.rate);
    else {
      this.release();
      result = r;
    }
    this.deliver(result, this.parts.clock.now() - this.enqueuedAt);
  }

  private release(): void {
    if (this.admission !== REFUSED) (this.parts.breaker as Breaker).record(this.admission, 'ignore');
    this.parts.use.active--;
  }
}

/**
 * A request waiting for the shared rate store's verdict (at most its
 * timeoutMs). It counts in `use.active` like a queued one; when the verdict
 * comes, that count passes to what the gate decides next (a Hold, a place
 * in a lane queue, or a refusal), and `queuedMs` covers both waits.
 */
class RateWait extends Waiting implements Queued {
  /** The lane queue it moved on to, once the verdict allowed it. */
  private inner: Queued | null = null;
  private state: 'waiting' | 'decided' | 'cancelled' = 'waiting';

  constructor(
    private readonly gate: RouteGate,
    pending: PendingRate,
    private readonly lane: number,
    private readonly clientKey: string,
    private readonly admission: number,
    private readonly deadline: number,
    private readonly startedAt: number,
  ) {
    super();
    void pending.verdict.then((v) => this.verdict(v));
  }

  cancel(): number {
    if (this.state === 'cancelled') return -1;
    if (this.inner !== null) {
      const waited = this.inner.cancel();
      return waited < 0 ? -1 : this.gate.clock.now() - this.startedAt;
    }
    if (this.state === 'decided') return -1;
    this.state = 'cancelled';
    this.gate.release(this.admission);
    return this.gate.clock.now() - this.startedAt;
  }

  private verdict(v: RateVerdict): void {
    if (this.state !== 'waiting') return;
    this.state = 'decided';
    const now = this.gate.clock.now();
    this.gate.use.active--;
    const d = this.gate.decide(this.lane, this.clientKey, this.admission, this.deadline, this.gate.rateRefusal(v), v, now);
    if (d.kind !== 'queued') {
      this.deliver(d, now - this.startedAt);
      return;
    }
    this.inner = d;
    const rateMs = now - this.startedAt;
    d.wait((result, queuedMs) => this.deliver(result, rateMs + queuedMs));
  }
}

export class RouteGate {
  constructor(private readonly parts: GateParts) {}

  get shadow(): boolean {
    return this.parts.shadow;
  }

  /**
   * The admission decision for one request of `lane` from `clientKey` with
   * `budgetMs` left of its caller's deadline (Infinity: none). Synchronous:
   * nothing can run between a check and the count it leads to.
   */
  enter(lane: number, clientKey: string, budgetMs: number): Hold | Queued | Refusal {
    const p = this.parts;
    const now = p.clock.now();
    let admission = REFUSED;
    // A refusal decided before the limiter; shadow routes only report it.
    let early: Refusal | null = null;
    if (p.breaker !== null) {
      admission = p.breaker.admit();
      if (admission === REFUSED) early = refusal('circuit_open', openCircuitRetryAfter(p.breaker.openRemainingMs(), p.retryAfter, p.random));
    }
    // Nothing can be served in less than a millisecond: the budget is already spent.
    const spent = budgetMs < 1;
    if (early === null && spent) early = refusal('deadline', retryAfterSeconds(0, p.retryAfter, p.random));
    const deadline = spent ? Infinity : now + budgetMs;
    let rate: RateVerdict | null = null;
    if (early === null && p.clientRate !== null) {
      const v = p.clientRate.take(clientKey);
      if (v.kind === 'pending') {
        p.use.active++;
        return new RateWait(this, v, lane, clientKey, admission, deadline, now);
      }
      rate = v;
      early = this.rateRefusal(v);
    }
    return this.decide(lane, clientKey, admission, deadline, early, rate, now);
  }

  /** @internal Steps after the client rate: shadow's report, or the limiter. Takes over the breaker admission. */
  decide(lane: number, clientKey: string, admission: number, deadline: number, early: Refusal | null, rate: RateVerdict | null, now: number): Hold | Queued | Refusal {
    const p = this.parts;
    if (p.shadow) {
      const permit = p.limiter.acquireShadow(lane, clientKey, deadline);
      p.use.active++;
      return new GateHold(p, permit, admission, deadline, early ?? permit.wouldRefuse, rate);
    }
    if (early !== null) return this.refused(admission, early);
    let queued: GateQueued | null = null;
    const r = p.limiter.acquire(lane, clientKey, (later) => (queued as GateQueued).resolve(later), deadline);
    if (r.kind === 'refused') return this.refused(admission, r);
    p.use.active++;
    if (r.kind === 'permit') return new GateHold(p, r, admission, deadline, null, rate);
    queued = new GateQueued(p, admission, deadline, now, rate);
    queued.ticket = r;
    return queued;
  }

  /** @internal The 429 for a client over its rate, or null. */
  rateRefusal(v: RateVerdict): Refusal | null {
    return v.kind === 'limited' ? refusal('client_rate', retryAfterSeconds(v.waitSeconds, this.parts.retryAfter, this.parts.random)) : null;
  }

  /** @internal A request that waited for the shared rate store and was then refused or left. */
  release(admission: number): void {
    if (admission !== REFUSED) (this.parts.breaker as Breaker).record(admission, 'ignore');
    this.parts.use.active--;
  }

  /** @internal */
  get clock(): Clock {
    return this.parts.clock;
  }

  /** @internal */
  get use(): InUse {
    return this.parts.use;
  }

  private refused(admission: number, r: Refusal): Refusal {
    if (admission !== REFUSED) (this.parts.breaker as Breaker).record(admission, 'ignore');
    return r;
  }
}

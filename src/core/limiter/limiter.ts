/**
 * The gate of one route: counts permits against the route's concurrency
 * limit, keeps one bounded wait queue per lane, and refuses precisely when
 * full (../shared/DESIGN.md §3-4, §6).
 *
 * Invariants
 * - Capacity is checked and counted in the same synchronous step: there is
 *   no await between "is there room" and "take it".
 * - Every permit settles exactly once (settle is idempotent); every queued
 *   ticket leaves the queue exactly once (start, timeout, or cancel).
 * - After every change that may free room (settle, cancel, limit growth) the
 *   queues are drained: queued work never waits while a slot it may use is
 *   free, and nothing starts while the route is at or over its limit (a
 *   shrinking limit lets in-flight work finish first).
 *
 * Lane scheduling, when a slot frees
 * 1. a lane below its minShare slots with waiting work goes first
 *    (no starvation), in priority order;
 * 2. otherwise the highest-priority lane with waiting work that is below its
 *    maxShare slots.
 * Shares become slots as max(1, ceil(share * limit)) (Netflix's partition
 * rule), so a small limit never leaves a lane with zero slots; minShare 0
 * reserves nothing.
 *
 * Client share (fairness under contention): when a request would have to
 * wait, a client already holding (in flight + queued) at least
 * max(1, ceil(clients.maxShare * limit)) is refused with 429 client_share,
 * but only while some other client also holds or waits for slots: a lone
 * client is queued or shed with 503, never told 429 for its share.
 *
 * Inside a lane (queue.fair, ./fair-queue.ts): waiting requests are served
 * round-robin across client keys (deficit round robin, clients.weights),
 * or first come first served (./wait-queue.ts). Either way the lane's
 * maxLength and maxWaitMs bound the whole lane, and the lane scheduling
 * above decides which lane a freed slot goes to; the lane's queue only
 * decides which of its waiters.
 *
 * Shed state (./shed-state.ts, when `overload` is given): every queue wait
 * that ends (0 ms for an immediate start) feeds the route's state. While it
 * is `overloaded`, a new request of any lane but the first that cannot start
 * at once is refused at the door with 503 shed_batch instead of queued
 * (Retry-After never below the cooldown still to run); one that finds a free
 * slot within its lane's share still starts, so the upstream is not left idle
 * while only the first lane is served. Already queued ones keep their place,
 * and the first lane is served newest first once a standing queue has formed
 * (./standing-queue.ts): in a fair lane, newest first within the client
 * whose turn it is.
 *
 * The limit learns from every settled permit except `ignore`; a change of
 * `limit.current` is applied at once: growth starts queued work, a shrink
 * lets in-flight work finish and starts nothing until under the new limit.
 *
 * Shadow mode (acquireShadow): the same decision is computed, but nobody
 * waits and nobody is refused. A request that finds no room starts anyway as
 * an over-limit permit: it counts in in-flight like any other (the limit
 * learns from the real concurrency, later decisions see it) and settles
 * exactly once like any other. The queue enforce mode would have built is
 * modelled by those over-limit requests: one that finds its lane's
 * over-limit count at queue.maxLength would have been refused queue_full.
 *
 * Reload (reconfigure): lanes are matched by name, so queued and in-flight
 * work keeps its place and its accounting; a lane that disappears keeps
 * serving what it holds, after every current lane, until it is empty.
 */
import type { LaneConfig, RetryAfterConfig } from '../../config/types.js';
import type { Clock, Random, Timer } from '../clock.js';
import type { Limit, RttEstimates, Sample } from '../limit/limit.js';
import { RateMeter, retryAfterSeconds, shedRetryAfter } from '../retry-after.js';
import { refusal, type Refusal, type RefusalReason } from './refusal.js';
import { ShedControl, type ShedConfig } from './shed-state.js';
import { ClientWeights, FairQueue } from './fair-queue.js';
import { StandingQueue } from './standing-queue.js';
import { WaitQueue, type FairNode, type LaneQueue, type QueueNode } from './wait-queue.js';

export type Outcome = 'success' | 'dropped' | 'ignore';

export interface Permit {
  readonly kind: 'permit';
  readonly lane: number;
  /** Time spent queued before the permit was granted (0 when admitted at once). */
  readonly queuedMs: number;
  /**
   * Ends the request's hold on the route. success feeds an RTT sample;
   * dropped tells the limit to back off; ignore feeds nothing. Idempotent:
   * only the first call counts.
   */
  settle(outcome: Outcome, rttMs?: number): void;
}

/** A request waiting in a lane queue. `cancel()` when its client leaves. */
export interface Ticket {
  readonly kind: 'queued';
  cancel(): void;
}

/** Receives the queued request's fate: a permit, or a refusal (timeout, deadline, draining). */
export type Waiter = (result: Permit | Refusal) => void;

/** A shadow-mode permit: the request starts now whatever the verdict. */
export interface ShadowPermit extends Permit {
  /** What enforce mode would have answered instead of a permit (or of a place in the queue), or null. */
  readonly wouldRefuse: Refusal | null;
}

export interface LimiterOptions extends LimiterPolicy {
  readonly limit: Limit;
  readonly clock: Clock;
  readonly random: Random;
}

/** What a config reload may change on a running limiter (see reconfigure). */
export interface LimiterPolicy {
  readonly lanes: readonly LaneConfig[];
  /** clients.maxShare */
  readonly clientMaxShare: number;
  /**
   * Slots per client, fixed (one worker's exact share of a fixed limit's
   * client slots, core/split.ts); absent: max(1, ceil(clientMaxShare x limit)).
   */
  readonly clientSlots?: number;
  /** clients.weights: DRR weights in fair lanes (unlisted clients weigh 1). */
  readonly clientWeights?: Readonly<Record<string, number>>;
  readonly retryAfter: RetryAfterConfig;
  /** The route's shed state; without it the route is never overloaded. */
  readonly overload?: ShedConfig;
}

export interface LaneSnapshot {
  readonly name: string;
  readonly inflight: number;
  readonly queued: number;
  readonly oldestQueuedMs: number;
  readonly maxSlots: number;
  readonly minSlots: number;
}

export interface LimiterSnapshot {
  readonly limit: number;
  /** The route's shed state. */
  readonly state: 'normal' | 'overloaded';
  /** The p90 queue wait of the last closed signal window (ms). */
  readonly queueWaitP90Ms: number;
  /** The limit's RTT estimates (null when it does not measure them). */
  readonly rtt: RttEstimates;
  readonly inflight: number;
  readonly queued: number;
  readonly clients: number;
  readonly completionsPerSecond: number;
  readonly lanes: readonly LaneSnapshot[];
}

type EntryQueue = LaneQueue<Entry> & (WaitQueue<Entry> | FairQueue<Entry>);

interface Lane {
  cfg: LaneConfig;
  queue: EntryQueue;
  inflight: number;
  /** Of `inflight`: shadow-mode requests that started with no room (see acquireShadow). */
  over: number;
  maxSlots: number;
  minSlots: number;
}

function newQueue(cfg: LaneConfig, weights: ClientWeights): EntryQueue {
  return cfg.queue.fair ? new FairQueue<Entry>(weights) : new WaitQueue<Entry>();
}

function newLane(cfg: LaneConfig, weights: ClientWeights): Lane {
  return { cfg, queue: newQueue(cfg, weights), inflight: 0, over: 0, maxSlots: 1, minSlots: 0 };
}

/**
 * A reload changed the lane's kind of queue (queue.fair) or the weights:
 * its waiters move to the new queue in arrival order, keeping their timers
 * and their deadlines. Weights alone apply to flows formed from now on.
 */
function requeue(l: Lane, weights: ClientWeights): void {
  const q = l.queue;
  if (q instanceof FairQueue && l.cfg.queue.fair) {
    q.weights = weights;
    return;
  }
  if (q instanceof FairQueue === l.cfg.queue.fair) return;
  const next = newQueue(l.cfg, weights);
  for (let e = l.queue.oldest(); e !== null; e = l.queue.oldest()) {
    l.queue.remove(e);
    next.push(e);
  }
  l.queue = next;
}

// Entries and permits point at their Lane object, not at an index: a reload
// may reorder or drop lanes while they are queued or in flight.
class Entry implements FairNode, Ticket {
  readonly kind = 'queued' as const;
  prev: QueueNode | null = null;
  next: QueueNode | null = null;
  linked = false;
  peerPrev: FairNode | null = null;
  peerNext: FairNode | null = null;
  flow: object | null = null;
  timer: Timer | null = null;
  constructor(
    readonly limiter: Limiter,
    readonly lane: Lane,
    readonly clientKey: string,
    readonly enqueuedAt: number,
    readonly waiter: Waiter,
  ) {}
  cancel(): void {
    this.limiter.cancel(this);
  }
}

class RoutePermit implements ShadowPermit {
  readonly kind = 'permit' as const;
  settled = false;
  /** Shadow mode: started with no room (counted in its lane's `over`). */
  over = false;
  wouldRefuse: Refusal | null = null;
  constructor(
    readonly limiter: Limiter,
    readonly lane: number,
    readonly slot: Lane,
    readonly clientKey: string,
    readonly startedAt: number,
    readonly inflightAtStart: number,
    readonly queuedMs: number,
  ) {}
  settle(outcome: Outcome, rttMs?: number): void {
    if (this.settled) return;
    this.settled = true;
    this.limiter.release(this, outcome, rttMs);
  }
}

export class Limiter {
  /** The configured lanes in priority order, then lanes a reload removed that still hold work. */
  private lanes: Lane[];
  /** How many of `lanes` are configured; the rest are retired. */
  private active: number;
  private readonly clock: Clock;
  private opts: LimiterOptions;
  private readonly completions: RateMeter;
  /** Per client: permits held + tickets queued. Entries are deleted at zero (no leak). */
  private readonly clients = new Map<string, number>();
  private inflight = 0;
  /** Of `inflight`: shadow-mode requests that started with no room. */
  private over = 0;
  private queued = 0;
  private limitValue: number;
  private clientSlots = 1;
  private inDrain = false;
  private drainAgain = false;
  private shed: ShedControl | null;
  /** Adaptive LIFO applies to the first lane only. */
  private readonly firstLaneStanding = new StandingQueue();
  private weights: ClientWeights;

  constructor(opts: LimiterOptions) {
    this.opts = opts;
    this.clock = opts.clock;
    this.completions = new RateMeter(opts.clock.now());
    this.shed = opts.overload ? new ShedControl(opts.overload, opts.clock.now()) : null;
    this.weights = new ClientWeights(opts.clientWeights);
    this.lanes = opts.lanes.map((cfg) => newLane(cfg, this.weights));
    this.active = this.lanes.length;
    this.limitValue = opts.limit.current;
    this.applyLimit();
  }

  get limit(): number {
    return this.limitValue;
  }

  /**
   * Asks for a slot in `lane` for `clientKey`. Returns a Permit (start now),
   * a Ticket (queued: `waiter` is called later with a Permit or a Refusal),
   * or a Refusal (nothing was counted). `deadline` (clock ms) caps how long
   * the request may wait.
   */
  acquire(lane: number, clientKey: string, waiter: Waiter, deadline = Infinity): Permit | Ticket | Refusal {
    const l = this.configured(lane);
    const now = this.clock.now();
    const shed = this.shed;
    if (l.queue.length === 0 && this.canStart(l)) {
      shed?.record(0, now);
      this.hold(clientKey);
      return this.start(lane, l, clientKey, now, 0);
    }
    // Overloaded: lower lanes may still take a free slot (the upstream stays
    // busy), but never wait: waiting is reserved for the first lane.
    if (lane > 0 && shed !== null && shed.overloaded(now)) return this.refuseShed(l, now);
    const no = this.cannotWait(l, clientKey, l.queue.length, now, deadline);
    if (no !== null) return this.refuse(no, l);
    // Refuse early rather than let the caller's budget run out in the queue.
    if (deadline < Infinity && this.expectedWaitMs(lane, clientKey, now) > deadline - now) return this.refuse('deadline', l);

    const waitUntil = Math.min(now + l.cfg.queue.maxWaitMs, deadline);
    const entry = new Entry(this, l, clientKey, now, waiter);
    if (lane === 0 && l.queue.length === 0) this.firstLaneStanding.formed(now);
    l.queue.push(entry);
    this.queued++;
    this.hold(clientKey);
    const reason: RefusalReason = deadline < now + l.cfg.queue.maxWaitMs ? 'deadline' : 'queue_timeout';
    entry.timer = this.clock.setTimer(() => this.expire(entry, reason), waitUntil - now);
    return entry;
  }

  /**
   * Shadow mode: computes what `acquire` would decide, but always returns a
   * permit, so the request starts now. `wouldRefuse` carries the refusal
   * enforce mode would have given. A request that would have had to wait
   * is not a refusal unless its wait, estimated as the work ahead of it
   * (every over-limit or queued request of the route) divided by the recent
   * completion rate, runs past maxWaitMs or its deadline; that estimated
   * wait also feeds the shed state, so an overloaded shadow route reports
   * the shed_batch refusals enforce mode would give.
   */
  acquireShadow(lane: number, clientKey: string, deadline = Infinity): ShadowPermit {
    const l = this.configured(lane);
    const now = this.clock.now();
    const shed = this.shed;
    let wouldRefuse: Refusal | null = null;
    const room = l.queue.length === 0 && this.canStart(l);
    if (room) {
      shed?.record(0, now);
    } else if (lane > 0 && shed !== null && shed.overloaded(now)) {
      wouldRefuse = this.refuseShed(l, now);
    } else {
      const no = this.cannotWait(l, clientKey, l.over + l.queue.length, now, deadline);
      if (no !== null) {
        wouldRefuse = this.refuse(no, l);
      } else {
        const waitMs = this.shadowWaitMs(now);
        if (waitMs !== null) {
          // As in acquire: the wait is capped by maxWaitMs or, when sooner, the deadline.
          const budget = Math.min(l.cfg.queue.maxWaitMs, deadline - now);
          if (waitMs > budget) {
            wouldRefuse = this.refuse(deadline < now + l.cfg.queue.maxWaitMs ? 'deadline' : 'queue_timeout', l);
          }
          // The wait enforce mode would have seen feeds the shed state, as a real one does.
          shed?.record(Math.min(waitMs, budget), now);
        }
      }
    }
    this.hold(clientKey);
    const p = this.start(lane, l, clientKey, now, 0);
    p.wouldRefuse = wouldRefuse;
    if (!room) {
      p.over = true;
      l.over++;
      this.over++;
    }
    return p;
  }

  /**
   * Applies a reloaded policy in place: what the limiter counts (in flight,
   * queued, per client, completion rate) is kept, so the route never admits
   * more than its limit across a reload. Lanes are matched by name; a lane
   * that is gone stops taking requests and serves what it holds after every
   * configured lane. Queued requests keep the deadline they were given.
   * A new `limit` (the route's limit config changed) replaces the algorithm;
   * otherwise the current one and its learned value stay.
   */
  reconfigure(policy: LimiterPolicy, limit?: Limit): void {
    if (!sameWeights(policy.clientWeights, this.opts.clientWeights)) this.weights = new ClientWeights(policy.clientWeights);
    const byName = new Map(this.lanes.map((l) => [l.cfg.name, l]));
    const lanes = policy.lanes.map((cfg) => {
      const kept = byName.get(cfg.name);
      byName.delete(cfg.name);
      if (kept === undefined) return newLane(cfg, this.weights);
      kept.cfg = cfg;
      requeue(kept, this.weights);
      return kept;
    });
    this.active = lanes.length;
    this.lanes = lanes.concat([...byName.values()].filter(busy));
    this.opts = { ...this.opts, ...policy, limit: limit ?? this.opts.limit };
    // The shed state (normal or overloaded, the window in progress) carries over; new thresholds apply from now.
    if (policy.overload === undefined) this.shed = null;
    else if (this.shed === null) this.shed = new ShedControl(policy.overload, this.clock.now());
    else this.shed.reconfigure(policy.overload);
    this.limitValue = this.opts.limit.current;
    this.applyLimit();
  }

  /** Refuses every queued request with `reason` (a drain that ran out of time). Returns how many. */
  refuseQueued(reason: RefusalReason): number {
    let n = 0;
    for (const l of this.lanes) {
      for (let e = l.queue.oldest(); e !== null; e = l.queue.oldest()) {
        this.dequeue(e);
        this.unhold(e.clientKey);
        n++;
        e.waiter(this.refuse(reason, l));
      }
    }
    this.prune();
    return n;
  }

  /** A public, read-only view for /admin/state, metrics and tests. */
  snapshot(): LimiterSnapshot {
    const now = this.clock.now();
    const rtt = this.opts.limit.rtt;
    return {
      limit: this.limitValue,
      state: this.shed?.state(now).kind ?? 'normal',
      queueWaitP90Ms: this.shed?.signalMs(now) ?? 0,
      rtt: { recentMs: rtt?.recentMs ?? null, baselineMs: rtt?.baselineMs ?? null },
      inflight: this.inflight,
      queued: this.queued,
      clients: this.clients.size,
      completionsPerSecond: this.completions.perSecond(now),
      lanes: this.lanes.slice(0, this.active).map((l) => {
        const oldest = l.queue.oldest();
        return {
          name: l.cfg.name,
          inflight: l.inflight,
          queued: l.queue.length,
          oldestQueuedMs: oldest ? now - oldest.enqueuedAt : 0,
          maxSlots: l.maxSlots,
          minSlots: l.minSlots,
        };
      }),
    };
  }

  /** @internal called by RoutePermit.settle (once). */
  release(p: RoutePermit, outcome: Outcome, rttMs?: number): void {
    this.inflight--;
    const l = p.slot;
    l.inflight--;
    if (p.over) {
      l.over--;
      this.over--;
    }
    this.unhold(p.clientKey);
    const now = this.clock.now();
    this.completions.mark(now);
    if (outcome !== 'ignore') {
      const sample: Sample = {
        startedAt: p.startedAt,
        rttMs: rttMs ?? now - p.startedAt,
        inflight: p.inflightAtStart,
        dropped: outcome === 'dropped',
      };
      this.opts.limit.onSample(sample);
      if (this.opts.limit.current !== this.limitValue) {
        this.limitValue = this.opts.limit.current;
        this.applyLimit();
      }
    }
    this.drain();
    if (this.lanes.length > this.active) this.prune();
  }

  /** @internal called by Entry.cancel: the client left while queued. */
  cancel(e: Entry): void {
    if (!e.linked) return;
    const now = this.clock.now();
    this.shed?.record(now - e.enqueuedAt, now);
    this.dequeue(e);
    this.unhold(e.clientKey);
    this.drain();
    if (this.lanes.length > this.active) this.prune();
  }

  private expire(e: Entry, reason: RefusalReason): void {
    if (!e.linked) return;
    const now = this.clock.now();
    this.shed?.record(now - e.enqueuedAt, now);
    this.dequeue(e);
    this.unhold(e.clientKey);
    if (this.lanes.length > this.active) this.prune();
    e.waiter(this.refuse(reason, e.lane));
  }

  /** The configured lane at `index` (retired lanes take no new requests). */
  private configured(index: number): Lane {
    const l = index < this.active ? this.lanes[index] : undefined;
    if (l === undefined) throw new RangeError(`unknown lane index ${index}`);
    return l;
  }

  /** Drops retired lanes that hold nothing any more. */
  private prune(): void {
    const kept = this.lanes.filter((l, i) => i < this.active || busy(l));
    if (kept.length !== this.lanes.length) this.lanes = kept;
  }

  private dequeue(e: Entry): void {
    e.lane.queue.remove(e);
    this.unqueued(e);
  }

  /** Bookkeeping for an entry that has left its lane's queue. */
  private unqueued(e: Entry): void {
    this.queued--;
    e.timer?.cancel();
    e.timer = null;
  }

  private canStart(l: Lane): boolean {
    return this.inflight < this.limitValue && l.inflight < l.maxSlots;
  }

  private start(index: number, l: Lane, clientKey: string, now: number, queuedMs: number): RoutePermit {
    this.inflight++;
    l.inflight++;
    return new RoutePermit(this, index, l, clientKey, now, this.inflight, queuedMs);
  }

  /** Why a request that cannot start now may not wait either (`waiting`: the queue it would join), or null. */
  private cannotWait(l: Lane, clientKey: string, waiting: number, now: number, deadline: number): RefusalReason | null {
    if (this.overClientShare(clientKey)) return 'client_share';
    if (waiting >= l.cfg.queue.maxLength) return 'queue_full';
    if (Math.min(now + l.cfg.queue.maxWaitMs, deadline) <= now) return 'deadline';
    return null;
  }

  /** Shadow mode: the wait enforce mode would impose now (work ahead ÷ recent completion rate); null before any completion. */
  private shadowWaitMs(now: number): number | null {
    const rate = this.completions.perSecond(now);
    return rate > 0 ? ((this.over + this.queued + 1) / rate) * 1000 : null;
  }

  /** Starts queued work while there is room. Re-entrant calls (from waiters) fold into the running loop. */
  private drain(): void {
    if (this.inDrain) {
      this.drainAgain = true;
      return;
    }
    this.inDrain = true;
    try {
      do {
        this.drainAgain = false;
        for (let i = this.pickLane(); i >= 0; i = this.pickLane()) {
          const l = this.lanes[i] as Lane;
          const now = this.clock.now();
          const e = l.queue.take(i === 0 && this.lifo(l, now)) as Entry;
          this.unqueued(e);
          this.shed?.record(now - e.enqueuedAt, now);
          // The client's hold moves from the queue to the permit: no unhold/hold.
          e.waiter(this.start(i, l, e.clientKey, now, now - e.enqueuedAt));
        }
      } while (this.drainAgain);
    } finally {
      this.inDrain = false;
    }
  }

  /** Serve the first lane newest first? Only while overloaded and a standing queue has formed. */
  private lifo(l: Lane, now: number): boolean {
    const oldest = l.queue.oldest() as Entry;
    const standing = this.firstLaneStanding.standing(now - oldest.enqueuedAt, now);
    return standing && this.shed !== null && this.shed.overloaded(now);
  }

  /** The lane whose next waiter starts next, or -1 when nothing can start. */
  private pickLane(): number {
    if (this.queued === 0 || this.inflight >= this.limitValue) return -1;
    let fallback = -1;
    for (let i = 0; i < this.lanes.length; i++) {
      const l = this.lanes[i] as Lane;
      if (l.queue.length === 0 || l.inflight >= l.maxSlots) continue;
      if (l.inflight < l.minSlots) return i;
      if (fallback < 0) fallback = i;
    }
    return fallback;
  }

  private applyLimit(): void {
    const limit = this.limitValue;
    for (let i = 0; i < this.lanes.length; i++) {
      const l = this.lanes[i] as Lane;
      l.maxSlots = l.cfg.maxShare >= 1 ? limit : Math.max(1, Math.ceil(l.cfg.maxShare * limit));
      // A retired lane reserves nothing: it only finishes what it holds.
      l.minSlots = l.cfg.minShare > 0 && i < this.active ? Math.max(1, Math.ceil(l.cfg.minShare * limit)) : 0;
    }
    this.clientSlots = this.opts.clientSlots ?? Math.max(1, Math.ceil(this.opts.clientMaxShare * limit));
    this.drain();
  }

  private overClientShare(clientKey: string): boolean {
    const held = this.clients.get(clientKey) ?? 0;
    const others = this.clients.size - (held > 0 ? 1 : 0);
    return others > 0 && held >= this.clientSlots;
  }

  private hold(clientKey: string): void {
    this.clients.set(clientKey, (this.clients.get(clientKey) ?? 0) + 1);
  }

  private unhold(clientKey: string): void {
    const n = (this.clients.get(clientKey) ?? 0) - 1;
    if (n > 0) this.clients.set(clientKey, n);
    else this.clients.delete(clientKey);
  }

  /** shed_batch, with a Retry-After no shorter than the cooldown still to run. */
  private refuseShed(l: Lane, now: number): Refusal {
    const leftMs = (this.shed as ShedControl).cooldownLeftMs(now);
    return refusal('shed_batch', shedRetryAfter(leftMs, this.estimateWaitSeconds(l), this.opts.retryAfter, this.opts.random));
  }

  private refuse(reason: RefusalReason, l: Lane): Refusal {
    return refusal(reason, retryAfterSeconds(this.estimateWaitSeconds(l), this.opts.retryAfter, this.opts.random));
  }

  /**
   * How long a request joining `lane` now would wait: the work queued in its
   * lane (in a fair lane: what is served before this client's turn) and the
   * lanes above it, plus itself, at the recent completion rate
   * (each completion frees one slot). While the first lane runs newest first
   * (adaptive LIFO) a newcomer there goes to the front, so its queue does not
   * count. 0 while there is no rate to go by, so a fresh route queues rather
   * than guessing.
   */
  private expectedWaitMs(lane: number, clientKey: string, now: number): number {
    const rate = this.completions.perSecond(now);
    if (rate <= 0) return 0;
    let ahead = 1;
    for (let i = 0; i <= lane; i++) {
      const l = this.lanes[i] as Lane;
      if (i === 0 && l.queue.length > 0 && this.lifo(l, now)) continue;
      // Lanes above are served first whoever waits there; in its own lane a
      // fair queue puts a light client ahead of a heavy one's backlog.
      ahead += i === lane ? l.queue.ahead(clientKey) : l.queue.length;
    }
    return (ahead / rate) * 1000;
  }

  /** Time for the route to work through what is queued ahead, from recent throughput. */
  private estimateWaitSeconds(l: Lane): number {
    const rate = this.completions.perSecond(this.clock.now());
    if (rate <= 0) return l.cfg.queue.maxWaitMs / 1000;
    return (this.queued + 1) / rate;
  }
}

function sameWeights(a: Readonly<Record<string, number>> = {}, b: Readonly<Record<string, number>> = {}): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

function busy(l: Lane): boolean {
  return l.inflight > 0 || l.queue.length > 0;
}

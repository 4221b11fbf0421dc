/**
 * The limiter under operations: reconfigure (config reload), refuseQueued
 * (drain timeout) and acquireShadow (shadow mode). Manual clock, no sockets.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LaneConfig } from '../src/config/types.js';
import { ManualClock, seededRandom } from '../src/core/clock.js';
import { FixedLimit, type Limit, type Sample } from '../src/core/limit/limit.js';
import { Limiter, type LimiterPolicy } from '../src/core/limiter/limiter.js';
import type { Refusal } from '../src/core/limiter/refusal.js';
import type { ShedConfig } from '../src/core/limiter/shed-state.js';
import { limiterVerbs } from './helpers/limiter-verbs.js';

function lane(name: string, o: Partial<LaneConfig> & { maxLength?: number; maxWaitMs?: number; fair?: boolean } = {}): LaneConfig {
  return {
    name,
    maxShare: o.maxShare ?? 1,
    minShare: o.minShare ?? 0,
    queue: { maxLength: o.maxLength ?? 10, maxWaitMs: o.maxWaitMs ?? 1000, fair: o.fair ?? true },
  };
}

const RETRY = { minSeconds: 1, maxSeconds: 30, jitter: 0.2 };

function policy(lanes: LaneConfig[], clientMaxShare = 1): LimiterPolicy {
  return { lanes, clientMaxShare, retryAfter: RETRY };
}

/** A limit that moves by one per sample: up on success, down on a drop. */
class StepLimit implements Limit {
  samples: Sample[] = [];
  constructor(public current: number) {}
  onSample(s: Sample): void {
    this.samples.push(s);
    this.current = Math.max(1, this.current + (s.dropped ? -1 : 1));
  }
}

const SHED: ShedConfig = { enterMs: 50, exitMs: 10, cooldownMs: 1000, windowMs: 100 };

function setup(opts: { limit?: number | Limit; lanes?: LaneConfig[]; clientMaxShare?: number; overload?: ShedConfig } = {}) {
  const clock = new ManualClock(1000);
  const limit = typeof opts.limit === 'object' ? opts.limit : new FixedLimit(opts.limit ?? 2);
  const limiter = new Limiter({
    ...policy(opts.lanes ?? [lane('interactive'), lane('batch', { maxShare: 0.5 })], opts.clientMaxShare ?? 1),
    ...(opts.overload && { overload: opts.overload }),
    limit,
    clock,
    random: seededRandom(3),
  });
  const { later, ask, permit, started, laterPermit } = limiterVerbs(limiter);
  const byLane = () => Object.fromEntries(limiter.snapshot().lanes.map((l) => [l.name, { inflight: l.inflight, queued: l.queued }]));
  return { clock, limiter, later, ask, permit, started, laterPermit, byLane };
}

// ---------------------------------------------------------------- reconfigure

test('reconfigure keeps in-flight and queued work: the limit still holds across a reload', () => {
  const { limiter, ask, permit, started } = setup({ limit: 1 });
  const a = permit('a');
  assert.equal(ask('b').kind, 'queued');
  limiter.reconfigure(policy([lane('interactive', { maxLength: 50 }), lane('batch')]));
  assert.equal(limiter.snapshot().inflight, 1);
  assert.equal(limiter.snapshot().queued, 1);
  // Still full: a new request waits behind b rather than starting.
  assert.equal(ask('c').kind, 'queued');
  a.settle('success');
  assert.deepEqual(started(), ['b']);
  assert.equal(limiter.snapshot().inflight, 1);
});

test('reconfigure without a new limit keeps the learned limit; with one, the new algorithm takes over', () => {
  const learned = new StepLimit(2);
  const { limiter, permit } = setup({ limit: learned });
  for (let i = 0; i < 3; i++) permit(`p${i}`).settle('success');
  assert.equal(limiter.limit, 5);
  limiter.reconfigure(policy([lane('interactive'), lane('batch', { maxShare: 0.25 })]));
  assert.equal(limiter.limit, 5);
  permit('q').settle('success');
  assert.equal(limiter.limit, 6, 'samples still reach the kept limit');
  limiter.reconfigure(policy([lane('interactive'), lane('batch')]), new FixedLimit(3));
  assert.equal(limiter.limit, 3);
});

test('reconfigure applies new lane shares at once: a batch request waiting for its share starts', () => {
  const { limiter, ask, permit, started } = setup({ limit: 4, lanes: [lane('interactive'), lane('batch', { maxShare: 0.5 })] });
  permit('b1', 1);
  permit('b2', 1);
  assert.equal(ask('b3', 1).kind, 'queued');
  limiter.reconfigure(policy([lane('interactive'), lane('batch', { maxShare: 1 })]));
  assert.deepEqual(started(), ['b3']);
  assert.equal(limiter.snapshot().lanes[1]!.maxSlots, 4);
});

test('a larger limit given on reconfigure starts queued work', () => {
  const { limiter, ask, permit, started } = setup({ limit: 1 });
  permit('a');
  ask('b');
  ask('c');
  limiter.reconfigure(policy([lane('interactive'), lane('batch', { maxShare: 0.5 })]), new FixedLimit(3));
  assert.deepEqual(started(), ['b', 'c']);
});

test('a shorter queue on reconfigure keeps who is already waiting and refuses newcomers', () => {
  const { limiter, ask, permit, started } = setup({ limit: 1 });
  const a = permit('a');
  ask('b');
  ask('c');
  limiter.reconfigure(policy([lane('interactive', { maxLength: 1 }), lane('batch')]));
  assert.equal((ask('d') as Refusal).reason, 'queue_full');
  a.settle('success');
  assert.deepEqual(started(), ['b']);
  assert.equal(limiter.snapshot().queued, 1);
});

test('a lane removed by a reload serves what it holds, then disappears', () => {
  const { limiter, ask, permit, started, laterPermit, byLane } = setup({
    limit: 2,
    lanes: [lane('interactive'), lane('batch', { maxShare: 1 })],
  });
  const i1 = permit('i1', 0);
  const b1 = permit('b1', 1);
  assert.equal(ask('b2', 1).kind, 'queued');
  limiter.reconfigure(policy([lane('interactive')]));
  assert.deepEqual(Object.keys(byLane()), ['interactive']);
  assert.throws(() => ask('b3', 1), RangeError, 'no new requests for the removed lane');
  assert.equal(limiter.snapshot().inflight, 2);
  assert.equal(limiter.snapshot().queued, 1);
  // Current lanes go first: i2 waits too, and starts before the retired lane's b2.
  assert.equal(ask('i2', 0).kind, 'queued');
  b1.settle('success');
  assert.deepEqual(started(), ['i2']);
  i1.settle('success');
  assert.deepEqual(started(), ['i2', 'b2']);
  laterPermit('b2').settle('success');
  laterPermit('i2').settle('success');
  const s = limiter.snapshot();
  assert.deepEqual([s.inflight, s.queued, s.clients], [0, 0, 0]);
});

test('a reload that reorders lanes settles in-flight work into the right lane', () => {
  const { limiter, permit, byLane } = setup({ limit: 4, lanes: [lane('interactive'), lane('batch', { maxShare: 1 })] });
  const i = permit('i', 0);
  const b = permit('b', 1);
  limiter.reconfigure(policy([lane('batch', { maxShare: 1 }), lane('interactive')]));
  assert.deepEqual(byLane(), { batch: { inflight: 1, queued: 0 }, interactive: { inflight: 1, queued: 0 } });
  b.settle('success');
  assert.deepEqual(byLane(), { batch: { inflight: 0, queued: 0 }, interactive: { inflight: 1, queued: 0 } });
  i.settle('success');
  assert.equal(limiter.snapshot().inflight, 0);
});

test('reconfigure keeps the shed state: an overloaded route stays overloaded across a reload', () => {
  const { clock, limiter, ask, permit } = setup({ limit: 1, overload: SHED });
  const a = permit('a');
  ask('b');
  clock.advance(80);
  a.settle('success'); // b waited 80 ms > enterMs
  clock.advance(100); // the window closes
  assert.equal(limiter.snapshot().state, 'overloaded');
  limiter.reconfigure({ ...policy([lane('interactive'), lane('batch', { maxShare: 0.5 })]), overload: { ...SHED, cooldownMs: 2000 } });
  assert.equal(limiter.snapshot().state, 'overloaded');
  // b holds the only slot: batch would have to wait, and an overloaded route sheds it instead.
  assert.equal((ask('batch', 1) as Refusal).reason, 'shed_batch');
});

// ---------------------------------------------------------------- refuseQueued

test('refuseQueued answers every queued request 503 draining and leaves in-flight work alone', () => {
  const { clock, limiter, ask, permit, later } = setup({ limit: 1 });
  const a = permit('a', 0, 'A');
  ask('b', 0, 'B');
  ask('c', 1, 'C');
  assert.equal(limiter.refuseQueued('draining'), 2);
  assert.deepEqual(
    later.map((x) => [x.name, (x.result as Refusal).status, (x.result as Refusal).reason]),
    [
      ['b', 503, 'draining'],
      ['c', 503, 'draining'],
    ],
  );
  assert.equal(clock.pendingTimers(), 0, 'queue timers are cancelled');
  assert.equal(limiter.snapshot().inflight, 1);
  assert.equal(limiter.snapshot().clients, 1);
  a.settle('success');
  assert.deepEqual([limiter.snapshot().inflight, limiter.snapshot().clients], [0, 0]);
});

// ---------------------------------------------------------------- shadow

test('shadow: every request starts; one that would have found the queue full says so', () => {
  const { limiter } = setup({ limit: 1, lanes: [lane('interactive', { maxLength: 1 })] });
  const p1 = limiter.acquireShadow(0, 'c1');
  const p2 = limiter.acquireShadow(0, 'c1');
  const p3 = limiter.acquireShadow(0, 'c1');
  assert.equal(p1.wouldRefuse, null, 'room: admitted');
  assert.equal(p2.wouldRefuse, null, 'no room, queue empty: it would have waited');
  assert.equal(p3.wouldRefuse?.reason, 'queue_full');
  assert.equal(p3.wouldRefuse?.status, 503);
  assert.ok(p3.wouldRefuse!.retryAfterSeconds >= 1);
  assert.equal(limiter.snapshot().inflight, 3, 'over-limit requests count in flight');
  assert.equal(limiter.snapshot().queued, 0);
});

test('shadow: over-limit permits settle exactly once and in-flight returns to 0', () => {
  const { limiter } = setup({ limit: 1, lanes: [lane('interactive', { maxLength: 1 })] });
  const ps = [0, 1, 2, 3].map(() => limiter.acquireShadow(0, 'c1'));
  for (const p of ps) {
    p.settle('success', 5);
    p.settle('success', 5);
  }
  const s = limiter.snapshot();
  assert.deepEqual([s.inflight, s.queued, s.clients], [0, 0, 0]);
  // The modelled queue emptied too: the next two requests are admitted, then would wait.
  assert.equal(limiter.acquireShadow(0, 'c1').wouldRefuse, null);
  assert.equal(limiter.acquireShadow(0, 'c1').wouldRefuse, null);
  assert.equal(limiter.acquireShadow(0, 'c1').wouldRefuse?.reason, 'queue_full');
});

test('shadow: the limit learns from every request, over-limit ones included, with the real concurrency', () => {
  const learned = new StepLimit(1);
  const { limiter, clock } = setup({ limit: learned });
  const a = limiter.acquireShadow(0, 'c1');
  const b = limiter.acquireShadow(0, 'c1');
  clock.advance(10);
  a.settle('success', 4);
  b.settle('dropped', 9);
  assert.equal(learned.samples.length, 2);
  assert.deepEqual(
    learned.samples.map((s) => [s.inflight, s.rttMs, s.dropped]),
    [
      [1, 4, false],
      [2, 9, true],
    ],
  );
});

test('shadow: client_share is computed as in enforce mode', () => {
  const { limiter } = setup({ limit: 2, clientMaxShare: 0.5 });
  assert.equal(limiter.acquireShadow(0, 'A').wouldRefuse, null);
  assert.equal(limiter.acquireShadow(0, 'B').wouldRefuse, null);
  const r = limiter.acquireShadow(0, 'A').wouldRefuse;
  assert.equal(r?.reason, 'client_share');
  assert.equal(r?.status, 429);
});

test('shadow: a wait longer than maxWaitMs at the recent completion rate would be queue_timeout', () => {
  const { limiter, clock } = setup({ limit: 2, lanes: [lane('interactive', { maxLength: 100, maxWaitMs: 500 })] });
  // 4 completions per second.
  for (let i = 0; i < 4; i++) {
    limiter.acquireShadow(0, 'c1').settle('success');
    clock.advance(250);
  }
  limiter.acquireShadow(0, 'c1');
  limiter.acquireShadow(0, 'c1');
  // No room; nothing ahead: about 1 / 4 per s = 250 ms < 500 ms: it would have waited and started.
  assert.equal(limiter.acquireShadow(0, 'c1').wouldRefuse, null);
  // One ahead: about 2 / 4 per s = 500 ms: still within maxWaitMs.
  assert.equal(limiter.acquireShadow(0, 'c1').wouldRefuse, null);
  // Two ahead: about 750 ms: past maxWaitMs.
  assert.equal(limiter.acquireShadow(0, 'c1').wouldRefuse?.reason, 'queue_timeout');
});

test('shadow and enforce requests share one account: enforce queues behind over-limit shadow work', () => {
  const { limiter, ask, started } = setup({ limit: 1 });
  const s1 = limiter.acquireShadow(0, 'c1');
  const s2 = limiter.acquireShadow(0, 'c1');
  assert.equal(ask('e').kind, 'queued');
  s1.settle('success');
  assert.deepEqual(started(), [], 'still at the limit with s2 in flight');
  s2.settle('success');
  assert.deepEqual(started(), ['e']);
});

test('shadow: the estimated queue wait feeds the shed state; an overloaded shadow route would shed batch', () => {
  const { limiter, clock } = setup({ limit: 1, overload: SHED, lanes: [lane('interactive', { maxLength: 100 }), lane('batch')] });
  // 10 completions per second.
  for (let i = 0; i < 10; i++) {
    limiter.acquireShadow(0, 'c1').settle('success');
    clock.advance(100);
  }
  limiter.acquireShadow(0, 'c1');
  // No room: about 1 / 10 per s = 100 ms of wait enforce mode would impose (> enterMs).
  assert.equal(limiter.acquireShadow(0, 'c1').wouldRefuse, null);
  assert.equal(limiter.acquireShadow(1, 'c1').wouldRefuse, null, 'not overloaded yet');
  clock.advance(100); // the window closes with that wait in it
  assert.equal(limiter.snapshot().state, 'overloaded');
  // No room for batch: enforce mode would have shed it rather than queue it.
  assert.equal(limiter.acquireShadow(1, 'c1').wouldRefuse?.reason, 'shed_batch');
  assert.equal(limiter.acquireShadow(0, 'c1').wouldRefuse, null, 'the first lane is never shed');
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LaneConfig } from '../src/config/types.js';
import { ManualClock, seededRandom } from '../src/core/clock.js';
import { FixedLimit, type Limit, type Sample } from '../src/core/limit/limit.js';
import { Limiter } from '../src/core/limiter/limiter.js';
import type { Refusal } from '../src/core/limiter/refusal.js';
import { limiterVerbs } from './helpers/limiter-verbs.js';

function lane(name: string, o: Partial<LaneConfig> & { maxLength?: number; maxWaitMs?: number; fair?: boolean } = {}): LaneConfig {
  return {
    name,
    maxShare: o.maxShare ?? 1,
    minShare: o.minShare ?? 0,
    queue: { maxLength: o.maxLength ?? 10, maxWaitMs: o.maxWaitMs ?? 1000, fair: o.fair ?? true },
  };
}

function setup(opts: { limit?: number | Limit; lanes?: LaneConfig[]; clientMaxShare?: number } = {}) {
  const clock = new ManualClock(1000);
  const limit = typeof opts.limit === 'object' ? opts.limit : new FixedLimit(opts.limit ?? 2);
  const limiter = new Limiter({
    lanes: opts.lanes ?? [lane('interactive'), lane('batch', { maxShare: 0.5 })],
    limit,
    clientMaxShare: opts.clientMaxShare ?? 1,
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0.2 },
    clock,
    random: seededRandom(7),
  });
  const { later, ask, permit, started, laterPermit } = limiterVerbs(limiter);
  return { clock, limiter, later, ask, permit, started, laterPermit };
}

test('admits up to the limit, then queues, then starts queued work as slots free', () => {
  const { limiter, ask, permit, started } = setup({ limit: 2 });
  const a = permit('a');
  permit('b');
  assert.equal(ask('c').kind, 'queued');
  assert.equal(limiter.snapshot().queued, 1);
  a.settle('success', 5);
  assert.deepEqual(started(), ['c']);
  assert.equal(limiter.snapshot().inflight, 2);
  assert.equal(limiter.snapshot().queued, 0);
});

test('a full queue refuses with 503 queue_full and an integer Retry-After >= 1', () => {
  const { ask, permit } = setup({ limit: 1, lanes: [lane('interactive', { maxLength: 1 })] });
  permit('a');
  assert.equal(ask('b').kind, 'queued');
  const r = ask('c') as Refusal;
  assert.equal(r.kind, 'refused');
  assert.equal(r.status, 503);
  assert.equal(r.reason, 'queue_full');
  assert.ok(Number.isInteger(r.retryAfterSeconds) && r.retryAfterSeconds >= 1);
});

test('a queued request that waits past maxWaitMs is refused with queue_timeout and leaves the queue', () => {
  const { clock, limiter, ask, permit, later } = setup({ limit: 1, lanes: [lane('interactive', { maxWaitMs: 200 })] });
  permit('a');
  ask('b');
  clock.advance(199);
  assert.equal(later.length, 0);
  clock.advance(1);
  assert.equal(later.length, 1);
  const r = later[0]!.result as Refusal;
  assert.equal(r.reason, 'queue_timeout');
  assert.equal(r.status, 503);
  assert.equal(limiter.snapshot().queued, 0);
  assert.equal(clock.pendingTimers(), 0);
});

test('a cancelled ticket leaves the queue at once and never starts', () => {
  const { clock, limiter, ask, permit, later } = setup({ limit: 1 });
  const a = permit('a');
  const t = ask('b');
  assert.equal(t.kind, 'queued');
  if (t.kind === 'queued') t.cancel();
  assert.equal(limiter.snapshot().queued, 0);
  assert.equal(clock.pendingTimers(), 0);
  a.settle('success');
  assert.equal(later.length, 0);
  assert.equal(limiter.snapshot().inflight, 0);
  assert.equal(limiter.snapshot().clients, 0);
});

test('settle is idempotent: a second settle does not free a second slot', () => {
  const { limiter, permit, ask, started } = setup({ limit: 1 });
  const a = permit('a');
  ask('b');
  ask('c');
  a.settle('success');
  a.settle('success');
  a.settle('ignore');
  assert.deepEqual(started(), ['b']);
  assert.equal(limiter.snapshot().inflight, 1);
  assert.equal(limiter.snapshot().queued, 1);
});

test('the higher-priority lane is served first when a slot frees', () => {
  const { permit, ask, started } = setup({ limit: 2, lanes: [lane('interactive'), lane('batch', { maxShare: 1 })] });
  const a = permit('a');
  permit('b');
  ask('batch1', 1);
  ask('int1', 0);
  a.settle('success');
  assert.deepEqual(started(), ['int1']);
});

test('a lane below its minShare is served ahead of higher lanes (no starvation)', () => {
  const lanes = [lane('interactive'), lane('batch', { maxShare: 1, minShare: 0.25 })];
  const { permit, ask, started } = setup({ limit: 4, lanes });
  const held = [permit('i1'), permit('i2'), permit('i3'), permit('i4')];
  ask('batch1', 1);
  ask('int5', 0);
  held[0]!.settle('success');
  // batch has 0 in flight, below its 1 reserved slot (ceil(0.25*4)): it goes first.
  assert.deepEqual(started(), ['batch1']);
  held[1]!.settle('success');
  assert.deepEqual(started(), ['batch1', 'int5']);
});

test('a lane never exceeds maxShare of the limit, even with free slots', () => {
  const { limiter, ask, permit } = setup({ limit: 4, lanes: [lane('interactive'), lane('batch', { maxShare: 0.5 })] });
  permit('b1', 1);
  permit('b2', 1);
  assert.equal(ask('b3', 1).kind, 'queued');
  // Interactive still has room.
  permit('i1', 0);
  assert.equal(limiter.snapshot().lanes[1]!.inflight, 2);
  assert.equal(limiter.snapshot().lanes[1]!.maxSlots, 2);
});

test('shares round up to at least one slot at a small limit', () => {
  const { limiter, permit } = setup({ limit: 1, lanes: [lane('interactive'), lane('batch', { maxShare: 0.1 })] });
  permit('b1', 1);
  assert.equal(limiter.snapshot().lanes[1]!.maxSlots, 1);
});

test('client_share: a client over its share is refused 429 only while another client also holds slots', () => {
  const { ask, permit } = setup({ limit: 4, clientMaxShare: 0.5 });
  permit('a1', 0, 'A');
  permit('a2', 0, 'A');
  permit('b1', 0, 'B');
  permit('b2', 0, 'B');
  const r = ask('a3', 0, 'A') as Refusal;
  assert.equal(r.kind, 'refused');
  assert.equal(r.status, 429);
  assert.equal(r.reason, 'client_share');
  // A client with nothing held yet is queued.
  assert.equal(ask('c1', 0, 'C').kind, 'queued');
});

test('a lone client is queued, never told 429 for its share', () => {
  const { ask, permit } = setup({ limit: 2, clientMaxShare: 0.5 });
  permit('a1', 0, 'A');
  permit('a2', 0, 'A');
  assert.equal(ask('a3', 0, 'A').kind, 'queued');
});

test('a deadline shorter than maxWait refuses with reason deadline when it passes', () => {
  const { clock, ask, permit, later } = setup({ limit: 1 });
  permit('a');
  assert.equal(ask('b', 0, 'c1', clock.now() + 50).kind, 'queued');
  clock.advance(50);
  assert.equal((later[0]!.result as Refusal).reason, 'deadline');
  const past = ask('c', 0, 'c1', clock.now()) as Refusal;
  assert.equal(past.reason, 'deadline');
});

test('a deadline the queue ahead cannot meet at the recent completion rate is refused at once', () => {
  const { clock, ask, permit } = setup({ limit: 1, lanes: [lane('interactive'), lane('batch')] });
  // About 10 completions per second.
  for (let i = 0; i < 20; i++) {
    const p = permit(`warm${i}`);
    clock.advance(100);
    p.settle('success');
  }
  permit('busy');
  for (let i = 0; i < 4; i++) assert.equal(ask(`q${i}`).kind, 'queued');
  // 4 ahead + itself at ~10/s is about 0.5 s.
  const early = ask('tight', 0, 'c1', clock.now() + 300);
  assert.equal(early.kind, 'refused');
  assert.equal((early as Refusal).reason, 'deadline');
  assert.ok((early as Refusal).retryAfterSeconds >= 1);
  assert.equal(ask('loose', 0, 'c1', clock.now() + 700).kind, 'queued');
  // Batch work waits behind interactive work; interactive work does not wait behind batch.
  assert.equal(ask('batch-tight', 1, 'c1', clock.now() + 300).kind, 'refused');
});

test('an interactive deadline ignores the batch queue, which it would overtake', () => {
  const { clock, ask, permit } = setup({ limit: 1, lanes: [lane('interactive'), lane('batch')] });
  for (let i = 0; i < 20; i++) {
    const p = permit(`warm${i}`);
    clock.advance(100);
    p.settle('success');
  }
  permit('busy');
  for (let i = 0; i < 6; i++) assert.equal(ask(`b${i}`, 1).kind, 'queued');
  assert.equal(ask('inter', 0, 'c1', clock.now() + 300).kind, 'queued');
});

test('without a completion rate to go by, a request with a deadline queues', () => {
  const { clock, ask, permit } = setup({ limit: 1 });
  permit('busy');
  for (let i = 0; i < 5; i++) ask(`q${i}`);
  assert.equal(ask('d', 0, 'c1', clock.now() + 10).kind, 'queued');
});

test('queued permits report how long they waited', () => {
  const { clock, permit, ask, laterPermit } = setup({ limit: 1 });
  const a = permit('a');
  ask('b');
  clock.advance(120);
  a.settle('success');
  assert.equal(laterPermit('b').queuedMs, 120);
});

test('samples reach the limit: success with rtt, dropped flagged, ignore feeds nothing', () => {
  const samples: Sample[] = [];
  const limit: Limit = { current: 3, onSample: (s) => void samples.push(s) };
  const { clock, permit } = setup({ limit });
  const a = permit('a');
  const b = permit('b');
  const c = permit('c');
  clock.advance(10);
  a.settle('success', 7);
  b.settle('dropped');
  c.settle('ignore');
  assert.equal(samples.length, 2);
  assert.deepEqual(samples[0], { startedAt: 1000, rttMs: 7, inflight: 1, dropped: false });
  assert.equal(samples[1]!.dropped, true);
  assert.equal(samples[1]!.inflight, 2);
});

test('when the limit grows, queued work starts; when it shrinks, nothing new starts until under it', () => {
  let current = 2;
  const limit: Limit = {
    get current() {
      return current;
    },
    onSample: (s) => {
      current = s.dropped ? 1 : 4;
    },
  };
  const { limiter, permit, ask, started } = setup({ limit });
  const a = permit('a');
  const b = permit('b');
  ask('c');
  ask('d');
  ask('e');
  a.settle('success'); // limit -> 4: c, d, e can all start (b + 3 = 4)
  assert.deepEqual(started(), ['c', 'd', 'e']);
  b.settle('dropped'); // limit -> 1 with 3 in flight
  assert.equal(limiter.snapshot().limit, 1);
  assert.equal(limiter.snapshot().inflight, 3);
  assert.equal(ask('f').kind, 'queued');
});

test('client bookkeeping returns to empty after all requests end', () => {
  const { limiter, clock, permit, ask } = setup({ limit: 1, lanes: [lane('interactive', { maxWaitMs: 10 })] });
  const a = permit('a', 0, 'A');
  ask('b', 0, 'B');
  clock.advance(10);
  a.settle('success');
  const s = limiter.snapshot();
  assert.equal(s.inflight, 0);
  assert.equal(s.queued, 0);
  assert.equal(s.clients, 0);
});

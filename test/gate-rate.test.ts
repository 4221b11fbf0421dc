/**
 * The gate with a shared rate store: a request whose rate must be asked is
 * a Queued until the store answers (within its timeoutMs), then the limiter
 * decides; the accounting (pool count, breaker admission) stays exact
 * whatever happens in between. Manual clock, in-memory remote side.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LaneConfig } from '../src/config/types.js';
import { Breaker } from '../src/core/breaker.js';
import { ManualClock } from '../src/core/clock.js';
import { RouteGate, type Hold, type InUse, type Queued } from '../src/core/gate/gate.js';
import { FixedLimit } from '../src/core/limit/limit.js';
import { Limiter } from '../src/core/limiter/limiter.js';
import type { Refusal } from '../src/core/limiter/refusal.js';
import { LocalRate, SharedRate } from '../src/core/rate/rate-store.js';
import { MemoryRemote } from './helpers/memory-remote.js';

const RETRY = { minSeconds: 1, maxSeconds: 60, jitter: 0 };
const lane: LaneConfig = { name: 'interactive', maxShare: 1, minShare: 0, queue: { maxLength: 5, maxWaitMs: 500, fair: true } };

/** Lets promise callbacks (the store's answer) run. */
const settled = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

function setup(o: { shadow?: boolean; limit?: number; burst?: number } = {}) {
  const clock = new ManualClock(1000);
  const random = () => 0.5;
  const limiter = new Limiter({ lanes: [lane], limit: new FixedLimit(o.limit ?? 2), clientMaxShare: 1, retryAfter: RETRY, clock, random });
  const breaker = new Breaker({
    config: { enabled: true, consecutiveFailures: 2, failureRatio: 1, minRequests: 1000, windowMs: 10_000, openMs: 1000, maxOpenMs: 60_000, halfOpenRatio: 0, closeAfterSuccesses: 1 },
    clock,
    random,
  });
  const remote = new MemoryRemote(clock, 1, o.burst ?? 2);
  const store = new SharedRate({ perSecond: 1, burst: o.burst ?? 2, instances: 2, timeoutMs: 20, remote, clock, random });
  const use: InUse = { active: 0 };
  const gate = new RouteGate({ limiter, breaker, clientRate: store, shadow: o.shadow ?? false, use, retryAfter: RETRY, clock, random });
  /** Enters and, when the store must be asked, collects the fate. */
  const enter = (client = 'c') => {
    const r = gate.enter(0, client, Infinity);
    const fate: { result: Hold | Refusal | null; queuedMs: number } = { result: null, queuedMs: -1 };
    if (r.kind === 'queued') r.wait((result, queuedMs) => Object.assign(fate, { result, queuedMs }));
    return { r, fate };
  };
  return { clock, limiter, breaker, remote, store, use, gate, enter };
}

test('gate + shared store: the request waits for the store as a Queued, then holds a slot; the verdict rides on the Hold', async () => {
  const g = setup();
  const { r, fate } = g.enter();
  assert.equal(r.kind, 'queued');
  assert.equal(g.use.active, 1);
  assert.equal(g.limiter.snapshot().inflight, 0);
  await settled();
  const hold = fate.result as Hold;
  assert.equal(hold.kind, 'hold');
  assert.deepEqual(hold.rate, { kind: 'allowed', remaining: 1, waitSeconds: 1 });
  assert.equal(g.use.active, 1);
  assert.equal(g.limiter.snapshot().inflight, 1);
  hold.settle('success', 'success', 5);
  assert.equal(g.use.active, 0);
  assert.equal(g.limiter.snapshot().inflight, 0);
});

test('gate + shared store: over its rate in the store → 429 client_rate after the wait; nothing stays counted', async () => {
  const g = setup({ burst: 1 });
  g.enter('c');
  await settled();
  // The store said nothing is left: the next one is refused at once, from the local cache.
  const again = g.gate.enter(0, 'c', Infinity) as Refusal;
  assert.equal(again.kind, 'refused');
  assert.equal(again.reason, 'client_rate');
  assert.equal(again.retryAfterSeconds, 1);
  // A client the cache does not know yet is refused by the store itself.
  const other = setup({ burst: 1 });
  other.remote.take('d'); // another instance spent d's burst
  const { fate } = other.enter('d');
  await settled();
  assert.equal((fate.result as Refusal).reason, 'client_rate');
  assert.equal(other.use.active, 0);
  assert.equal(other.limiter.snapshot().inflight, 0);
});

test('gate + shared store: allowed but the route is full → the request moves on to the lane queue, and starts when a slot frees', async () => {
  const g = setup({ limit: 1 });
  const first = g.enter('a');
  await settled();
  const h1 = first.fate.result as Hold;
  const second = g.enter('b');
  await settled();
  assert.equal(second.fate.result, null);
  assert.equal(g.limiter.snapshot().queued, 1);
  assert.equal(g.use.active, 2);
  g.clock.advance(30);
  h1.settle('success', 'success', 30);
  const h2 = second.fate.result as Hold | null;
  assert.equal(h2?.kind, 'hold');
  assert.equal(second.fate.queuedMs, 30);
  h2!.settle('success', 'success', 1);
  assert.equal(g.use.active, 0);
});

test('gate + shared store: a client that leaves while its rate is asked is gone at once; the late verdict admits nobody', async () => {
  const g = setup();
  g.remote.mode = 'hang';
  const { r, fate } = g.enter();
  assert.equal(g.use.active, 1);
  assert.ok((r as Queued).cancel() >= 0);
  assert.equal(g.use.active, 0);
  assert.equal((r as Queued).cancel(), -1);
  g.remote.answerHeld();
  await settled();
  assert.equal(fate.result, null);
  assert.equal(g.limiter.snapshot().inflight, 0);
  assert.equal(g.use.active, 0);
  g.clock.advance(100);
  assert.equal(g.clock.pendingTimers(), 0);
});

test('gate + shared store: a client that leaves from the lane queue after its rate was asked leaves that queue', async () => {
  const g = setup({ limit: 1 });
  g.enter('a');
  await settled();
  const { r } = g.enter('b');
  await settled();
  assert.equal(g.limiter.snapshot().queued, 1);
  (r as Queued).cancel();
  assert.equal(g.limiter.snapshot().queued, 0);
  assert.equal(g.use.active, 1);
});

test('gate + shared store: a store that does not answer → the local bucket decides at timeoutMs and the request holds a slot', async () => {
  const g = setup();
  g.remote.mode = 'hang';
  const { fate } = g.enter();
  g.clock.advance(19);
  await settled();
  assert.equal(fate.result, null);
  g.clock.advance(1);
  await settled();
  assert.equal((fate.result as Hold | null)?.kind, 'hold');
  assert.equal(fate.queuedMs, 20);
  assert.equal(g.store.stats().errors.timeout, 1);
});

test('gate + shared store, shadow: the verdict is waited for, and over the rate becomes a would-be refusal on a Hold', async () => {
  const g = setup({ shadow: true, burst: 1 });
  g.remote.take('c');
  const { fate } = g.enter('c');
  await settled();
  const hold = fate.result as Hold;
  assert.equal(hold.kind, 'hold');
  assert.equal(hold.wouldRefuse?.reason, 'client_rate');
  hold.settle('success', 'success', 1);
  assert.equal(g.use.active, 0);
});

test('gate + local buckets: the verdict rides on the Hold too (for RateLimit headers)', () => {
  const clock = new ManualClock(0);
  const limiter = new Limiter({ lanes: [lane], limit: new FixedLimit(5), clientMaxShare: 1, retryAfter: RETRY, clock, random: () => 0.5 });
  const use: InUse = { active: 0 };
  const gate = new RouteGate({ limiter, breaker: null, clientRate: new LocalRate(10, 3, clock), shadow: false, use, retryAfter: RETRY, clock, random: () => 0.5 });
  const h = gate.enter(0, 'c', Infinity) as Hold;
  assert.deepEqual(h.rate, { kind: 'allowed', remaining: 2, waitSeconds: 0.1 });
});

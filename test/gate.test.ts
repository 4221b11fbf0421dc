/**
 * RouteGate (src/core/gate/gate.ts) on a manual clock: the order of its
 * checks (breaker, deadline, client rate, limiter), shadow mode turning a
 * would-be refusal into a Hold, and the accounting every Hold and Queued
 * must leave behind (in flight, pool count and breaker probes back at 0).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CircuitBreakerConfig, LaneConfig } from '../src/config/types.js';
import { Breaker } from '../src/core/breaker.js';
import { ManualClock, type Random } from '../src/core/clock.js';
import { RouteGate, type Hold, type InUse, type Queued } from '../src/core/gate/gate.js';
import { FixedLimit } from '../src/core/limit/limit.js';
import { LocalRate } from '../src/core/rate/rate-store.js';
import { Limiter } from '../src/core/limiter/limiter.js';
import type { Refusal } from '../src/core/limiter/refusal.js';

const BREAKER: CircuitBreakerConfig = {
  enabled: true,
  consecutiveFailures: 2,
  failureRatio: 0.5,
  minRequests: 100,
  windowMs: 1000,
  openMs: 3000,
  maxOpenMs: 60_000,
  halfOpenRatio: 0,
  closeAfterSuccesses: 1,
};
const RETRY = { minSeconds: 1, maxSeconds: 60, jitter: 0 };
const lane = (name: string): LaneConfig => ({ name, maxShare: 1, minShare: 0, queue: { maxLength: 2, maxWaitMs: 500, fair: true } });

function setup(o: { shadow?: boolean; breaker?: boolean; rate?: { perSecond: number; burst: number }; limit?: number } = {}) {
  const clock = new ManualClock(1000);
  const random: Random = () => 0.5;
  const limiter = new Limiter({ lanes: [lane('interactive')], limit: new FixedLimit(o.limit ?? 1), clientMaxShare: 1, retryAfter: RETRY, clock, random });
  const breaker = o.breaker === false ? null : new Breaker({ config: BREAKER, clock, random });
  const clientRate = o.rate ? new LocalRate(o.rate.perSecond, o.rate.burst, clock) : null;
  const use: InUse = { active: 0 };
  const gate = new RouteGate({ limiter, breaker, clientRate, shadow: o.shadow ?? false, use, retryAfter: RETRY, clock, random });
  const enter = (client = 'c', budgetMs = Infinity) => gate.enter(0, client, budgetMs);
  const hold = (client = 'c', budgetMs = Infinity): Hold => {
    const r = enter(client, budgetMs);
    assert.equal(r.kind, 'hold', `expected a hold, got ${JSON.stringify(r)}`);
    return r as Hold;
  };
  const refused = (client = 'c', budgetMs = Infinity): Refusal => {
    const r = enter(client, budgetMs);
    assert.equal(r.kind, 'refused', `expected a refusal, got ${r.kind}`);
    return r as Refusal;
  };
  /** Two upstream failures in a row open the breaker. */
  const trip = () => {
    for (let i = 0; i < 2; i++) hold(`trip-${i}`).settle('ignore', 'failure');
    assert.equal(breaker?.state, 'open');
  };
  /** Nothing held, nothing queued, no probe in flight. */
  const idle = () => {
    assert.equal(limiter.snapshot().inflight, 0, 'in flight');
    assert.equal(limiter.snapshot().queued, 0, 'queued');
    assert.equal(use.active, 0, 'pool count');
    if (breaker !== null) assert.equal(breaker.snapshot().probesInFlight, 0, 'probes in flight');
  };
  return { clock, limiter, breaker, use, gate, enter, hold, refused, trip, idle };
}

test('gate: an open breaker refuses first, with the time left open as Retry-After, and takes no rate token', () => {
  const g = setup({ rate: { perSecond: 0.001, burst: 1 } });
  g.trip();
  g.clock.advance(1000);
  const r = g.refused('fresh-client', 0);
  assert.equal(r.reason, 'circuit_open');
  assert.equal(r.status, 503);
  assert.equal(r.retryAfterSeconds, 2, 'openMs 3000, 1000 elapsed');
  // Its token is untouched: once the breaker probes, the client's first request goes through.
  g.clock.advance(2000);
  assert.equal(g.breaker?.state, 'half_open');
  g.hold('fresh-client').settle('success', 'success');
  assert.equal(g.breaker?.state, 'closed');
  g.idle();
});

test('gate: a spent deadline is refused before the client rate, and the token stays', () => {
  const g = setup({ rate: { perSecond: 0.001, burst: 1 } });
  const r = g.refused('c', 0.5);
  assert.equal(r.reason, 'deadline');
  assert.equal(r.status, 503);
  assert.ok(r.retryAfterSeconds >= 1);
  g.hold('c', 1).settle('success', 'success');
  assert.equal(g.refused('c').reason, 'client_rate');
  g.idle();
});

test('gate: a client over its rate gets 429 client_rate before the limiter is asked', () => {
  const g = setup({ rate: { perSecond: 1, burst: 1 }, limit: 1 });
  const first = g.hold('a');
  // The route is full too; the rate decides first (429, not a queue place).
  const r = g.refused('a');
  assert.equal(r.reason, 'client_rate');
  assert.equal(r.status, 429);
  assert.equal(r.retryAfterSeconds, 1);
  assert.equal(g.limiter.snapshot().queued, 0);
  // Another client with tokens is queued by the limiter as usual.
  const q = g.enter('b') as Queued;
  assert.equal(q.kind, 'queued');
  assert.ok(q.cancel() >= 0);
  first.settle('success', 'success');
  g.idle();
});

test('gate: a half-open probe refused later (rate, limiter) gives its probe back', () => {
  const g = setup({ rate: { perSecond: 0.001, burst: 1 } });
  g.trip();
  g.clock.advance(3000);
  assert.equal(g.breaker?.state, 'half_open');
  g.hold('spender').settle('ignore', 'ignore');
  // The probe slot was taken by admit() and released when the rate refused.
  assert.equal(g.refused('spender').reason, 'client_rate');
  assert.equal(g.breaker?.snapshot().probesInFlight, 0);
  const probe = g.hold('other');
  assert.equal(g.breaker?.snapshot().probesInFlight, 1);
  // With the probe in flight the next one is refused (halfOpenRatio 0), limiter untouched.
  assert.equal(g.refused('third').reason, 'circuit_open');
  probe.settle('success', 'success');
  assert.equal(g.breaker?.state, 'closed');
  g.idle();
});

test('gate: Hold.settle is one idempotent step: permit, breaker, pool count', () => {
  const g = setup({ limit: 2 });
  const h = g.hold();
  assert.equal(g.use.active, 1);
  assert.equal(g.limiter.snapshot().inflight, 1);
  assert.equal(h.settle('dropped', 'failure'), true);
  assert.equal(h.settle('success', 'failure'), false, 'a second settle changes nothing');
  assert.equal(g.breaker?.snapshot().failuresInRow, 1, 'the breaker learned once');
  g.idle();
});

test('gate: the budget becomes an absolute deadline on the hold; none is Infinity', () => {
  const g = setup({ limit: 2 });
  const a = g.hold('c', 250);
  assert.equal(a.deadline, 1250);
  const b = g.hold('c');
  assert.equal(b.deadline, Infinity);
  a.settle('success', 'success');
  b.settle('success', 'success');
  g.idle();
});

test('gate: a queued request gets its hold later; the pool count covers the wait', () => {
  const g = setup({ limit: 1 });
  const first = g.hold('a');
  const q = g.enter('b') as Queued;
  assert.equal(q.kind, 'queued');
  assert.equal(g.use.active, 2);
  let got: { result: Hold | Refusal; queuedMs: number } | null = null;
  q.wait((result, queuedMs) => (got = { result, queuedMs }));
  g.clock.advance(40);
  first.settle('success', 'success');
  const later = got as unknown as { result: Hold; queuedMs: number };
  assert.equal(later.result.kind, 'hold');
  assert.equal(later.queuedMs, 40);
  assert.equal(later.result.queuedMs, 40);
  assert.equal(g.use.active, 1);
  assert.equal(q.cancel(), -1, 'no longer queued');
  later.result.settle('success', 'success');
  g.idle();
});

test('gate: a queue timeout is a refusal that releases the pool count and the breaker admission', () => {
  const g = setup({ limit: 1 });
  g.trip();
  g.clock.advance(3000);
  const probe = g.hold('a');
  // A second request in half-open is refused (halfOpenRatio 0) ...
  assert.equal(g.refused('b').reason, 'circuit_open');
  probe.settle('success', 'success');
  // ... closed now: a request waits behind a held one and times out.
  const held = g.hold('a');
  const q = g.enter('b') as Queued;
  const seen: string[] = [];
  q.wait((r, ms) => seen.push(`${r.kind}:${r.kind === 'refused' ? r.reason : ''}:${ms}`));
  g.clock.advance(500);
  assert.deepEqual(seen, ['refused:queue_timeout:500']);
  assert.equal(g.use.active, 1);
  held.settle('success', 'success');
  g.idle();
});

test('gate: a client that leaves the queue frees its place, its probe and its pool count, once', () => {
  const g = setup({ limit: 1 });
  const held = g.hold('a');
  const q = g.enter('b') as Queued;
  let called = false;
  q.wait(() => (called = true));
  g.clock.advance(30);
  assert.equal(q.cancel(), 30);
  assert.equal(q.cancel(), -1);
  assert.equal(g.use.active, 1);
  held.settle('success', 'success');
  assert.equal(called, false, 'a cancelled request is never admitted');
  g.idle();
});

test('gate: a fate that arrives before wait() is delivered when wait() is called', () => {
  const g = setup({ limit: 1 });
  const held = g.hold('a');
  const q = g.enter('b') as Queued;
  held.settle('success', 'success');
  let got: Hold | Refusal | null = null;
  q.wait((r) => (got = r));
  assert.equal((got as Hold | null)?.kind, 'hold');
  (got as unknown as Hold).settle('success', 'success');
  g.idle();
});

test('gate shadow: an open breaker is a would-be refusal; the request holds and records nothing on the breaker', () => {
  const g = setup({ shadow: true });
  g.trip();
  const h = g.hold();
  assert.equal(h.wouldRefuse?.reason, 'circuit_open');
  h.settle('ignore', 'failure');
  // Not an admission: the failure did not extend the open period.
  assert.equal(g.breaker?.snapshot().opens, 1);
  g.idle();
});

test('gate shadow: a spent deadline rides along as a would-be refusal and leaves no deadline on the hold', () => {
  const g = setup({ shadow: true, rate: { perSecond: 0.001, burst: 1 } });
  const h = g.hold('c', 0);
  assert.equal(h.wouldRefuse?.reason, 'deadline');
  assert.equal(h.deadline, Infinity);
  h.settle('success', 'success');
  // The deadline decided first: the client's token was not taken.
  const next = g.hold('c');
  assert.equal(next.wouldRefuse, null);
  next.settle('success', 'success');
  g.idle();
});

test('gate shadow: over its rate and over the limit, the first check that refuses is reported, and nobody waits', () => {
  const g = setup({ shadow: true, rate: { perSecond: 0.001, burst: 1 }, limit: 1 });
  const a = g.hold('a');
  assert.equal(a.wouldRefuse, null);
  const b = g.hold('a');
  assert.equal(b.wouldRefuse?.reason, 'client_rate');
  assert.equal(b.wouldRefuse?.status, 429);
  // Over the limit the request still starts at once, counted in flight.
  assert.equal(g.limiter.snapshot().inflight, 2);
  assert.equal(g.limiter.snapshot().queued, 0);
  a.settle('success', 'success');
  b.settle('success', 'success');
  g.idle();
});

test('gate: without a breaker or a rate the limiter alone decides', () => {
  const g = setup({ breaker: false, limit: 1 });
  const a = g.hold('a', 100);
  const q = g.enter('a', 100);
  assert.equal(q.kind, 'queued');
  (q as Queued).cancel();
  a.settle('success', 'success');
  g.idle();
});

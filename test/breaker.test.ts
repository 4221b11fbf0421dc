import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CircuitBreakerConfig } from '../src/config/types.js';
import { Breaker, REFUSED, type BreakerResult, type BreakerStateName } from '../src/core/breaker.js';
import { ManualClock, type Random } from '../src/core/clock.js';

const base: CircuitBreakerConfig = {
  enabled: true,
  consecutiveFailures: 3,
  failureRatio: 0.5,
  minRequests: 10,
  windowMs: 1000,
  openMs: 100,
  maxOpenMs: 800,
  halfOpenRatio: 0.1,
  closeAfterSuccesses: 3,
};

/** A scripted random: returns the given values in turn, then 0.99 (never under a small ratio). */
function scripted(...values: number[]): Random {
  return () => values.shift() ?? 0.99;
}

function setup(cfg: Partial<CircuitBreakerConfig> = {}, random: Random = scripted()) {
  const clock = new ManualClock(0);
  const changes: BreakerStateName[] = [];
  const breaker = new Breaker({ config: { ...base, ...cfg }, clock, random, onChange: (s) => changes.push(s) });
  /** Admits one request and records its result at once. */
  const call = (result: BreakerResult): boolean => {
    const a = breaker.admit();
    if (a === REFUSED) return false;
    breaker.record(a, result);
    return true;
  };
  const trip = () => {
    for (let i = 0; i < (cfg.consecutiveFailures ?? base.consecutiveFailures); i++) call('failure');
    assert.equal(breaker.state, 'open');
  };
  return { clock, breaker, changes, call, trip };
}

test('breaker: consecutive failures open it; a success in between resets the count', () => {
  const { breaker, call, changes } = setup();
  call('failure');
  call('failure');
  call('success');
  call('failure');
  call('failure');
  assert.equal(breaker.state, 'closed');
  assert.equal(breaker.snapshot().failuresInRow, 2);
  call('failure');
  assert.equal(breaker.state, 'open');
  assert.deepEqual(changes, ['open']);
});

test('breaker: a failure ratio over the window opens it, but only with minRequests results', () => {
  const { breaker, call } = setup({ consecutiveFailures: 100, minRequests: 10, failureRatio: 0.5 });
  // Alternating results never make 2 failures in a row, and 50% is the ratio.
  for (let i = 0; i < 4; i++) {
    call('success');
    call('failure');
  }
  assert.equal(breaker.state, 'closed', '8 results are below minRequests');
  call('success');
  call('failure');
  assert.equal(breaker.state, 'open');
});

test('breaker: old results slide out of the ratio window', () => {
  const { clock, breaker, call } = setup({ consecutiveFailures: 100, minRequests: 4, failureRatio: 0.5, windowMs: 1000 });
  call('failure');
  call('failure');
  call('success');
  clock.advance(1500);
  // The two old failures are gone: 1 failure in 4 is below the ratio.
  call('success');
  call('success');
  call('success');
  call('failure');
  assert.equal(breaker.state, 'closed');
  assert.equal(breaker.snapshot().windowRequests, 4);
  assert.equal(breaker.snapshot().windowFailures, 1);
});

test('breaker: ignored results (client gone, refused before dispatch) count for nothing', () => {
  const { breaker, call } = setup();
  for (let i = 0; i < 20; i++) call('ignore');
  call('failure');
  call('failure');
  assert.equal(breaker.state, 'closed');
  assert.equal(breaker.snapshot().windowRequests, 2);
});

test('breaker: open refuses everything, with the time left open, until openMs has passed', () => {
  const { clock, breaker, trip, changes } = setup({ openMs: 100 });
  trip();
  assert.equal(breaker.admit(), REFUSED);
  assert.equal(breaker.openRemainingMs(), 100);
  clock.advance(60);
  assert.equal(breaker.admit(), REFUSED);
  assert.equal(breaker.openRemainingMs(), 40);
  clock.advance(40);
  // The timer moved it on without any traffic.
  assert.equal(breaker.state, 'half_open');
  assert.equal(breaker.openRemainingMs(), 0);
  assert.deepEqual(changes, ['open', 'half_open']);
});

test('breaker: half-open lets one probe through at a time, plus a fraction by chance', () => {
  const { clock, breaker, trip } = setup({ halfOpenRatio: 0.1 }, scripted(0.5, 0.05, 0.5));
  trip();
  clock.advance(100);
  const probe = breaker.admit();
  assert.notEqual(probe, REFUSED, 'no probe in flight: the first request probes');
  assert.equal(breaker.admit(), REFUSED, 'random 0.5 is above the 10% ratio');
  const lucky = breaker.admit();
  assert.notEqual(lucky, REFUSED, 'random 0.05 is below the ratio');
  assert.equal(breaker.admit(), REFUSED);
  assert.equal(breaker.snapshot().probesInFlight, 2);
  breaker.record(probe, 'ignore');
  breaker.record(lucky, 'ignore');
  assert.equal(breaker.snapshot().probesInFlight, 0);
  assert.notEqual(breaker.admit(), REFUSED, 'no probe in flight again: the next request probes');
});

test('breaker: closes only after closeAfterSuccesses probe successes in a row', () => {
  const { clock, breaker, trip, call, changes } = setup({ closeAfterSuccesses: 3 });
  trip();
  clock.advance(100);
  call('success');
  call('success');
  assert.equal(breaker.state, 'half_open');
  call('success');
  assert.equal(breaker.state, 'closed');
  assert.deepEqual(changes, ['open', 'half_open', 'closed']);
  assert.equal(breaker.snapshot().failuresInRow, 0);
});

test('breaker: regression: one lucky request admitted before opening cannot close it', () => {
  const { clock, breaker, call } = setup({ closeAfterSuccesses: 1 });
  const early = breaker.admit();
  for (let i = 0; i < 3; i++) call('failure');
  clock.advance(100);
  assert.equal(breaker.state, 'half_open');
  breaker.record(early, 'success');
  assert.equal(breaker.state, 'half_open');
  assert.equal(breaker.snapshot().probeSuccesses, 0);
});

test('breaker: a probe failure reopens it for twice as long, capped at maxOpenMs', () => {
  const { clock, breaker, trip, call } = setup({ openMs: 100, maxOpenMs: 300 });
  trip();
  const periods: number[] = [];
  for (let i = 0; i < 4; i++) {
    periods.push(breaker.snapshot().openMs);
    clock.advance(breaker.openRemainingMs());
    assert.equal(breaker.state, 'half_open');
    call('failure');
    assert.equal(breaker.state, 'open');
  }
  assert.deepEqual(periods, [100, 200, 300, 300]);
  assert.equal(breaker.snapshot().opens, 5);
});

test('breaker: tripping again soon after closing keeps the backoff; much later it starts over', () => {
  const { clock, breaker, trip, call } = setup({ openMs: 100, maxOpenMs: 800, closeAfterSuccesses: 1 });
  trip();
  clock.advance(100);
  call('failure'); // reopen for 200
  clock.advance(200);
  call('success'); // closed
  assert.equal(breaker.state, 'closed');
  trip();
  assert.equal(breaker.snapshot().openMs, 400, 'flapping upstream: the backoff continues');
  clock.advance(400);
  call('success');
  clock.advance(5000);
  trip();
  assert.equal(breaker.snapshot().openMs, 100, 'a long healthy spell resets the backoff');
});

test('breaker: results of requests admitted before it opened are ignored while open', () => {
  const { breaker, call } = setup();
  const inflight = [breaker.admit(), breaker.admit()];
  for (let i = 0; i < 3; i++) call('failure');
  const opens = breaker.snapshot().opens;
  for (const a of inflight) breaker.record(a, 'failure');
  assert.equal(breaker.snapshot().opens, opens, 'stale failures do not reopen or extend');
  assert.equal(breaker.state, 'open');
});

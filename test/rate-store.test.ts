/**
 * Client rate limits: GCRA against the local token bucket, and the shared
 * store's fast path, fail-open and health on the manual clock, with an
 * in-memory GCRA standing in for the remote side (the real Redis side is
 * tested in rate-store-redis.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock, seededRandom } from '../src/core/clock.js';
import { ClientRate } from '../src/core/rate/client-rate.js';
import { gcraStep, type RateVerdict } from '../src/core/rate/gcra.js';
import { SharedRate, type PendingRate, type RateStoreErrorKind } from '../src/core/rate/rate-store.js';
import { MemoryRemote } from './helpers/memory-remote.js';

test('GCRA decides exactly as the local token bucket, with the same remaining count and wait', () => {
  const random = seededRandom(42);
  for (const [perSecond, burst] of [[10, 5], [0.5, 1], [100, 200], [3, 1.5]] as const) {
    const bucket = new ClientRate(perSecond, burst);
    const tat = new Map<string, number>();
    let now = 0;
    for (let i = 0; i < 3000; i++) {
      now += random() * (2000 / perSecond / burst);
      const key = `k${Math.floor(random() * 3)}`;
      const step = gcraStep(tat.get(key) ?? null, now, perSecond, burst);
      tat.set(key, step.tat);
      const local = bucket.check(key, now);
      assert.equal(step.verdict.kind, local.kind, `rate ${perSecond}/${burst} step ${i}`);
      assert.equal(step.verdict.remaining, local.remaining, `rate ${perSecond}/${burst} step ${i}`);
      assert.ok(Math.abs(step.verdict.waitSeconds - local.waitSeconds) < 1e-6, `rate ${perSecond}/${burst} step ${i}`);
    }
  }
});

test('GCRA: a full burst at once, then one request per interval', () => {
  let tat: number | null = null;
  const take = (now: number) => {
    const s = gcraStep(tat, now, 10, 3);
    tat = s.tat;
    return s.verdict;
  };
  assert.deepEqual([take(0), take(0), take(0)].map((v) => [v.kind, v.remaining]), [['allowed', 2], ['allowed', 1], ['allowed', 0]]);
  const refused = take(0);
  assert.equal(refused.kind, 'limited');
  assert.ok(Math.abs(refused.waitSeconds - 0.1) < 1e-9);
  assert.equal(take(99.9).kind, 'limited');
  assert.equal(take(100).kind, 'allowed');
});

function setup(o: { instances?: number; timeoutMs?: number } = {}) {
  const clock = new ManualClock(0);
  const remote = new MemoryRemote(clock, 10, 4);
  const errors: RateStoreErrorKind[] = [];
  const store = new SharedRate({
    perSecond: 10,
    burst: 4,
    instances: o.instances ?? 2,
    timeoutMs: o.timeoutMs ?? 20,
    remote,
    clock,
    random: () => 0.5,
    onError: (kind) => errors.push(kind),
  });
  /** Takes one request; awaits the store when it must ask. */
  const take = async (key = 'tenant') => {
    const r = store.take(key);
    return r.kind === 'pending' ? { sync: false, v: await r.verdict } : { sync: true, v: r };
  };
  return { clock, remote, store, errors, take };
}

test('shared store: allowed requests ask the store; a client with nothing left is refused locally, without a call', async () => {
  const { remote, store, take } = setup();
  for (let i = 0; i < 4; i++) assert.equal((await take()).v.kind, 'allowed');
  assert.equal(remote.calls, 4);
  for (let i = 0; i < 10; i++) {
    const r = await take();
    assert.equal(r.sync, true);
    assert.equal(r.v.kind, 'limited');
    assert.ok(r.v.waitSeconds > 0 && r.v.waitSeconds <= 0.1);
  }
  assert.equal(remote.calls, 4);
  assert.equal(store.stats().cachedRefusals, 10);
  assert.equal((await take('other')).v.kind, 'allowed');
});

test('shared store: the cache holds a client only until its next request can conform', async () => {
  const { clock, remote, take } = setup();
  for (let i = 0; i < 4; i++) await take();
  clock.advance(99);
  assert.equal((await take()).sync, true);
  clock.advance(1);
  const r = await take();
  assert.equal(r.sync, false);
  assert.equal(r.v.kind, 'allowed');
  assert.equal(remote.calls, 5);
});

test('shared store: not connected → the local bucket decides at once, at the rate divided by the instances, counted', async () => {
  const { remote, store, errors, take } = setup({ instances: 2 });
  remote.ready = false;
  const verdicts = [];
  for (let i = 0; i < 6; i++) {
    const r = await take();
    assert.equal(r.sync, true);
    verdicts.push(r.v.kind);
  }
  // burst 4 over 2 instances: 2 each
  assert.deepEqual(verdicts, ['allowed', 'allowed', 'limited', 'limited', 'limited', 'limited']);
  assert.equal(remote.calls, 0);
  assert.equal(store.stats().errors.unavailable, 6);
  assert.equal(store.stats().state, 'down');
  assert.equal(errors.length, 6);
});

test('shared store: a store that does not answer within timeoutMs → the local bucket answers at timeoutMs, counted; the late answer is ignored', async () => {
  const { clock, remote, store, errors } = setup({ timeoutMs: 20 });
  remote.mode = 'hang';
  const r = store.take('tenant') as PendingRate;
  assert.equal(r.kind, 'pending');
  let got: RateVerdict | null = null;
  void r.verdict.then((v) => (got = v));
  clock.advance(19);
  await Promise.resolve();
  assert.equal(got, null);
  clock.advance(1);
  await r.verdict;
  assert.deepEqual(got, { kind: 'allowed', remaining: 1, waitSeconds: 0.2 });
  assert.deepEqual(errors, ['timeout']);
  remote.answerHeld();
  await Promise.resolve();
  assert.equal(store.stats().errors.timeout, 1);
  assert.equal(clock.pendingTimers(), 0);
});

test('shared store: a failed call → the local bucket, counted as error', async () => {
  const { remote, store, take } = setup();
  remote.mode = 'fail';
  const r = await take();
  assert.equal(r.sync, false);
  assert.equal(r.v.kind, 'allowed');
  assert.equal(store.stats().errors.error, 1);
});

test('shared store: three failures in a row suspend it for a backoff; then one request probes; a success clears it', async () => {
  const { clock, remote, store, take } = setup({ timeoutMs: 20 });
  remote.mode = 'fail';
  for (let i = 0; i < 3; i++) await take(`k${i}`);
  assert.equal(store.stats().state, 'down');
  // Suspended for 250 ms (x jitter 1.0 with random 0.5): answered locally, no calls.
  const callsBefore = remote.calls;
  assert.equal((await take('k9')).sync, true);
  clock.advance(249);
  assert.equal((await take('k9')).sync, true);
  assert.equal(remote.calls, callsBefore);
  clock.advance(1);
  // The probe fails: suspended again, for twice as long.
  assert.equal((await take('k9')).sync, false);
  clock.advance(499);
  assert.equal((await take('k8')).sync, true);
  clock.advance(1);
  remote.mode = 'answer';
  assert.equal((await take('k8')).sync, false);
  assert.equal(store.stats().state, 'up');
  // Cleared: one more failure does not suspend it.
  remote.mode = 'fail';
  await take('k7');
  assert.equal(store.stats().state, 'up');
});

test('shared store: the backoff grows to maxBackoffMs and no further', async () => {
  const clock = new ManualClock(0);
  const remote = new MemoryRemote(clock, 10, 4);
  remote.mode = 'fail';
  const store = new SharedRate({ perSecond: 10, burst: 4, instances: 1, timeoutMs: 20, remote, clock, random: () => 0.5, tripAfter: 1, minBackoffMs: 100, maxBackoffMs: 400 });
  await (store.take('k') as PendingRate).verdict;
  const suspensions: number[] = [];
  for (let round = 0; round < 4; round++) {
    let waited = 0;
    for (;;) {
      const r = store.take('probe');
      if (r.kind === 'pending') {
        await r.verdict;
        break;
      }
      clock.advance(10);
      waited += 10;
    }
    suspensions.push(waited);
  }
  assert.deepEqual(suspensions.slice(0, 4), [100, 200, 400, 400]);
});

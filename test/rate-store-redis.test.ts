/**
 * The shared rate store against a real redis-server on loopback: two
 * stores (two Sluice instances' worth) sharing one Redis hold a tenant to
 * its burst; Redis killed → every request fails open to the local bucket
 * (rate / instances) and is counted; Redis back → the quota is shared again.
 * Numbers are printed as test diagnostics for the issue note.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { systemClock } from '../src/core/clock.js';
import { SharedRate, type RateVerdict } from '../src/core/rate/rate-store.js';
import { RedisRate } from '../src/ratestore/redis.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { eventually } from './helpers/sluice.js';

// One token per 10 s: within a test the refill adds at most one request.
const PER_SECOND = 0.1;
const BURST = 10;
const INSTANCES = 2;

let redis: TestRedis;
before(async () => {
  redis = await startRedis();
});
after(async () => {
  await redis.kill();
});

interface Instance {
  readonly store: SharedRate;
  readonly remote: RedisRate;
}

async function instances(n: number, prefix: string): Promise<Instance[]> {
  const out: Instance[] = [];
  for (let i = 0; i < n; i++) {
    const remote = new RedisRate({ url: redis.url, prefix, perSecond: PER_SECOND, burst: BURST });
    remote.start();
    const store = new SharedRate({ perSecond: PER_SECOND, burst: BURST, instances: INSTANCES, timeoutMs: 20, remote, clock: systemClock, random: Math.random });
    out.push({ store, remote });
  }
  await eventually(() => out.every((x) => x.remote.ready), 'connected to redis');
  return out;
}

async function take(i: Instance, key: string): Promise<RateVerdict> {
  const r = i.store.take(key);
  return r.kind === 'pending' ? r.verdict : r;
}

/** `n` requests of `key`, alternating between the instances, `concurrent` at a time; returns how many were allowed. */
async function burst(xs: Instance[], key: string, n: number, concurrent = 1): Promise<number> {
  let ok = 0;
  for (let i = 0; i < n; i += concurrent) {
    const batch = Array.from({ length: Math.min(concurrent, n - i) }, (_, j) => take(xs[(i + j) % xs.length]!, key));
    for (const v of await Promise.all(batch)) if (v.kind === 'allowed') ok++;
  }
  return ok;
}

async function closeAll(xs: Instance[]): Promise<void> {
  await Promise.all(xs.map((x) => x.remote.close()));
}

test('two instances sharing one Redis hold a tenant to its burst (each alone would admit a burst of its own)', async (t) => {
  const xs = await instances(2, 'shared-burst:');
  try {
    const allowed = await burst(xs, 'tenant-a', 40, 4);
    t.diagnostic(`shared: ${allowed} of 40 allowed across 2 instances (burst ${BURST}); calls ${xs.map((x) => x.store.stats().calls).join('+')}, refused from the local cache ${xs.map((x) => x.store.stats().cachedRefusals).join('+')}`);
    assert.ok(allowed >= BURST && allowed <= BURST + 1, `allowed ${allowed}`);
    // Refused requests were answered from the over-limit cache, not by Redis.
    const calls = xs.reduce((n, x) => n + x.store.stats().calls, 0);
    assert.ok(calls < 40, `calls ${calls}`);
    assert.equal(xs.reduce((n, x) => n + x.store.stats().errors.timeout + x.store.stats().errors.error, 0), 0);
    // One key per client, expiring when its bucket would be full again.
    const ttl = Number(await redis.cli('PTTL', 'shared-burst:tenant-a'));
    assert.ok(ttl > 0 && ttl <= (BURST / PER_SECOND) * 1000, `ttl ${ttl}`);
  } finally {
    await closeAll(xs);
  }
});

test('the Lua script answers the same as the local bucket: remaining counts down, then a wait of one interval', async () => {
  const [x] = await instances(1, 'script:');
  try {
    const vs: RateVerdict[] = [];
    for (let i = 0; i < 12; i++) vs.push(await take(x!, 'tenant-b'));
    assert.deepEqual(vs.slice(0, 10).map((v) => v.remaining), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    assert.equal(vs[10]!.kind, 'limited');
    assert.ok(vs[10]!.waitSeconds > 9 && vs[10]!.waitSeconds <= 10, `wait ${vs[10]!.waitSeconds}`);
  } finally {
    await closeAll([x!]);
  }
});

test('a flushed script cache (NOSCRIPT) is reloaded on the fly: the request is answered by Redis', async () => {
  const [x] = await instances(1, 'noscript:');
  try {
    assert.equal(await redis.cli('SCRIPT', 'FLUSH'), 'OK');
    const v = await take(x!, 'tenant-c');
    assert.deepEqual([v.kind, v.remaining], ['allowed', BURST - 1]);
    assert.equal(x!.store.stats().errors.error, 0);
    assert.equal(await redis.cli('EXISTS', 'noscript:tenant-c'), '1');
  } finally {
    await closeAll([x!]);
  }
});

test('Redis slow (stalled for 300 ms): requests are answered by the local bucket at timeoutMs, counted as timeouts', async (t) => {
  const xs = await instances(1, 'slow:');
  try {
    const stall = redis.stall(300);
    await stall.sent;
    const t0 = performance.now();
    const vs = await Promise.all(Array.from({ length: 3 }, () => take(xs[0]!, 'tenant-s')));
    const waited = performance.now() - t0;
    t.diagnostic(`stalled Redis: 3 requests answered locally after ${waited.toFixed(0)} ms (timeoutMs 20)`);
    assert.deepEqual(vs.map((v) => v.kind), ['allowed', 'allowed', 'allowed']);
    assert.equal(xs[0]!.store.stats().errors.timeout, 3);
    // Three in a row: suspended for a backoff, so the next request does not wait at all.
    assert.equal(xs[0]!.store.take('tenant-s').kind, 'allowed');
    await stall.done;
  } finally {
    await closeAll(xs);
  }
});

test('Redis killed: requests fail open to the local bucket (burst / instances each), counted; Redis back: the quota is shared again', async (t) => {
  const xs = await instances(2, 'outage:');
  try {
    assert.ok((await burst(xs, 'before', 4)) === 4);
    await redis.kill();
    // Requests in flight or right after the kill time out or find the store down; either way each gets an answer.
    const t0 = performance.now();
    const down = await burst(xs, 'tenant-d', 40);
    const elapsed = performance.now() - t0;
    const errors = xs.map((x) => x.store.stats().errors);
    const failures = errors.reduce((n, e) => n + e.timeout + e.error + e.unavailable, 0);
    t.diagnostic(`outage: ${down} of 40 allowed by the local buckets (burst ${BURST} / ${INSTANCES} instances each) in ${elapsed.toFixed(0)} ms; errors ${JSON.stringify(errors)}`);
    assert.equal(down, 2 * Math.max(1, BURST / INSTANCES));
    assert.equal(failures, 40);
    assert.ok(xs.every((x) => x.store.stats().state === 'down'));

    await redis.start();
    await eventually(() => xs.every((x) => x.remote.ready), 'reconnected', 10_000);
    await eventually(() => xs.every((x) => x.store.stats().state === 'up'), 'store up again', 10_000);
    const shared = await burst(xs, 'tenant-e', 40, 4);
    t.diagnostic(`after the restart: ${shared} of 40 allowed across 2 instances`);
    assert.ok(shared >= BURST && shared <= BURST + 1, `allowed ${shared}`);
  } finally {
    await closeAll(xs);
  }
});

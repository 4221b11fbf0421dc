/**
 * Cluster-wide client quotas through the real proxy: two Sluice instances
 * sharing one real redis-server (loopback, its own port) hold a tenant to
 * its burst; Redis killed → both keep answering, each from its local bucket
 * at burst / instances, counted in sluice_rate_store_errors_total and
 * logged; Redis back → the quota is shared again. Counts are printed as
 * test diagnostics for the issue note. RateLimit headers carry the shared
 * quota's count.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { scrape } from './helpers/prom.js';
import { eventually, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const BURST = 6;

let up: TestUpstream;
let redis: TestRedis;
before(async () => {
  up = await startUpstream();
  redis = await startRedis();
});
after(async () => {
  await redis.kill();
  await up.close();
});

// perSecond 0.01: no token comes back while a test runs (at 0.1, 30 requests
// on a loaded machine took long enough for one: 7 admitted for a burst of 6).
// timeoutMs 500, not the default 20: a late answer rightly falls back to the
// local bucket, which is not what this test is about (rate-store-redis is).
function policy(prefix: string | null): string {
  const store = prefix === null ? '' : `
    store:
      redis: { url: ${redis.url}, timeoutMs: 500, prefix: "${prefix}" }
      instances: 2`;
  return `
log: { level: warn }
clients:
  key: { header: x-api-key }
  rate:
    perSecond: 0.01
    burst: ${BURST}${store}
  rateLimitHeaders: true
defaults:
  limit: { algorithm: fixed, initial: 100, min: 1, max: 100 }
routes:
  - name: api
    match: { pathPrefix: / }
    upstream: ${up.url}
`;
}

/** `n` requests of one tenant, alternating between the instances; counts answers by status. */
async function tenant(sluices: Running[], key: string, n: number): Promise<Record<number, number>> {
  const counts: Record<number, number> = {};
  for (let i = 0; i < n; i++) {
    const a = await send(`${sluices[i % sluices.length]!.url}/items`, { headers: { 'x-api-key': key } });
    counts[a.status] = (counts[a.status] ?? 0) + 1;
    if (a.status === 429) {
      assert.equal(a.json<{ reason: string }>().reason, 'client_rate');
      assert.ok(Number(a.headers['retry-after']) >= 1);
    }
  }
  return counts;
}

test('control: two instances with local buckets admit a burst each (what the shared store prevents)', async (t) => {
  const sluices = [await startSluice(policy(null)), await startSluice(policy(null))];
  try {
    const local = await tenant(sluices, 'tenant-0', 30);
    t.diagnostic(`local buckets: ${JSON.stringify(local)} for 30 requests over 2 instances (burst ${BURST} each)`);
    assert.equal(local[200], 2 * BURST);
    assert.deepEqual((await scrape(sluices[0]!.adminUrl)).all('sluice_rate_store_up'), []);
  } finally {
    await Promise.all(sluices.map((s) => s.close()));
  }
});

async function errorsTotal(s: Running): Promise<number> {
  const m = await scrape(s.adminUrl);
  return m.all('sluice_rate_store_errors_total').reduce((n, x) => n + x.value, 0);
}

test('two instances sharing one Redis hold a tenant to its burst; Redis down → fail open, counted; Redis back → shared again', async (t) => {
  const sluices = [await startSluice(policy('q1:')), await startSluice(policy('q1:'))];
  try {
    // Both connect in the background; until then they would answer from their local buckets.
    await eventually(async () => (await send(`${sluices[0]!.url}/warm`, { headers: { 'x-api-key': 'probe' } })).status === 200 && (await redis.cli('EXISTS', 'q1:probe')) === '1', 'instance 1 uses redis');
    await eventually(async () => (await send(`${sluices[1]!.url}/warm`, { headers: { 'x-api-key': 'probe2' } })).status === 200 && (await redis.cli('EXISTS', 'q1:probe2')) === '1', 'instance 2 uses redis');

    const shared = await tenant(sluices, 'tenant-1', 30);
    t.diagnostic(`shared quota: ${JSON.stringify(shared)} for 30 requests over 2 instances (burst ${BURST})`);
    assert.equal(shared[200], BURST);
    assert.equal(shared[429], 30 - BURST);
    assert.equal((await scrape(sluices[0]!.adminUrl)).value('sluice_rate_store_up'), 1);
    // The verdict from Redis rides on the response: what is left of the shared quota.
    const first = await send(`${sluices[1]!.url}/items`, { headers: { 'x-api-key': 'tenant-h' } });
    assert.equal(first.headers['ratelimit'], `"client";r=${BURST - 1};t=100`);
    const second = await send(`${sluices[0]!.url}/items`, { headers: { 'x-api-key': 'tenant-h' } });
    assert.equal(second.headers['ratelimit'], `"client";r=${BURST - 2};t=100`);

    await redis.kill();
    const down = await tenant(sluices, 'tenant-2', 30);
    const errors = await Promise.all(sluices.map(errorsTotal));
    t.diagnostic(`redis down: ${JSON.stringify(down)} for 30 requests (each instance's local bucket holds ${BURST} / 2); sluice_rate_store_errors_total ${errors.join(' + ')}`);
    assert.equal(down[200], BURST);
    assert.ok(errors.every((n) => n > 0), `errors ${errors.join(',')}`);
    for (const x of sluices) assert.equal((await scrape(x.adminUrl)).value('sluice_rate_store_up'), 0);
    assert.ok(sluices.every((s) => s.logs.some((l) => l['msg'] === 'client rate store failed: the local bucket decides (fail open)')));

    await redis.start();
    for (const [i, s] of sluices.entries()) {
      await eventually(async () => (await send(`${s.url}/warm`, { headers: { 'x-api-key': `back${i}` } })).status === 200 && (await redis.cli('EXISTS', `q1:back${i}`)) === '1', `instance ${i + 1} back on redis`, 10_000);
    }
    const again = await tenant(sluices, 'tenant-3', 30);
    t.diagnostic(`redis back: ${JSON.stringify(again)} for 30 requests over 2 instances`);
    assert.equal(again[200], BURST);
    for (const x of sluices) assert.equal((await scrape(x.adminUrl)).value('sluice_rate_store_up'), 1);
  } finally {
    await Promise.all(sluices.map((s) => s.close()));
  }
});

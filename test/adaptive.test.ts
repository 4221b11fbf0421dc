/**
 * Integration: the default adaptive limit against a real upstream on port 0
 * (8 workers; service time changed mid-test), observed through /admin/state
 * as an operator would. The load is a bounded closed loop of concurrent
 * clients that stops by itself.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { startCapacityUpstream } from '../src/demo/upstream.js';
import type { RouteState } from '../src/observability/state.js';
import { eventually, refusalOf, send, startSluice } from './helpers/sluice.js';
import { startUpstream } from './helpers/upstream.js';

/** `clients` loops, each sending one request after another until stopped, for at most `maxMs` or `maxRequests` each. */
function closedLoop(url: string, clients: number, maxMs: number, maxRequests: number) {
  const agent = new Agent({ connections: clients, keepAliveTimeout: 10_000 });
  const end = Date.now() + maxMs;
  let stopped = false;
  const statuses = new Map<number, number>();
  const loop = async () => {
    for (let i = 0; i < maxRequests && !stopped && Date.now() < end; i++) {
      try {
        const r = await request(url, { dispatcher: agent });
        await r.body.dump();
        statuses.set(r.statusCode, (statuses.get(r.statusCode) ?? 0) + 1);
      } catch {
        statuses.set(0, (statuses.get(0) ?? 0) + 1);
      }
    }
  };
  const done = Promise.all(Array.from({ length: clients }, loop));
  let closed: Promise<void> | null = null;
  return {
    statuses,
    stop() {
      stopped = true;
      closed ??= done.then(() => agent.close());
      return closed;
    },
  };
}

test('the default limit in /admin/state keeps the worker count when the upstream gets five times slower: the baseline follows the service time instead', async (t) => {
  const t0 = Date.now();
  const mark = (what: string, r: RouteState) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}: limit ${r.limit}, rtt ${r.rtt.recentMs?.toFixed(1)}/${r.rtt.baselineMs?.toFixed(1)} ms, ${r.state}`);
  const upstream = await startCapacityUpstream({ workers: 8, serviceTimeMs: 20 });
  const s = await startSluice(`
log: { level: warn }
lanes:
  - name: interactive
    queue: { maxLength: 100, maxWaitMs: 5000 }
defaults:
  limit: { initial: 4, min: 2, max: 100 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${upstream.url}
`);
  const load = closedLoop(`${s.url}/work`, 24, 120_000, 50_000);
  const route = async (): Promise<RouteState> => (await s.state()).routes[0]!;
  const baseline = (r: RouteState) => r.rtt.baselineMs ?? Number.NaN;
  try {
    const initial = await route();
    assert.equal(initial.algorithm, 'little');

    // Fast upstream: the limit grows from 4 to the upstream's 8 workers.
    let fast = initial;
    await eventually(async () => (fast = await route()).limit >= 8 && baseline(fast) < 60, 'the limit grows to the workers', 30_000);
    mark('grown', fast);
    assert.ok(baseline(fast) >= 15, `baseline RTT ${baseline(fast)} ms for a 20 ms service`);

    // Five times slower, same workers: the baseline rises to the new service time and the
    // limit is back at the workers (a collapse to a fraction of them is what this guards against).
    upstream.setServiceTime(100);
    let slow = fast;
    await eventually(async () => baseline((slow = await route())) >= 80 && slow.limit >= 8, 'the baseline follows the slower service and the limit stays', 30_000);
    mark('slow', slow);

    // Fast again: the baseline comes back down, the limit stays at the workers.
    upstream.setServiceTime(20);
    let again = slow;
    await eventually(async () => baseline((again = await route())) < 60 && again.limit >= 8, 'the baseline follows the service back', 30_000);
    mark('fast again', again);
    await load.stop();
    // Every request got an answer: served, or refused explicitly (while overloaded the
    // oldest waiters are left to time out with 503: adaptive LIFO); none is left behind.
    assert.deepEqual([...load.statuses.keys()].filter((k) => k !== 200 && k !== 503), []);
    const after = await route();
    assert.equal(after.inflight, 0);
    assert.equal(after.queued, 0);
  } finally {
    await load.stop();
    await s.close();
    await upstream.close();
  }
});

test('an overloaded route refuses batch that would have to wait at the door with 503 shed_batch and Retry-After >= the cooldown, and says so in /admin/state', async () => {
  const up = await startUpstream();
  const s = await startSluice(`
log: { level: warn }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
defaults:
  limit: { algorithm: fixed, initial: 1 }
  overload: { enterMs: 50, exitMs: 10, cooldownMs: 3000 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
  try {
    const route = async () => (await s.state()).routes[0]!;
    const batch = () => send(`${s.url}/x`, { headers: { 'x-priority': 'batch' } });
    assert.equal((await batch()).status, 200, 'batch is served while the route is normal');

    // One request holds the only slot; an interactive one queues behind it for over 50 ms.
    const held = send(`${s.url}/hold/h1`);
    await up.waitHolding(1);
    const queued = send(`${s.url}/hold/h2`);
    await eventually(async () => (await route()).lanes[0]!.oldestQueuedMs > 60, 'a queue wait above enterMs');
    up.release('h1');
    await up.waitHolding(1);
    up.release('h2');
    assert.equal((await held).status, 200);
    assert.equal((await queued).status, 200);
    // The window with that wait closes: the route is overloaded.
    await eventually(async () => (await route()).state === 'overloaded', 'the route becomes overloaded');

    // With the only slot taken, batch is refused at the door instead of queued.
    const full = send(`${s.url}/hold/h3`);
    await up.waitHolding(1);
    const a = await batch();
    up.release('h3');
    assert.equal((await full).status, 200);
    assert.equal(a.status, 503);
    const r = refusalOf(a);
    assert.equal(r.reason, 'shed_batch');
    assert.equal(r.error, 'overloaded');
    assert.ok(r.retryAfter >= 3 && r.retryAfter === r.retryAfterSeconds, `Retry-After ${r.retryAfter}`);
    // Interactive traffic is still served.
    assert.equal((await send(`${s.url}/x`)).status, 200);
    const st = await route();
    assert.equal(st.inflight, 0);
    assert.ok(st.queueWaitP90Ms >= 0);
  } finally {
    up.releaseAll();
    await s.close();
    await up.close();
  }
});

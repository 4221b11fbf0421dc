import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { backlogSeconds, backlogVerdict } from '../src/observability/readiness.js';
import { scrape } from './helpers/prom.js';
import { eventually, send, startSluice, type Answer, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

test('backlog = queued / completion rate; unbounded when requests wait and nothing completes', () => {
  assert.equal(backlogSeconds(0, 0), 0);
  assert.equal(backlogSeconds(0, 50), 0);
  assert.equal(backlogSeconds(30, 10), 3);
  assert.equal(backlogSeconds(1, 0), null);
});

test('the verdict names every route over the budget, and only those', () => {
  const routes = [
    { name: 'a', queued: 5, completionsPerSecond: 10, backlogSeconds: 0.5 },
    { name: 'b', queued: 200, completionsPerSecond: 10, backlogSeconds: 20 },
    { name: 'c', queued: 3, completionsPerSecond: 0, backlogSeconds: null },
    { name: 'd', queued: 100, completionsPerSecond: 10, backlogSeconds: 10 },
  ];
  assert.deepEqual(backlogVerdict(routes, 10), {
    reason: 'backlog',
    maxBacklogSeconds: 10,
    routes: [
      { route: 'b', queued: 200, completionsPerSecond: 10, backlogSeconds: 20 },
      { route: 'c', queued: 3, completionsPerSecond: 0, backlogSeconds: null },
    ],
  });
  assert.equal(backlogVerdict([routes[0]!, routes[3]!], 10), null, 'exactly at the budget is still ready');
});

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

const policy = (maxBacklogSeconds: number) => `
log: { level: warn }
readiness: { maxBacklogSeconds: ${maxBacklogSeconds} }
lanes:
  - name: interactive
    queue: { maxLength: 100, maxWaitMs: 60000 }
defaults:
  limit: { algorithm: fixed, initial: 1 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`;

async function readyz(s: Running): Promise<Answer> {
  return send(`${s.adminUrl}/readyz`);
}

async function queueUp(s: Running, n: number): Promise<Promise<Answer>[]> {
  const before = (await s.state()).routes[0]!.queued;
  const waiting = Array.from({ length: n }, () => send(`${s.url}/x`));
  await eventually(async () => (await s.state()).routes[0]!.queued === before + n, `${n} more queued`);
  return waiting;
}

test('/readyz flips to 503 when the backlog would take longer than maxBacklogSeconds to drain, and back', async () => {
  // The manual clock makes the completion rate exact: 10 requests, one every 100 ms.
  const clock = new ManualClock(0);
  const s = await startSluice(policy(1), { clock });
  try {
    for (let i = 0; i < 10; i++) {
      clock.advance(100);
      assert.equal((await send(`${s.url}/x`)).status, 200);
    }
    const rate = (await s.state()).routes[0]!.completionsPerSecond;
    assert.ok(rate >= 5 && rate <= 10, `completion rate ${rate}/s`);
    assert.equal((await readyz(s)).status, 200);

    const held = send(`${s.url}/hold/r1`);
    await up.waitHolding(1);
    const few = await queueUp(s, 2); // 2 / rate <= 0.4 s
    assert.equal((await readyz(s)).status, 200, 'a short backlog is fine');

    const many = await queueUp(s, 18); // 20 / rate >= 2 s
    const notReady = await readyz(s);
    assert.equal(notReady.status, 503);
    const body = notReady.json<{ status: string; reason: string; maxBacklogSeconds: number; routes: { route: string; queued: number; backlogSeconds: number }[] }>();
    assert.equal(body.status, 'not_ready');
    assert.equal(body.reason, 'backlog');
    assert.equal(body.maxBacklogSeconds, 1);
    assert.equal(body.routes.length, 1);
    assert.equal(body.routes[0]!.route, 'main');
    assert.equal(body.routes[0]!.queued, 20);
    assert.ok(body.routes[0]!.backlogSeconds > 1);
    assert.ok((await scrape(s.adminUrl)).value('sluice_backlog_seconds', { route: 'main' }) > 1);

    up.release('r1');
    assert.equal((await held).status, 200);
    for (const a of await Promise.all([...few, ...many])) assert.equal(a.status, 200);
    assert.equal((await readyz(s)).status, 200, 'ready again once the queue drained');
    assert.equal((await readyz(s)).json<{ status: string }>().status, 'ready');
  } finally {
    up.releaseAll();
    await s.close();
  }
});

test('a queue that is not draining at all (nothing completes) makes the instance not ready', async () => {
  const clock = new ManualClock(0);
  const s = await startSluice(policy(10), { clock });
  try {
    const held = send(`${s.url}/hold/r2`);
    await up.waitHolding(1);
    assert.equal((await readyz(s)).status, 200, 'in flight without a queue is no backlog');
    const waiting = await queueUp(s, 1);
    const a = await readyz(s);
    assert.equal(a.status, 503);
    const route = a.json<{ routes: { backlogSeconds: number | null; completionsPerSecond: number }[] }>().routes[0]!;
    assert.equal(route.backlogSeconds, null);
    assert.equal(route.completionsPerSecond, 0);
    assert.equal((await scrape(s.adminUrl)).value('sluice_backlog_seconds', { route: 'main' }), Infinity);
    up.release('r2');
    await held;
    await Promise.all(waiting);
    assert.equal((await readyz(s)).status, 200);
  } finally {
    up.releaseAll();
    await s.close();
  }
});

test('/healthz answers 200 while the proxy port is saturated', async () => {
  const s = await startSluice(policy(1));
  try {
    const held = send(`${s.url}/hold/r3`);
    await up.waitHolding(1);
    const waiting = await queueUp(s, 5);
    const h = await send(`${s.adminUrl}/healthz`);
    assert.equal(h.status, 200);
    assert.deepEqual(h.json(), { status: 'ok' });
    up.release('r3');
    await held;
    await Promise.all(waiting);
  } finally {
    up.releaseAll();
    await s.close();
  }
});

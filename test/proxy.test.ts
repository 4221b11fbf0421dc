import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import { eventually, rawRequest, refusalOf, send, startSluice, type Running } from './helpers/sluice.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

/** A policy with one route `/` to the test upstream, with a small limit and short queues. */
function policy(
  o: { limit?: number; maxLength?: number; maxWaitMs?: number; batchMaxShare?: number; batchMinShare?: number; clientMaxShare?: number; rate?: string; extra?: string } = {},
): string {
  return `
log: { level: warn }
lanes:
  - name: interactive
    queue: { maxLength: ${o.maxLength ?? 10}, maxWaitMs: ${o.maxWaitMs ?? 2000} }
  - name: batch
    maxShare: ${o.batchMaxShare ?? 1}
    minShare: ${o.batchMinShare ?? 0}
    queue: { maxLength: ${o.maxLength ?? 10}, maxWaitMs: ${o.maxWaitMs ?? 2000} }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
clients:
  key: { header: x-api-key }
  maxShare: ${o.clientMaxShare ?? 1}
${o.rate ? `  rate: ${o.rate}` : ''}
retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0.2 }
defaults:
  limit: { algorithm: fixed, initial: ${o.limit ?? 1}, min: 1, max: 100 }
  timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 2000 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
${o.extra ?? ''}`;
}

async function withSluice(yaml: string, fn: (s: Running) => Promise<void>): Promise<void> {
  const s = await startSluice(yaml);
  try {
    await fn(s);
  } finally {
    up.releaseAll();
    await s.close();
  }
}

async function queuedCount(s: Running): Promise<number> {
  return (await s.state()).routes[0]!.queued;
}

test('forwards method, path, query, headers and a streamed body both ways', () =>
  withSluice(policy({ limit: 4 }), async (s) => {
    const body = 'x'.repeat(256 * 1024);
    const a = await send(`${s.url}/echo/items?id=7&q=a%20b`, { method: 'POST', headers: { 'x-custom': 'hello', 'content-type': 'text/plain' }, body });
    assert.equal(a.status, 200);
    assert.equal(a.headers['x-upstream'], 'yes');
    const echo = a.json<{ method: string; url: string; headers: Record<string, string>; bytes: number; body: string }>();
    assert.equal(echo.method, 'POST');
    assert.equal(echo.url, '/echo/items?id=7&q=a%20b');
    assert.equal(echo.headers['x-custom'], 'hello');
    assert.equal(echo.bytes, body.length);
    assert.equal(echo.body, body);
  }));

test('x-request-id is forwarded upstream, generated when absent, and echoed to the client', () =>
  withSluice(policy({ limit: 4 }), async (s) => {
    const given = await send(`${s.url}/echo`, { headers: { 'x-request-id': 'abc-123' } });
    assert.equal(given.json<{ headers: Record<string, string> }>().headers['x-request-id'], 'abc-123');
    assert.equal(given.headers['x-request-id'], 'abc-123');
    const made = await send(`${s.url}/echo`);
    const id = made.json<{ headers: Record<string, string> }>().headers['x-request-id'];
    assert.match(id ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(made.headers['x-request-id'], id);
  }));

test('a path no route matches gets 404 JSON and is not forwarded', async () => {
  const yaml = policy().replace('pathPrefix: /', 'pathPrefix: /api');
  await withSluice(yaml, async (s) => {
    const before = up.seen.length;
    const a = await send(`${s.url}/other`);
    assert.equal(a.status, 404);
    assert.deepEqual(a.json(), { error: 'not_found', reason: 'no_route' });
    assert.equal(up.seen.length, before);
  });
});

test('ambiguous paths (dot segments, encoded slashes) get 400, never a guess', () =>
  withSluice(policy(), async (s) => {
    const before = up.seen.length;
    // Raw requests: an HTTP client library would normalise these paths before sending.
    for (const p of ['/api/../admin', '/api/%2e%2e/admin', '/api%2Fadmin', '//evil', '/a/./b']) {
      const a = await rawRequest(s.url, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.match(a, /^HTTP\/1\.1 400 /, p);
      assert.match(a, /"reason":"bad_path"/, p);
    }
    assert.equal(up.seen.length, before);
  }));

test('at the limit a request queues, then is admitted when a slot frees', () =>
  withSluice(policy({ limit: 1 }), async (s) => {
    const first = send(`${s.url}/hold/q1`);
    await up.waitHolding(1);
    const second = send(`${s.url}/hold/q2`);
    await eventually(async () => (await queuedCount(s)) === 1, 'second request queued');
    assert.equal(up.holding(), 1);
    up.release('q1');
    assert.equal((await first).status, 200);
    await up.waitHolding(1);
    up.release('q2');
    const a = await second;
    assert.equal(a.status, 200);
    assert.deepEqual(a.json(), { id: 'q2' });
  }));

test('a full queue answers 503 queue_full with an integer Retry-After and the JSON body', () =>
  withSluice(policy({ limit: 1, maxLength: 1 }), async (s) => {
    const held = send(`${s.url}/hold/f1`);
    await up.waitHolding(1);
    const queued = send(`${s.url}/hold/f2`);
    await eventually(async () => (await queuedCount(s)) === 1, 'one queued');
    const a = await send(`${s.url}/hold/f3`);
    assert.equal(a.status, 503);
    const r = refusalOf(a);
    assert.equal(r.reason, 'queue_full');
    assert.equal(r.error, 'overloaded');
    assert.ok(Number.isInteger(r.retryAfter) && r.retryAfter >= 1, `Retry-After ${a.headers['retry-after']}`);
    assert.equal(r.retryAfterSeconds, r.retryAfter);
    assert.equal(a.headers['content-type'], 'application/json; charset=utf-8');
    assert.ok(!up.seen.includes('/hold/f3'));
    up.releaseAll();
    await held;
    up.releaseAll();
    await eventually(() => up.holding() > 0 || up.seen.includes('/hold/f2'), 'f2 forwarded');
    up.releaseAll();
    assert.equal((await queued).status, 200);
  }));

test('a request that waits longer than maxWaitMs gets 503 queue_timeout and is never forwarded', () =>
  withSluice(policy({ limit: 1, maxWaitMs: 100 }), async (s) => {
    const held = send(`${s.url}/hold/t1`);
    await up.waitHolding(1);
    const a = await send(`${s.url}/hold/t2`);
    assert.equal(a.status, 503);
    const r = refusalOf(a);
    assert.equal(r.reason, 'queue_timeout');
    assert.ok(Number.isInteger(r.retryAfter) && r.retryAfter >= 1);
    up.releaseAll();
    await held;
    assert.ok(!up.seen.includes('/hold/t2'));
    const st = await s.state();
    assert.equal(st.routes[0]!.inflight, 0);
    assert.equal(st.routes[0]!.queued, 0);
  }));

test('interactive is served before batch when a slot frees', () =>
  withSluice(policy({ limit: 1 }), async (s) => {
    const held = send(`${s.url}/hold/p0`);
    await up.waitHolding(1);
    const batch = send(`${s.url}/hold/p-batch`, { headers: { 'x-priority': 'batch' } });
    await eventually(async () => (await queuedCount(s)) === 1, 'batch queued');
    const inter = send(`${s.url}/hold/p-inter`);
    await eventually(async () => (await queuedCount(s)) === 2, 'interactive queued');
    up.release('p0');
    await held;
    await up.waitHolding(1);
    assert.ok(up.seen.includes('/hold/p-inter'));
    assert.ok(!up.seen.includes('/hold/p-batch'));
    up.release('p-inter');
    await inter;
    await up.waitHolding(1);
    up.release('p-batch');
    assert.equal((await batch).status, 200);
  }));

test('batch never exceeds maxShare even with free slots; interactive still gets in', () =>
  withSluice(policy({ limit: 4, batchMaxShare: 0.5 }), async (s) => {
    const b = [1, 2, 3].map((i) => send(`${s.url}/hold/b${i}`, { headers: { 'x-priority': 'batch' } }));
    await up.waitHolding(2);
    await eventually(async () => (await queuedCount(s)) === 1, 'third batch queued');
    const st = await s.state();
    assert.equal(st.routes[0]!.lanes[1]!.inflight, 2);
    const i = send(`${s.url}/hold/i1`);
    await up.waitHolding(3);
    up.releaseAll();
    await i;
    await eventually(() => up.seen.includes('/hold/b3'), 'b3 forwarded after a batch slot freed');
    up.releaseAll();
    for (const p of b) assert.equal((await p).status, 200);
  }));

test('a starved lane below minShare goes first', () =>
  withSluice(policy({ limit: 2, batchMinShare: 0.5 }), async (s) => {
    const i1 = send(`${s.url}/hold/m-i1`);
    const i2 = send(`${s.url}/hold/m-i2`);
    await up.waitHolding(2);
    const b = send(`${s.url}/hold/m-b`, { headers: { 'x-priority': 'batch' } });
    await eventually(async () => (await queuedCount(s)) === 1, 'batch queued');
    const i3 = send(`${s.url}/hold/m-i3`);
    await eventually(async () => (await queuedCount(s)) === 2, 'i3 queued');
    up.release('m-i1');
    await i1;
    await eventually(() => up.seen.includes('/hold/m-b'), 'batch forwarded first');
    assert.ok(!up.seen.includes('/hold/m-i3'));
    up.releaseAll();
    await Promise.all([i2, b]);
    await eventually(() => up.holding() > 0, 'i3 forwarded');
    up.releaseAll();
    assert.equal((await i3).status, 200);
  }));

test('429 client_share: a client over its share while another waits; the other client is served', async () => {
  const yaml = policy({ limit: 2, clientMaxShare: 0.5 });
  await withSluice(yaml, async (s) => {
    const a1 = send(`${s.url}/hold/s-a1`, { headers: { 'x-api-key': 'A' } });
    const b1 = send(`${s.url}/hold/s-b1`, { headers: { 'x-api-key': 'B' } });
    await up.waitHolding(2);
    const a2 = await send(`${s.url}/hold/s-a2`, { headers: { 'x-api-key': 'A' } });
    assert.equal(a2.status, 429);
    const r = refusalOf(a2);
    assert.equal(r.reason, 'client_share');
    assert.equal(r.error, 'too_many_requests');
    assert.ok(Number.isInteger(r.retryAfter) && r.retryAfter >= 1);
    // Client C holds nothing: it may wait.
    const c1 = send(`${s.url}/hold/s-c1`, { headers: { 'x-api-key': 'C' } });
    await eventually(async () => (await queuedCount(s)) === 1, 'C queued');
    up.releaseAll();
    await Promise.all([a1, b1]);
    await eventually(() => up.seen.includes('/hold/s-c1'), 'C forwarded');
    up.releaseAll();
    assert.equal((await c1).status, 200);
  });
});

test('429 client_rate: the token bucket refuses with Retry-After from the refill time', async () => {
  const yaml = policy({ limit: 10, rate: '{ perSecond: 0.2, burst: 2 }' });
  await withSluice(yaml, async (s) => {
    const h = { 'x-api-key': 'R' };
    assert.equal((await send(`${s.url}/x`, { headers: h })).status, 200);
    assert.equal((await send(`${s.url}/x`, { headers: h })).status, 200);
    const a = await send(`${s.url}/x`, { headers: h });
    assert.equal(a.status, 429);
    const r = refusalOf(a);
    assert.equal(r.reason, 'client_rate');
    // One token at 0.2/s takes about 5 s: clamped and jittered by ±20%.
    assert.ok(r.retryAfter >= 4 && r.retryAfter <= 6, `Retry-After ${r.retryAfter}`);
    // Another client is unaffected.
    assert.equal((await send(`${s.url}/x`, { headers: { 'x-api-key': 'other' } })).status, 200);
  });
});

test('a client that disconnects while queued leaves the queue and never reaches the upstream', () =>
  withSluice(policy({ limit: 1 }), async (s) => {
    const held = send(`${s.url}/hold/a1`);
    await up.waitHolding(1);
    const ac = new AbortController();
    const gone = send(`${s.url}/hold/a-gone`, { signal: ac.signal }).catch((e: Error) => e);
    await eventually(async () => (await queuedCount(s)) === 1, 'queued');
    ac.abort();
    assert.ok((await gone) instanceof Error);
    await eventually(async () => (await queuedCount(s)) === 0, 'queue emptied on disconnect');
    up.releaseAll();
    await held;
    const next = await send(`${s.url}/x`);
    assert.equal(next.status, 200);
    assert.ok(!up.seen.includes('/hold/a-gone'));
  }));

test('a client that disconnects while in flight aborts the upstream request and frees its slot', () =>
  withSluice(policy({ limit: 1 }), async (s) => {
    const ac = new AbortController();
    const gone = send(`${s.url}/hold/g1`, { signal: ac.signal }).catch((e: Error) => e);
    await up.waitHolding(1);
    ac.abort();
    await gone;
    await eventually(() => up.holding() === 0, 'upstream saw the abort');
    await eventually(async () => (await s.state()).routes[0]!.inflight === 0, 'slot freed');
  }));

test('upstream failures: refused -> 502, reset -> 502, headers timeout -> 504, all JSON', async () => {
  const yaml = policy({ limit: 4 })
    .replace('headersMs: 2000', 'headersMs: 150')
    .replace(/routes:[\s\S]*$/, `routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
  - name: dead
    match: { pathPrefix: /dead }
    upstream: http://127.0.0.1:1
`);
  await withSluice(yaml, async (s) => {
    const refused = await send(`${s.url}/dead/x`);
    assert.equal(refused.status, 502);
    assert.equal(refused.json<{ reason: string }>().reason, 'upstream_refused');
    const reset = await send(`${s.url}/reset`);
    assert.equal(reset.status, 502);
    assert.equal(reset.json<{ reason: string }>().reason, 'upstream_reset');
    const slow = await send(`${s.url}/delay/1000`);
    assert.equal(slow.status, 504);
    assert.equal(slow.json<{ reason: string }>().reason, 'upstream_timeout');
    const st = await s.state();
    for (const r of st.routes) assert.equal(r.inflight, 0, r.name);
  });
});

test('upstream overload statuses pass through to the client unchanged', () =>
  withSluice(policy({ limit: 4 }), async (s) => {
    const a = await send(`${s.url}/status/503`);
    assert.equal(a.status, 503);
    assert.deepEqual(a.json(), { upstream: true });
  }));

test('after a burst mixing client aborts, upstream resets and timeouts, nothing stays in flight or queued', async () => {
  const yaml = policy({ limit: 3, maxLength: 20, maxWaitMs: 300 }).replace('headersMs: 2000', 'headersMs: 100');
  await withSluice(yaml, async (s) => {
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      const kind = i % 5;
      if (kind === 0) jobs.push(send(`${s.url}/reset`).catch(() => null));
      else if (kind === 1) jobs.push(send(`${s.url}/delay/400`).catch(() => null));
      else if (kind === 2) {
        const ac = new AbortController();
        jobs.push(send(`${s.url}/delay/50`, { signal: ac.signal }).catch(() => null));
        setTimeout(() => ac.abort(), 5 + (i % 7) * 10).unref();
      } else if (kind === 3) jobs.push(send(`${s.url}/delay/10`, { headers: { 'x-priority': 'batch' } }).catch(() => null));
      else jobs.push(send(`${s.url}/x`).catch(() => null));
    }
    await Promise.all(jobs);
    await eventually(async () => {
      const r = (await s.state()).routes[0]!;
      return r.inflight === 0 && r.queued === 0 && r.lanes.every((l) => l.inflight === 0 && l.queued === 0);
    }, 'all settled');
  });
});

test('refusals are logged at warn with route, lane and reason', () =>
  withSluice(policy({ limit: 1, maxLength: 0 }), async (s) => {
    const held = send(`${s.url}/hold/l1`);
    await up.waitHolding(1);
    const a = await send(`${s.url}/x`, { headers: { 'x-request-id': 'refused-1' } });
    assert.equal(a.status, 503);
    const line = s.logs.find((l) => l.msg === 'request refused');
    assert.ok(line, 'a refusal log line');
    assert.equal(line.level, 40);
    assert.equal(line.route, 'main');
    assert.equal(line.lane, 'interactive');
    assert.equal(line.reason, 'queue_full');
    assert.equal(line.requestId, 'refused-1');
    up.releaseAll();
    await held;
  }));

/**
 * Upstream faults: each ends in a defined client-visible result, one
 * onUpstreamError event (the metric), and exact accounting.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Pool } from 'undici';
import { recordEvents, type Recorded } from './helpers/events.js';
import { scrape } from './helpers/prom.js';
import { eventually, rawExchange, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

function policy(): string {
  return `
log: { level: error }
defaults:
  limit: { algorithm: fixed, initial: 4, min: 1, max: 100 }
  timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 250 }
  circuitBreaker: { enabled: false }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`;
}

async function withSluice(fn: (s: Running, rec: Recorded) => Promise<void>): Promise<void> {
  const rec = recordEvents();
  const s = await startSluice(policy(), { events: rec.events });
  try {
    await fn(s, rec);
    // Exact accounting: every admitted request settled exactly once, nothing is left held.
    await eventually(() => rec.settled.length === rec.admitted, 'every admitted request settled');
    const r = (await s.state()).routes[0]!;
    assert.equal(r.inflight, 0);
    assert.equal(r.queued, 0);
    assert.equal(rec.settled.length, rec.admitted);
  } finally {
    up.releaseAll();
    await s.close();
  }
}

const GET = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
const LAST_CHUNK = '\r\n0\r\n\r\n';

function headerOf(raw: string, name: string): string | undefined {
  const head = raw.split('\r\n\r\n')[0] ?? '';
  const line = head.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name}:`));
  return line?.slice(name.length + 1).trim();
}

test('an upstream body that never sends a byte: 504 upstream_body_timeout, none of its headers leak', () =>
  withSluice(async (s, rec) => {
    const a = await send(`${s.url}/stall`);
    assert.equal(a.status, 504);
    assert.deepEqual(a.json(), { error: 'gateway_timeout', reason: 'upstream_body_timeout' });
    // The upstream said content-length 100 and keep-alive timeout=5: neither belongs to this answer.
    assert.equal(a.headers['content-length'], String(Buffer.byteLength(a.text)));
    assert.notEqual(a.headers['keep-alive'], 'timeout=5');
    assert.deepEqual(rec.upstreamErrors, ['upstream_body_timeout']);
    await eventually(() => rec.settled.length === 1, 'settled');
    assert.deepEqual(rec.settled, ['dropped']);
  }));

test('an upstream body that stalls midway: the client gets what came, then the connection closes without the last chunk', () =>
  withSluice(async (s, rec) => {
    const r = await rawExchange(s.url, GET('/trickle'), { timeoutMs: 4000 });
    assert.equal(r.closedByServer, true, 'the connection is closed, not left hanging');
    assert.match(r.data, /^HTTP\/1\.1 200 /);
    assert.match(r.data, /first chunk/);
    assert.ok(!r.data.endsWith(LAST_CHUNK), 'a cut body must not look complete');
    await eventually(() => rec.upstreamErrors.length === 1, 'fault reported');
    assert.deepEqual(rec.upstreamErrors, ['upstream_body_timeout']);
    await eventually(() => rec.settled.length === 1, 'settled');
    assert.deepEqual(rec.settled, ['dropped'], 'a body timeout tells the limit to back off');
  }));

test('an upstream reset mid-body: a content-length response arrives short and the connection closes', () =>
  withSluice(async (s, rec) => {
    const r = await rawExchange(s.url, GET('/reset-mid?cl=1'), { timeoutMs: 4000 });
    assert.equal(r.closedByServer, true);
    assert.equal(headerOf(r.data, 'content-length'), '1000');
    const body = r.data.slice(r.data.indexOf('\r\n\r\n') + 4);
    assert.equal(body, 'partial body\n');
    await eventually(() => rec.upstreamErrors.length === 1, 'fault reported');
    assert.deepEqual(rec.upstreamErrors, ['upstream_body_reset']);
    await eventually(() => rec.settled.length === 1, 'settled');
    assert.deepEqual(rec.settled, ['ignore']);
  }));

test('an upstream reset mid-body: a chunked response ends without its last chunk', () =>
  withSluice(async (s, rec) => {
    const r = await rawExchange(s.url, GET('/reset-mid'), { timeoutMs: 4000 });
    assert.equal(r.closedByServer, true);
    assert.equal(headerOf(r.data, 'transfer-encoding'), 'chunked');
    assert.match(r.data, /partial body/);
    assert.ok(!r.data.endsWith(LAST_CHUNK));
    await eventually(() => rec.upstreamErrors.length === 1, 'fault reported');
    assert.deepEqual(rec.upstreamErrors, ['upstream_body_reset']);
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_upstream_errors_total', { route: 'main', kind: 'body_reset' }), 1);
  }));

test('a slow but steady body whose pauses stay under bodyMs arrives whole', () =>
  withSluice(async (s, rec) => {
    // 6 chunks 100 ms apart: 600 ms in all, far beyond bodyMs (250), but never silent that long.
    const a = await send(`${s.url}/drip/6/100`);
    assert.equal(a.status, 200);
    assert.equal(a.text.split('\n').filter(Boolean).length, 7);
    assert.match(a.text, /end\n$/);
    assert.deepEqual(rec.upstreamErrors, []);
    await eventually(() => rec.settled.length === 1, 'settled');
    assert.deepEqual(rec.settled, ['success']);
  }));

test('an upstream that answers something that is not HTTP: 502 bad_upstream_response', () =>
  withSluice(async (s, rec) => {
    const a = await send(`${s.url}/garbage`);
    assert.equal(a.status, 502);
    assert.deepEqual(a.json(), { error: 'bad_gateway', reason: 'bad_upstream_response' });
    assert.deepEqual(rec.upstreamErrors, ['bad_upstream_response']);
  }));

test('connection refused, reset before headers and headers timeout are each reported once', async () => {
  const dead = `
log: { level: error }
defaults:
  limit: { algorithm: fixed, initial: 4 }
  timeouts: { connectMs: 1000, headersMs: 150, bodyMs: 1000 }
  circuitBreaker: { enabled: false }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
  - name: dead
    match: { pathPrefix: /dead }
    upstream: http://127.0.0.1:1
`;
  const rec = recordEvents();
  const s = await startSluice(dead, { events: rec.events });
  try {
    assert.equal((await send(`${s.url}/dead/x`)).status, 502);
    assert.equal((await send(`${s.url}/reset`)).status, 502);
    // 150 ms against 3 s: a loaded machine may starve the timer for a while, not for seconds.
    assert.equal((await send(`${s.url}/delay/3000`)).status, 504);
    assert.deepEqual(rec.upstreamErrors, ['upstream_refused', 'upstream_reset', 'upstream_timeout']);
    await eventually(() => rec.settled.length === 3, 'all settled');
    assert.deepEqual(rec.settled, ['ignore', 'ignore', 'dropped']);
    for (const r of (await s.state()).routes) assert.equal(r.inflight, 0, r.name);
  } finally {
    await s.close();
  }
});

test('an upstream that closes its keep-alive connections after every response: every request still succeeds', () =>
  withSluice(async (s, rec) => {
    const client = new Pool(s.url, { connections: 1 });
    try {
      for (let i = 0; i < 50; i++) {
        const r = await client.request({ path: i % 2 === 0 ? '/close-after' : '/close-after?announce=1', method: 'GET' });
        assert.equal(r.statusCode, 200, `request ${i}`);
        assert.deepEqual(await r.body.json(), { ok: true });
      }
    } finally {
      await client.close();
    }
    assert.deepEqual(rec.upstreamErrors, []);
  }));

test("an upstream's `connection: close` does not close the client's keep-alive connection", () =>
  withSluice(async (s) => {
    const twice = GET('/close-after?announce=1') + GET('/close-after?announce=1');
    const r = await rawExchange(s.url, twice, {
      timeoutMs: 4000,
      until: (d) => d.split('{"ok":true}').length === 3,
    });
    assert.equal(r.closedByServer, false, 'the client connection stays open');
    assert.equal(r.data.match(/HTTP\/1\.1 200 /g)?.length, 2);
    assert.doesNotMatch(r.data, /connection: close/i);
  }));

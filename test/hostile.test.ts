/**
 * Hostile and malformed input over raw sockets: no crash, no leak, a 4xx
 * where the client is at fault, and nothing forwarded that should not be.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { recordEvents, type Recorded } from './helpers/events.js';
import { scrape } from './helpers/prom.js';
import { eventually, rawExchange, refusalOf, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

function policy(o: { limit?: number; clientMaxShare?: number; rate?: string } = {}): string {
  return `
log: { level: error }
server: { headersTimeoutMs: 300, requestTimeoutMs: 800, maxHeaderBytes: 8192 }
lanes:
  - name: interactive
    queue: { maxLength: 10, maxWaitMs: 2000 }
  - name: batch
    queue: { maxLength: 10, maxWaitMs: 2000 }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
clients:
  key: { header: x-api-key }
  maxShare: ${o.clientMaxShare ?? 1}
${o.rate ? `  rate: ${o.rate}` : ''}
defaults:
  limit: { algorithm: fixed, initial: ${o.limit ?? 10}, min: 1, max: 100 }
  deadline: { header: x-request-timeout-ms }
routes:
  - name: orders
    match: { pathPrefix: /api/orders }
    upstream: ${up.url}
  - name: default
    match: { pathPrefix: / }
    upstream: ${up.url}
`;
}

/** Runs fn, then checks the instance is unharmed: nothing held, no connection left open, still serving. */
async function withSluice(yaml: string, fn: (s: Running, rec: Recorded) => Promise<void>): Promise<void> {
  const rec = recordEvents();
  const s = await startSluice(yaml, { events: rec.events });
  try {
    await fn(s, rec);
    up.releaseAll();
    await eventually(async () => (await s.state()).routes.every((r) => r.inflight === 0 && r.queued === 0), 'nothing held');
    await eventually(() => rec.settled.length === rec.admitted, 'every admitted request settled');
    const connections = () => new Promise<number>((resolve) => s.app.proxy.server.getConnections((_e, n) => resolve(n)));
    await eventually(async () => (await connections()) === 0, 'every client connection closed');
    assert.equal((await send(`${s.url}/api/orders/after`)).status, 200, 'still serving');
  } finally {
    up.releaseAll();
    await s.close();
  }
}

const status = (data: string) => Number(/^HTTP\/1\.1 (\d{3}) /.exec(data)?.[1] ?? 0);
const reasonOf = (data: string) => /"reason":"([a-z_]+)"/.exec(data)?.[1];

test('malformed request lines and header names get 400 JSON, the connection closes, nothing is forwarded', () =>
  withSluice(policy(), async (s, rec) => {
    const cases: Record<string, string> = {
      'not HTTP at all': 'GARBAGE\r\n\r\n',
      'unknown version': 'GET /x HTTP/9.9\r\nHost: x\r\n\r\n',
      'bare LF line ends': 'GET /x HTTP/1.1\nHost: x\n\n',
      'bad method token': 'G@T /x HTTP/1.1\r\nHost: x\r\n\r\n',
      'space in a header name': 'GET /x HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n',
      'non-ASCII header name': 'GET /x HTTP/1.1\r\nHost: x\r\nH\xe9: v\r\n\r\n',
      'NUL in a header value': 'GET /x HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n',
      'space before the colon': 'GET /x HTTP/1.1\r\nHost: x\r\nX-Api-Key : k\r\n\r\n',
      'obsolete line folding': 'GET /x HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n',
      'raw non-ASCII in the path': 'GET /api/orders/\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n',
    };
    const before = up.seen.length;
    for (const [name, bytes] of Object.entries(cases)) {
      const r = await rawExchange(s.url, bytes);
      assert.equal(status(r.data), 400, name);
      assert.equal(reasonOf(r.data), 'bad_request', name);
      assert.equal(r.closedByServer, true, name);
    }
    assert.equal(up.seen.length, before);
    assert.equal(rec.admitted, 0);
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_client_errors_total', { code: 'bad_request' }), Object.keys(cases).length);
  }));

test('request smuggling: conflicting Content-Length / Transfer-Encoding is refused, never forwarded', () =>
  withSluice(policy(), async (s) => {
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    const cases: Record<string, string> = {
      'CL and TE': `POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
      'TE and CL': `POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${smuggled}`,
      'two different Content-Lengths': 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
      'a Content-Length list': 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!',
      'negative Content-Length': 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
      'chunked not last': `POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`,
      'obfuscated chunked': `POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${smuggled}`,
      'two Transfer-Encodings': `POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n${smuggled}`,
      'bad chunk size': `POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n${smuggled}`,
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const r = await rawExchange(s.url, bytes);
      assert.equal(status(r.data), 400, name);
      assert.equal(r.closedByServer, true, name);
      // One answer only: the smuggled request never got one of its own.
      assert.equal(r.data.match(/HTTP\/1\.1 /g)?.length, 1, name);
    }
    assert.ok(!up.seen.includes('/smuggled'), 'the smuggled request never reached the upstream');
  }));

test('oversized request heads get 431 (server.maxHeaderBytes), long or many headers alike', () =>
  withSluice(policy(), async (s) => {
    const long = await rawExchange(s.url, `GET /x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(10_000)}\r\n\r\n`);
    assert.equal(status(long.data), 431);
    assert.equal(reasonOf(long.data), 'headers_too_large');
    const headers = Array.from({ length: 3000 }, (_, i) => `X-${i}: v\r\n`).join('');
    const many = await rawExchange(s.url, `GET /x HTTP/1.1\r\nHost: x\r\n${headers}\r\n`);
    assert.equal(status(many.data), 431);
    // Under the limit is fine.
    const ok = await rawExchange(s.url, `GET /x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(4000)}\r\nConnection: close\r\n\r\n`);
    assert.equal(status(ok.data), 200);
  }));

test('slow-loris headers: the connection gets 408 and is closed at server.headersTimeoutMs', () =>
  withSluice(policy(), async (s, rec) => {
    // One header line every 100 ms, for up to 4 s: far longer than headersTimeoutMs (300).
    const parts = ['GET /x HTTP/1.1\r\n', 'Host: x\r\n', ...Array.from({ length: 40 }, (_, i) => `X-Slow-${i}: v\r\n`)];
    const r = await rawExchange(s.url, parts, { gapMs: 100, timeoutMs: 5000 });
    assert.equal(r.closedByServer, true, 'the server closed the slow connection');
    assert.equal(status(r.data), 408);
    assert.equal(reasonOf(r.data), 'request_timeout');
    assert.equal(rec.admitted, 0);
  }));

test('a request body that trickles past server.requestTimeoutMs gets 408 and frees its slot', () =>
  withSluice(policy(), async (s, rec) => {
    const head = 'POST /api/orders/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n';
    const r = await rawExchange(s.url, [head, ...Array.from({ length: 40 }, () => 'a')], { gapMs: 100, timeoutMs: 5000 });
    assert.equal(r.closedByServer, true);
    assert.equal(status(r.data), 408);
    assert.equal(rec.admitted, 1);
    await eventually(() => rec.settled.length === 1, 'settled');
    assert.deepEqual(rec.settled, ['ignore']);
  }));

test('methods that are never proxied get 405: TRACE answered, CONNECT refused instead of a silent drop', () =>
  withSluice(policy(), async (s, rec) => {
    const trace = await rawExchange(s.url, 'TRACE /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(status(trace.data), 405);
    assert.equal(reasonOf(trace.data), 'method_not_allowed');
    const connect = await rawExchange(s.url, 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n');
    assert.equal(status(connect.data), 405);
    assert.equal(connect.closedByServer, true);
    assert.equal(rec.admitted, 0);
  }));

test('path tricks that could reach another route than the prefix says get 400 bad_path', () =>
  withSluice(policy(), async (s) => {
    const tricks = [
      '//api/orders',
      '/api/orders/../../admin',
      '/static/..%2f..%2fapi/orders',
      '/%61pi/orders', // encoded unreserved character: /api/orders to any normaliser
      '/api%2forders',
      '/api/orders/..;/admin', // Tomcat-style path parameter on a dot segment
      '/api/orders/..%3b/admin',
      '/x/%252e%252e/api/orders', // double-encoded dots
      '/api/orders%00.json',
      '/api/orders%5c..%5cadmin',
      '/%zz', // malformed escape (rejected by the router itself)
      '/api/orders%',
      '*',
    ];
    const before = up.seen.length;
    for (const p of tricks) {
      const r = await rawExchange(s.url, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.equal(status(r.data), 400, p);
      assert.equal(reasonOf(r.data), 'bad_path', p);
    }
    assert.equal(up.seen.length, before, 'none of them was forwarded');
    assert.equal((await scrape(s.adminUrl)).value('sluice_client_errors_total', { code: 'bad_path' }), tricks.length);
    // Escapes that mean the same to everyone are fine, and stay on their route.
    const fine = await send(`${s.url}/api/orders/a%20b%3F%C3%A9`);
    assert.equal(fine.status, 200);
    assert.deepEqual(fine.json(), { path: '/api/orders/a%20b%3F%C3%A9' });
  }));

test('invalid lane header values are ignored: the request goes to the default lane', () =>
  withSluice(policy(), async (s) => {
    const values: (string | string[])[] = ['BATCH', 'batch2', ' ', 'batch\tbatch', ['batch', 'batch']];
    const pending = values.map((v, i) =>
      send(`${s.url}/hold/lane${i}`, { headers: { 'x-priority': v as string } }).catch((e: Error) => e),
    );
    await up.waitHolding(values.length);
    const st = (await s.state()).routes.find((r) => r.name === 'default')!;
    assert.equal(st.lanes[0]!.inflight, values.length, 'all in interactive');
    assert.equal(st.lanes[1]!.inflight, 0);
    up.releaseAll();
    for (const p of await Promise.all(pending)) assert.ok(!(p instanceof Error) && p.status === 200);
  }));

test('a client cannot escape its share by switching lanes', () =>
  withSluice(policy({ limit: 2, clientMaxShare: 0.5 }), async (s) => {
    const a1 = send(`${s.url}/hold/esc-a1`, { headers: { 'x-api-key': 'A' } });
    const b1 = send(`${s.url}/hold/esc-b1`, { headers: { 'x-api-key': 'B' } });
    await up.waitHolding(2);
    for (const priority of ['interactive', 'batch']) {
      const a = await send(`${s.url}/hold/esc-a2`, { headers: { 'x-api-key': 'A', 'x-priority': priority } });
      assert.equal(a.status, 429, priority);
      assert.equal(refusalOf(a).reason, 'client_share');
    }
    up.releaseAll();
    await Promise.all([a1, b1]);
  }));

test('a client cannot escape its rate by switching lanes', () =>
  withSluice(policy({ rate: '{ perSecond: 0.1, burst: 2 }' }), async (s) => {
    const h = { 'x-api-key': 'R' };
    assert.equal((await send(`${s.url}/x`, { headers: h })).status, 200);
    assert.equal((await send(`${s.url}/x`, { headers: { ...h, 'x-priority': 'batch' } })).status, 200);
    const a = await send(`${s.url}/x`, { headers: { ...h, 'x-priority': 'batch' } });
    assert.equal(a.status, 429);
    assert.equal(refusalOf(a).reason, 'client_rate');
  }));

test('huge, negative and garbage deadlines: 400 or clamped, never a crash or a stuck timer', () =>
  withSluice(policy(), async (s) => {
    for (const v of ['-1', '-99999999999999999999', 'NaN', '1e309', '0x7fffffff']) {
      const a = await send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': v } });
      assert.equal(a.status, 400, v);
      assert.equal(a.json<{ reason: string }>().reason, 'bad_deadline');
    }
    const huge = await send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': '9'.repeat(400) } });
    assert.equal(huge.status, 200);
  }));

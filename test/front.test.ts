/**
 * The front (src/proxy/front.ts, admit.ts, responses.ts): answers written
 * from prebuilt heads must still be correct HTTP/1.1 on the wire — framing,
 * keep-alive and pipelining, HEAD without a body, connection close when the
 * client asks for it — and every answer Sluice writes itself carries the
 * JSON contract and an x-request-id.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { rawExchange, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
let s: Running;
before(async () => {
  up = await startUpstream();
  s = await startSluice(`
log: { level: error }
lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
  - name: batch
    queue: { maxLength: 0, maxWaitMs: 1000 }
server: { keepAliveTimeoutMs: 9000 }
defaults:
  limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
routes:
  - name: full
    match: { pathPrefix: /full }
    upstream: ${up.url}
  - name: open
    match: { pathPrefix: /open }
    upstream: ${up.url}
    limit: { algorithm: fixed, initial: 100, min: 1, max: 100 }
`);
  // /full's only slot stays taken for the whole file: every other request to it is refused at once.
  void send(`${s.url}/full/hold/front`).catch(() => undefined);
  await up.waitHolding(1);
});
after(async () => {
  up.releaseAll();
  await s.close();
  await up.close();
});

/** The answers in `data`, split by their content-length framing (HEAD answers have none). */
function answers(data: string, heads: ('GET' | 'HEAD')[]): { status: number; headers: Record<string, string>; body: string }[] {
  const out = [];
  let rest = data;
  for (const method of heads) {
    const end = rest.indexOf('\r\n\r\n');
    assert.ok(end > 0, `an answer for ${method} in ${JSON.stringify(rest)}`);
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    const length = method === 'HEAD' ? 0 : Number(headers['content-length']);
    out.push({ status: Number(statusLine!.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) });
    rest = rest.slice(end + 4 + length);
  }
  assert.equal(rest, '', 'nothing after the last answer');
  return out;
}

const request = (method: string, path: string, extra = '') => `${method} ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

test('front: pipelined requests are refused in order on one connection, which stays open', async () => {
  const last = request('GET', '/open/c', 'Connection: close\r\n');
  const r = await rawExchange(s.url, request('GET', '/full/a', 'x-request-id: first\r\n') + request('GET', '/full/b') + last);
  // The third answer is forwarded (chunked): split it off at its status line.
  const third = r.data.indexOf('HTTP/1.1 200 OK\r\n');
  assert.ok(third > 0, 'a forwarded request after two refusals on the same connection');
  const [a, b] = answers(r.data.slice(0, third), ['GET', 'GET']);
  assert.equal(a!.status, 503);
  assert.deepEqual(JSON.parse(a!.body), { error: 'overloaded', reason: 'queue_full', retryAfterSeconds: Number(a!.headers['retry-after']) });
  assert.equal(a!.headers['x-request-id'], 'first');
  assert.equal(a!.headers['connection'], 'keep-alive');
  assert.equal(a!.headers['keep-alive'], 'timeout=9');
  assert.ok(!Number.isNaN(Date.parse(a!.headers['date'] ?? '')), 'a Date header');
  assert.equal(a!.headers['cache-control'], 'no-store');
  assert.equal(b!.status, 503);
  assert.match(b!.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/, 'a generated id');
  assert.match(r.data.slice(third), /\{"path":"\/open\/c"\}/);
});

test('front: a refused HEAD gets the head only, and the connection serves the next request', async () => {
  const r = await rawExchange(s.url, request('HEAD', '/full/h') + request('GET', '/full/g'), {
    until: (d) => (d.match(/HTTP\/1\.1 /g)?.length ?? 0) === 2 && d.endsWith('}'),
  });
  const [h, g] = answers(r.data, ['HEAD', 'GET']);
  assert.equal(h!.status, 503);
  assert.ok(Number(h!.headers['content-length']) > 0, 'the length of the body a GET would get');
  assert.equal(g!.status, 503);
  assert.equal(JSON.parse(g!.body).reason, 'queue_full');
});

test('front: a client that asks to close (Connection: close, HTTP/1.0) gets Connection: close and the socket closes', async () => {
  for (const bytes of [request('GET', '/full/x', 'Connection: close\r\n'), 'GET /full/y HTTP/1.0\r\n\r\n']) {
    const r = await rawExchange(s.url, bytes);
    assert.equal(r.closedByServer, true, bytes);
    const [a] = answers(r.data, ['GET']);
    assert.equal(a!.status, 503);
    assert.equal(a!.headers['connection'], 'close');
  }
});

test('front: errors Sluice writes itself are JSON with an x-request-id (route, method, path, missing Host, parser, CONNECT)', async () => {
  const cases: [string, number, string][] = [
    [request('GET', '/nowhere', 'Connection: close\r\n'), 404, 'no_route'],
    [request('TRACE', '/open/x', 'Connection: close\r\n'), 405, 'method_not_allowed'],
    [request('GET', '/open/../full', 'Connection: close\r\n'), 400, 'bad_path'],
    ['GET /open/x HTTP/1.1\r\nConnection: close\r\n\r\n', 400, 'bad_request'],
    ['GET /open/x HTTP/9.9\r\nHost: x\r\n\r\n', 400, 'bad_request'],
    ['CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n', 405, 'method_not_allowed'],
  ];
  const before = up.seen.length;
  for (const [bytes, status, reason] of cases) {
    const r = await rawExchange(s.url, bytes);
    const [a] = answers(r.data, ['GET']);
    assert.equal(a!.status, status, bytes);
    assert.equal(JSON.parse(a!.body).reason, reason, bytes);
    assert.equal(a!.headers['content-type'], 'application/json; charset=utf-8', bytes);
    assert.match(a!.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/, bytes);
  }
  assert.equal(up.seen.length, before, 'none of them was forwarded');
});

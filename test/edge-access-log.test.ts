/**
 * The access log and upstream error lines (HTTP-edge defect 11): a 200, a
 * 404 or a bad_path left no line; each upstream error was logged twice,
 * once with a stack for a plain ECONNREFUSED. With log.access one JSON line
 * per request (sampled), every upstream error once, without a stack.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually, rawExchange, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
let deadUrl: string;
before(async () => {
  up = await startUpstream();
  const dead = await startUpstream();
  deadUrl = dead.url;
  await dead.close();
});
after(async () => {
  await up.close();
});

const policy = (access: string) => `
log: { level: warn, access: ${access} }
forwarding: { trustedProxies: [loopback] }
lanes:
  - name: interactive
    queue: { maxLength: 1, maxWaitMs: 30000 }
  - name: batch
    queue: { maxLength: 0, maxWaitMs: 1000 }
classify:
  - lane: batch
    when: { header: { name: x-lane, value: batch } }
defaults:
  limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
  circuitBreaker: { enabled: false }
routes:
  - name: main
    match: { pathPrefix: /api }
    upstream: ${up.url}
  - name: dead
    match: { pathPrefix: /dead }
    upstream: ${deadUrl}
`;

const accessLines = (s: Running) => s.logs.filter((l) => l.msg === 'access');
const lineFor = (s: Running, id: string) => accessLines(s).find((l) => l.requestId === id);

/** A raw request with its own id; resolves with everything the client received. */
async function raw(s: Running, id: string, head: string, body = ''): Promise<{ sent: number; got: string }> {
  const bytes = `${head}X-Request-Id: ${id}\r\nConnection: close\r\n\r\n${body}`;
  const r = await rawExchange(s.url, bytes);
  return { sent: bytes.length, got: r.data };
}

test('log.access: one JSON line per request with every field, for forwarded, refused, queued and Sluice-answered requests (defect 11)', async () => {
  const s = await startSluice(policy('{ enabled: true }'));
  try {
    const ok = await raw(s, 'ok-1', 'POST /api/echo/x?q=secret HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Forwarded-For: 198.51.100.4\r\n', 'hello');
    const held = send(`${s.url}/api/hold/a`, { headers: { 'x-request-id': 'held-2' } });
    await up.waitHolding(1);
    const queued = send(`${s.url}/api/echo/q`, { headers: { 'x-request-id': 'queued-3' } });
    await eventually(async () => (await s.state()).routes[0]!.queued === 1, 'queued');
    const refused = await raw(s, 'refused-4', 'GET /api/x HTTP/1.1\r\nHost: x\r\nX-Lane: batch\r\n');
    up.release('a');
    await held;
    await queued;
    const noRoute = await raw(s, 'none-5', 'GET /nowhere HTTP/1.1\r\nHost: x\r\n');
    const badPath = await raw(s, 'path-6', 'GET /api/../admin HTTP/1.1\r\nHost: x\r\n');
    await send(`${s.url}/dead/x`, { headers: { 'x-request-id': 'dead-7' } });
    await raw(s, 'parse-8', 'GET /api/x HTTP/9.9\r\nHost: x\r\n');
    await eventually(() => accessLines(s).length === 8, 'eight access lines');

    const l = lineFor(s, 'ok-1')!;
    assert.deepEqual(Object.keys(l).filter((k) => !['level', 'time', 'service', 'msg', 'pid', 'hostname'].includes(k)).sort(), [
      'bytesIn', 'bytesOut', 'clientIp', 'durationMs', 'lane', 'method', 'path', 'queueMs', 'reason', 'requestId', 'route', 'status', 'upstreamMs',
    ]);
    assert.equal(l.level, 30);
    assert.deepEqual({ route: l.route, lane: l.lane, method: l.method, path: l.path, status: l.status, reason: l.reason, clientIp: l.clientIp }, {
      route: 'main', lane: 'interactive', method: 'POST', path: '/api/echo/x', status: 200, reason: null, clientIp: '198.51.100.4',
    });
    assert.equal(l.bytesIn, ok.sent, 'head and body, as sent');
    assert.equal(l.bytesOut, ok.got.length, 'every byte the client got');
    assert.ok(typeof l.upstreamMs === 'number' && typeof l.durationMs === 'number' && (l.durationMs as number) >= (l.upstreamMs as number));
    assert.equal(l.queueMs, 0);

    const q = lineFor(s, 'queued-3')!;
    assert.equal(q.status, 200);
    assert.ok((q.queueMs as number) > 0, 'it waited for the held slot');
    const r = lineFor(s, 'refused-4')!;
    assert.deepEqual([r.status, r.reason, r.lane, r.upstreamMs], [503, 'queue_full', 'batch', null]);
    assert.equal(r.bytesOut, refused.got.length);
    assert.deepEqual([lineFor(s, 'none-5')!.status, lineFor(s, 'none-5')!.reason, lineFor(s, 'none-5')!.route], [404, 'no_route', null]);
    assert.equal(lineFor(s, 'none-5')!.bytesOut, noRoute.got.length);
    assert.deepEqual([lineFor(s, 'path-6')!.status, lineFor(s, 'path-6')!.reason], [400, 'bad_path']);
    assert.equal(lineFor(s, 'path-6')!.bytesOut, badPath.got.length);
    assert.deepEqual([lineFor(s, 'dead-7')!.status, lineFor(s, 'dead-7')!.reason, lineFor(s, 'dead-7')!.route], [502, 'upstream_refused', 'dead']);
    // Node's parser refused the head: no request id of the client's survives, no method or path.
    const parse = accessLines(s).find((x) => x.reason === 'bad_request')!;
    assert.deepEqual([parse.status, parse.method, parse.path, parse.clientIp], [400, null, null, '127.0.0.1']);
  } finally {
    up.releaseAll();
    await s.close();
  }
});

test('log.access is off by default, and sample keeps that share of the requests (defect 11)', async () => {
  const off = await startSluice(policy('{ enabled: false }'));
  try {
    for (let i = 0; i < 5; i++) await send(`${off.url}/api/echo/${i}`);
    assert.equal(accessLines(off).length, 0);
  } finally {
    await off.close();
  }
  // The injected random alternates: every second request is in the sample.
  let n = 0;
  const half = await startSluice(policy('{ enabled: true, sample: 0.5 }'), { random: () => (n++ % 2 === 0 ? 0.25 : 0.75) });
  try {
    for (let i = 0; i < 10; i++) await send(`${half.url}/api/echo/${i}`);
    await eventually(() => accessLines(half).length === 5, 'five lines');
  } finally {
    await half.close();
  }
});

test('an upstream error is logged once, at warn, with its code and message and no stack (defect 11)', async () => {
  const s = await startSluice(policy('{ enabled: false }'));
  try {
    const a = await send(`${s.url}/dead/x`, { headers: { 'x-request-id': 'refused-conn' } });
    assert.equal(a.status, 502);
    const lines = s.logs.filter((l) => l.requestId === 'refused-conn');
    assert.equal(lines.length, 1, JSON.stringify(lines));
    const [line] = lines as [Record<string, unknown>];
    assert.equal(line.msg, 'upstream error');
    assert.equal(line.level, 40);
    assert.equal(line.code, 'upstream_refused');
    assert.equal(typeof line.err, 'string');
    assert.doesNotMatch(JSON.stringify(line), /stack|    at /);
  } finally {
    await s.close();
  }
});

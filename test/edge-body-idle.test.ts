/**
 * A silent request body (HTTP-edge defect 3): uploads that stop sending
 * pinned their route's slots until requestTimeoutMs (300 s), so as many
 * stalled uploads as the route's limit refused everyone. With
 * server.bodyIdleTimeoutMs an admitted body silent that long gets 408, its
 * slot is released at once and it is counted as the client's
 * request_timeout, never against the upstream.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { scrape } from './helpers/prom.js';
import { eventually, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
let s: Running;
before(async () => {
  up = await startUpstream();
  s = await startSluice(`
log: { level: error }
server: { bodyIdleTimeoutMs: 300 }
lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
defaults:
  limit: { algorithm: fixed, initial: 2, min: 1, max: 2 }
  circuitBreaker: { enabled: true, consecutiveFailures: 1, openMs: 60000 }
routes:
  - name: upload
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
});
after(async () => {
  await s.close();
  await up.close();
});

/** Starts an upload that sends its head and 10 bytes of 1,000, then nothing; collects what comes back. */
function stalledUpload(path: string): { readonly sock: Socket; readonly answer: Promise<{ data: string; closed: boolean }> } {
  const u = new URL(s.url);
  const sock = connect(Number(u.port), u.hostname);
  sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789`);
  const answer = new Promise<{ data: string; closed: boolean }>((resolve) => {
    let data = '';
    sock.on('data', (c: Buffer) => (data += c.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => resolve({ data, closed: true }));
  });
  return { sock, answer };
}

test('stalled uploads get 408 after bodyIdleTimeoutMs, their slots are released, the route serves others (defect 3)', async () => {
  const a = stalledUpload('/echo/stall-a');
  const b = stalledUpload('/echo/stall-b');
  // Both slots are taken by silent uploads: the next request is refused.
  await eventually(async () => (await s.state()).routes[0]!.inflight === 2, 'both uploads admitted');
  assert.equal((await send(`${s.url}/x`)).status, 503);
  for (const u of [a, b]) {
    const { data, closed } = await u.answer;
    assert.equal(closed, true, 'the connection closes: the body never ended');
    assert.match(data, /^HTTP\/1\.1 408 /);
    assert.match(data, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
    assert.match(data, /\{"error":"request_timeout","reason":"request_timeout"\}$/);
  }
  await eventually(async () => (await s.state()).routes[0]!.inflight === 0, 'slots released');
  assert.equal((await send(`${s.url}/x`)).status, 200);
  const m = await scrape(s.adminUrl);
  assert.equal(m.value('sluice_client_errors_total', { code: 'request_timeout' }), 2);
  assert.equal(m.all('sluice_upstream_errors_total').reduce((n, x) => n + x.value, 0), 0);
  assert.equal(((await s.state()).routes[0] as unknown as { circuitBreaker: { state: string } }).circuitBreaker.state, 'closed');
});

test('a slow but steady upload is not idle, and a complete one is never cut afterwards (defect 3)', async () => {
  const u = new URL(s.url);
  const sock = connect(Number(u.port), u.hostname);
  let data = '';
  sock.on('data', (c: Buffer) => (data += c.toString('latin1')));
  const closed = new Promise((r) => sock.on('close', r));
  sock.write('POST /echo/steady HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n');
  // A byte every 100 ms: never 300 ms of silence.
  for (const c of 'abcdef') {
    await new Promise((r) => setTimeout(r, 100));
    sock.write(c);
  }
  await eventually(() => data.includes('"bytes":6'), 'the upload is answered');
  assert.match(data, /^HTTP\/1\.1 200 /);
  // The connection is kept alive past the idle timeout: the body ended, nothing is watched.
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(sock.destroyed, false);
  sock.write('GET /echo/again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  await closed;
  assert.equal(data.match(/HTTP\/1\.1 200 /g)?.length, 2, data);
});

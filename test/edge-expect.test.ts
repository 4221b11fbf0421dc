/**
 * Expect: 100-continue with admission before the body (HTTP-edge defect 2):
 * curl (and .NET, Java, the AWS SDKs) send `Expect: 100-continue` for
 * uploads over 1 MB. Sluice decides on the head: admitted → `100 Continue`
 * and the body streams to the upstream (a real nginx storing it over
 * WebDAV); refused → the 503/429 at once, never `100 Continue`, and the
 * connection closes, so a refused upload never sends its body. Other
 * expectations get 417 in the JSON contract.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { startNginx, type Nginx } from './helpers/nginx.js';
import { scrape } from './helpers/prom.js';
import { eventually, rawExchange, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const run = promisify(execFile);

let nginx: Nginx;
let up: TestUpstream;
let s: Running;
let file: string;
const SIZE = 3_000_000;

before(async () => {
  nginx = await startNginx();
  up = await startUpstream();
  s = await startSluice(`
log: { level: error }
lanes:
  - name: interactive
    queue: { maxLength: 1, maxWaitMs: 60000 }
defaults:
  limit: { algorithm: fixed, initial: 4, min: 1, max: 100 }
  circuitBreaker: { enabled: true, consecutiveFailures: 2, openMs: 60000 }
routes:
  - name: nginx
    match: { pathPrefix: /dav }
    upstream: ${nginx.url}
  - name: one
    match: { pathPrefix: /one }
    upstream: ${up.url}
    limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
    lanes: { interactive: { queue: { maxLength: 1, maxWaitMs: 60000 } } }
  - name: full
    match: { pathPrefix: /full }
    upstream: ${up.url}
    limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
    lanes: { interactive: { queue: { maxLength: 0, maxWaitMs: 1000 } } }
`);
  file = join(mkdtempSync(join(tmpdir(), 'sluice-upload-')), 'body.bin');
  writeFileSync(file, Buffer.alloc(SIZE, 97));
});
after(async () => {
  up.releaseAll();
  await s.close();
  await up.close();
  await nginx.close();
});

/** curl's status, the body bytes it sent, and its verbose trace. */
async function curl(args: string[]): Promise<{ code: string; uploaded: number; verbose: string }> {
  const { stdout, stderr } = await run('curl', ['-sS', '-v', '-o', '/dev/null', '--max-time', '20', '-w', '%{http_code} %{size_upload}', ...args], { maxBuffer: 16 << 20 });
  const [code, uploaded] = stdout.trim().split(' ');
  return { code: code as string, uploaded: Number(uploaded), verbose: stderr };
}

const breaker = async (route: string) =>
  ((await s.state()).routes.find((r) => r.name === route) as unknown as { circuitBreaker: { state: string } }).circuitBreaker.state;

test('curl uploads over 1 MB (Expect: 100-continue) reach a real nginx whole, five times, breaker closed (defect 2)', async () => {
  for (let i = 0; i < 5; i++) {
    const name = `upload-${i}.bin`;
    const r = await curl(['-T', file, `${s.url}/dav/${name}`]);
    assert.match(r.verbose, /> Expect: 100-continue/i, 'curl asked to continue');
    assert.match(r.verbose, /< HTTP\/1\.1 100 Continue/, 'Sluice said continue');
    assert.equal(r.code, '201', r.verbose.slice(-500));
    assert.equal(r.uploaded, SIZE);
    assert.equal(nginx.storedSize(name), SIZE);
  }
  assert.equal(await breaker('nginx'), 'closed');
  const m = await scrape(s.adminUrl);
  assert.equal(m.all('sluice_upstream_errors_total').reduce((n, x) => n + x.value, 0), 0);
});

test('a refused upload gets its 503 with Retry-After and no 100 Continue, its body is never read, the connection closes (defect 2)', async () => {
  const held = send(`${s.url}/full/hold/full-1`);
  await up.waitHolding(1);
  const before = up.seen.length;
  // A 1 GiB upload announced; only its head is sent, as a client waiting for 100 Continue does.
  const r = await rawExchange(s.url, 'PUT /full/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n', { timeoutMs: 5000 });
  assert.equal(r.closedByServer, true, 'the server closed the connection');
  assert.doesNotMatch(r.data, /100 Continue/);
  assert.match(r.data, /^HTTP\/1\.1 503 /);
  assert.match(r.data, /\r\nretry-after: \d+\r\n/i);
  assert.match(r.data, /\r\nconnection: close\r\n/i);
  assert.match(r.data, /"reason":"queue_full"/);
  // curl gives up on the body as soon as the final answer arrives.
  const c = await curl(['-T', file, `${s.url}/full/upload`]);
  assert.equal(c.code, '503');
  assert.doesNotMatch(c.verbose, /100 Continue/);
  assert.equal(c.uploaded, 0, 'curl sent no byte of the body');
  assert.equal(up.seen.length, before, 'nothing reached the upstream');
  up.release('full-1');
  await held;
});

/**
 * A client that sends its head, waits for `100 Continue` and only then its
 * body, as curl does (without curl's one-second give-up timer).
 */
function patientUpload(url: string, head: string, body: string): { readonly continued: () => boolean; readonly answer: Promise<string> } {
  const u = new URL(url);
  let continued = false;
  const answer = new Promise<string>((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname, () => sock.write(head));
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer: ${JSON.stringify(data)}`));
    }, 10_000);
    sock.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      if (!continued && data.startsWith('HTTP/1.1 100 Continue\r\n\r\n')) {
        continued = true;
        sock.write(body);
      }
    });
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
  });
  return { continued: () => continued, answer };
}

test('a queued upload gets 100 Continue only once admitted, then streams to the upstream (defect 2)', async () => {
  const held = send(`${s.url}/one/hold/one-1`);
  await up.waitHolding(1);
  const upload = patientUpload(s.url, 'POST /one/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n', 'y'.repeat(5000));
  await eventually(async () => (await s.state()).routes.find((r) => r.name === 'one')!.queued === 1, 'the upload is queued');
  assert.equal(upload.continued(), false, 'no 100 Continue while queued');
  up.release('one-1');
  await held;
  const answer = await upload.answer;
  assert.equal(upload.continued(), true);
  assert.match(answer, /HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
  assert.match(answer, /"bytes":5000/);
  assert.equal(await breaker('one'), 'closed');
});

test('an expectation other than 100-continue gets 417 in the JSON contract with x-request-id, nothing forwarded', async () => {
  const before = up.seen.length;
  const r = await rawExchange(s.url, 'POST /one/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: the-unexpected\r\n\r\nhi');
  assert.match(r.data, /^HTTP\/1\.1 417 /);
  assert.match(r.data, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
  assert.match(r.data, /\{"error":"expectation_failed","reason":"expectation_failed"\}$/);
  assert.equal(r.closedByServer, true);
  assert.equal(up.seen.length, before);
  assert.equal((await scrape(s.adminUrl)).value('sluice_client_errors_total', { code: 'expectation_failed' }), 1);
});

test('an upstream that answers an upload before it ends (401, 413...): the client gets that answer, no upstream fault', async () => {
  const errors = (await scrape(s.adminUrl)).all('sluice_upstream_errors_total').reduce((n, x) => n + x.value, 0);
  // Half of a 100 kB body, then the client waits for the answer.
  const r = await rawExchange(s.url, `POST /one/early/413 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n${'z'.repeat(50_000)}`, {
    timeoutMs: 5000,
    until: (d) => d.includes('{"early":true}'),
  });
  assert.match(r.data, /^HTTP\/1\.1 413 /);
  assert.match(r.data, /\{"early":true\}/);
  await eventually(async () => (await s.state()).routes.every((x) => x.inflight === 0), 'settled');
  assert.equal((await scrape(s.adminUrl)).all('sluice_upstream_errors_total').reduce((n, x) => n + x.value, 0), errors);
  assert.equal(await breaker('one'), 'closed');
});

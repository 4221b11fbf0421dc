/**
 * Defect "five requests take a route down for everyone" (HTTP-edge issue,
 * defect 1): headers a client may send that undici refuses to forward
 * (`Keep-Alive`, `Upgrade`, `Expect`, `Transfer-Encoding` forms, `TE`...)
 * must never count as an upstream failure. They are hop-by-hop (RFC 9110
 * §7.6.1): Sluice removes them and forwards the request; whatever is still
 * refused locally is the client's 4xx, never a 502, never a breaker failure.
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
import { eventually, rawExchange, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const run = promisify(execFile);

let up: TestUpstream;
let nginx: Nginx;
let s: Running;
before(async () => {
  up = await startUpstream();
  nginx = await startNginx();
  s = await startSluice(`
log: { level: error }
defaults:
  limit: { algorithm: fixed, initial: 8, min: 1, max: 100 }
  circuitBreaker: { enabled: true, consecutiveFailures: 3, openMs: 60000 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
  - name: nginx
    match: { pathPrefix: /ngx }
    upstream: ${nginx.url}
    circuitBreaker: { enabled: true, consecutiveFailures: 1, openMs: 60000 }
  - name: nginx-dav
    match: { pathPrefix: /dav }
    upstream: ${nginx.url}
    circuitBreaker: { enabled: true, consecutiveFailures: 1, openMs: 60000 }
`);
});
after(async () => {
  await s.close();
  await up.close();
  await nginx.close();
});

/** Every hop-by-hop or locally refused header a client can send, with a value a real client might use. */
const HOSTILE: Record<string, string> = {
  'keep-alive': 'timeout=5, max=100',
  upgrade: 'websocket',
  expect: '100-continue',
  te: 'gzip, deflate',
  'proxy-connection': 'keep-alive',
  'proxy-authorization': 'Basic dXNlcjpwYXNz',
  connection: 'keep-alive, x-secret',
};

/**
 * One request over a raw socket (undici, the test client, refuses to send
 * most of these headers itself), `connection: close` unless the headers say
 * otherwise; returns the status and the upstream's echo of what it received.
 */
async function rawEcho(path: string, headers: Record<string, string>, body = ''): Promise<{ status: number; seen: Record<string, string> | null; raw: string }> {
  const lines = Object.entries({ host: 'x', connection: 'close', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`);
  const framing = body.length > 0 ? `content-length: ${body.length}\r\n` : '';
  // An interim `100 Continue` (for `expect`) comes before the answer: skip it.
  // Some of these headers keep the connection open: the answer is complete at its JSON body's end.
  const sent = `POST ${path} HTTP/1.1\r\n${lines.join('')}${framing}\r\n${body}`;
  const rr = await rawExchange(s.url, sent, { timeoutMs: 3000, until: (d) => /\}(\r\n0\r\n\r\n)?$/.test(d) });
  const raw = rr.data.replace(
    /^HTTP\/1\.1 100 Continue\r\n\r\n/,
    '',
  );
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
  const text = raw.slice(raw.indexOf('\r\n\r\n') + 4);
  let seen: Record<string, string> | null = null;
  try {
    seen = (JSON.parse(text.slice(text.indexOf('{'), text.lastIndexOf('}') + 1)) as { headers: Record<string, string> }).headers;
  } catch {
    seen = null;
  }
  return { status, seen, raw };
}

async function breakerState(route = 'main'): Promise<string> {
  const r = (await s.state()).routes.find((x) => x.name === route) as unknown as { circuitBreaker: { state: string } };
  return r.circuitBreaker.state;
}

test('client Keep-Alive header, sent again and again, never opens the breaker (defect 1)', async () => {
  for (let i = 0; i < 10; i++) {
    const a = await rawEcho('/echo/ka', { 'keep-alive': 'timeout=5' });
    assert.equal(a.status, 200, a.raw.slice(0, 300));
    assert.equal(a.seen?.['keep-alive'], undefined);
  }
  assert.equal(await breakerState(), 'closed');
});

test('client Upgrade header on a plain route: forwarded without it, breaker stays closed (defect 1)', async () => {
  for (let i = 0; i < 10; i++) {
    // Upgrade alone (not named in Connection), as the attack sent it.
    const a = await rawEcho('/echo/up', { upgrade: 'websocket' });
    assert.equal(a.status, 200, a.raw.slice(0, 300));
    assert.equal(a.seen?.upgrade, undefined);
  }
  assert.equal(await breakerState(), 'closed');
});

test('every hop-by-hop header alone and all together: 200, none reaches the upstream, breaker closed (defect 1)', async () => {
  const combos: Record<string, string>[] = Object.entries(HOSTILE).map(([k, v]) => ({ [k]: v }));
  // All together, with a header the client's Connection names (connection-scoped, so not forwarded either).
  combos.push({ ...HOSTILE, 'x-secret': 'connection-scoped' });
  for (const headers of combos) {
    for (let i = 0; i < 4; i++) {
      const a = await rawEcho('/echo/all', headers, 'x');
      assert.equal(a.status, 200, `${JSON.stringify(headers)}: ${a.raw.slice(0, 300)}`);
      const seen = a.seen ?? {};
      for (const name of [...Object.keys(HOSTILE), 'x-secret']) {
        if (name === 'connection') continue; // undici sets its own connection header
        assert.equal(seen[name], undefined, `${name} reached the upstream`);
      }
      assert.equal(typeof seen['x-request-id'], 'string');
    }
  }
  assert.equal(await breakerState(), 'closed');
});

test('TE: trailers is the one TE value that is forwarded', async () => {
  const a = await rawEcho('/echo/te', { te: 'trailers' });
  assert.equal(a.seen?.te, 'trailers');
});

test('curl upload over 1 MB (Expect: 100-continue) arrives whole, five times, breaker closed (defects 1, 2)', async () => {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-upload-')), 'body.bin');
  writeFileSync(file, Buffer.alloc(1_500_000, 97));
  for (let i = 0; i < 5; i++) {
    // curl sends `Expect: 100-continue` by itself for a body over 1 MB.
    const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', '--data-binary', `@${file}`, `${s.url}/echo/upload`], {
      maxBuffer: 8 << 20,
    });
    const [json, code] = stdout.split('\n');
    assert.equal(code, '200', stdout.slice(0, 200));
    assert.equal((JSON.parse(json as string) as { bytes: number }).bytes, 1_500_000);
  }
  assert.equal(await breakerState(), 'closed');
});

/**
 * Every header a client can send, with values real clients, confused
 * clients and attackers use: hop-by-hop fields, framing, expectations,
 * forwarding claims, odd values. Each entry is one header line (or several).
 */
const CLIENT_HEADERS: readonly string[] = [
  'Keep-Alive: timeout=5, max=100',
  'Upgrade: websocket',
  'Upgrade: h2c',
  'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__',
  'Connection: keep-alive, x-secret\r\nX-Secret: 1',
  'Connection: close',
  'Connection: TE\r\nTE: trailers',
  'Connection: content-length, host, x-request-id',
  'Connection: upgrade',
  'Connection: foo bar',
  'HTTP2-Settings: AAMAAABkAAQAAP__',
  'Expect: 100-continue',
  'Expect: 100-CONTINUE',
  'Expect: something-else',
  'TE: gzip',
  'TE: trailers',
  'TE: trailers, deflate;q=0.5',
  'TE: chunked',
  'Trailer: X-Checksum',
  'Proxy-Connection: keep-alive',
  'Proxy-Authorization: Basic dXNlcjpwYXNz',
  'Proxy-Authenticate: Basic realm="x"',
  'X-Forwarded-For: not-an-ip',
  'X-Forwarded-For: 1.2.3.4, ::1, [2001:db8::1]:443',
  `X-Forwarded-For: ${Array.from({ length: 200 }, (_, i) => `10.0.${i % 256}.1`).join(', ')}`,
  'Forwarded: for=evil;by="unknown";host="x:1"',
  'X-Forwarded-Host: attacker.example',
  'X-Forwarded-Proto: gopher',
  'X-Real-IP: 6.6.6.6',
  'Via: 1.0 evil, 1.1 also-evil',
  'X-Request-Id: not a valid id',
  `X-Request-Id: ${'a'.repeat(500)}`,
  'Content-Type:',
  'Content-Type: foo',
  'Content-Type: application/json',
  'Content-Type: multipart/form-data',
  'Content-Encoding: gzip',
  'Accept-Encoding: gzip, br',
  'Range: bytes=0-0',
  'Authorization: Bearer \xff\xfe',
  'X-Latin: caf\xe9',
  'X-Empty:',
  'X-Dup: a\r\nX-Dup: b',
  'Cookie: a=1\r\nCookie: b=2',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13',
  'Origin: null',
  'Date: yesterday',
  'Max-Forwards: 0',
  'If-None-Match: *',
  'Content-Length: 0',
];

/** Framing a request may use for its body: none, Content-Length, or chunked (one framing per request). */
const FRAMINGS = ['', 'Content-Length: 5\r\n\r\nhello', 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'];
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'PROPFIND', 'REPORT'];

/** A small deterministic generator (mulberry32): the same combinations on every run. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One raw request; resolves with the status line's code (0 when the connection closed without an answer). */
async function sendRaw(method: string, path: string, headers: readonly string[], framing: string): Promise<{ status: number; raw: string }> {
  const body = framing === '' ? '\r\n' : framing.startsWith('Content-Length: 0') ? `${framing}` : framing;
  const head = `${method} ${path} HTTP/1.1\r\nHost: x\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n`;
  const r = await rawExchange(s.url, head + body, { timeoutMs: 3000 });
  const raw = r.data.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, '');
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0), raw };
}

async function upstreamErrors(): Promise<number> {
  return (await scrape(s.adminUrl)).all('sluice_upstream_errors_total').reduce((n, x) => n + x.value, 0);
}

test('no client input is an upstream fault: every header alone and in combination, to a Node upstream and a real nginx, leaves the breaker closed (defect 1)', async () => {
  const errorsBefore = await upstreamErrors();
  const answered = new Map<number, number>();
  const check = async (method: string, path: string, headers: readonly string[], framing: string) => {
    const { status, raw } = await sendRaw(method, path, headers, framing);
    answered.set(status, (answered.get(status) ?? 0) + 1);
    // Anything 5xx here would be Sluice blaming the upstream for what the client sent.
    assert.ok(status >= 200 && status < 500, `${method} ${path} ${JSON.stringify(headers)} ${JSON.stringify(framing)}: ${raw.slice(0, 300)}`);
  };
  for (const path of ['/echo/alone', '/ngx/alone']) {
    for (const h of CLIENT_HEADERS) for (const framing of FRAMINGS) await check('POST', path, [h], framing);
  }
  const random = seeded(12);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  for (let i = 0; i < 300; i++) {
    const n = 2 + Math.floor(random() * 6);
    const headers = Array.from({ length: n }, () => pick(CLIENT_HEADERS));
    await check(pick(METHODS), i % 2 === 0 ? `/echo/combo-${i}` : `/ngx/combo-${i}`, headers, pick(FRAMINGS));
  }
  assert.equal(await breakerState('main'), 'closed');
  assert.equal(await breakerState('nginx'), 'closed');
  assert.equal(await upstreamErrors(), errorsBefore, 'no upstream error was counted');
  // Every request settled: none holds a slot.
  await eventually(async () => (await s.state()).routes.every((r) => r.inflight === 0), 'nothing left in flight');
  const m = await scrape(s.adminUrl);
  assert.equal(m.all('sluice_circuit_breaker_opens_total').reduce((n, x) => n + x.value, 0), 0);
  // The set did reach the upstreams: most answers are theirs.
  assert.ok((answered.get(200) ?? 0) > 400, JSON.stringify([...answered]));
});

/** Sends a head and part of a body, waits until `route` has it in flight, then leaves. */
async function leaveMidUpload(path: string, route: string): Promise<void> {
  const u = new URL(s.url);
  const sock = connect(Number(u.port), u.hostname);
  sock.on('error', () => undefined);
  sock.write(`PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n${'z'.repeat(1000)}`);
  await eventually(async () => (await s.state()).routes.find((r) => r.name === route)!.inflight === 1, 'the upload is in flight');
  sock.destroy();
  await eventually(async () => (await s.state()).routes.find((r) => r.name === route)!.inflight === 0, 'the upload settled');
}

test('a client that leaves in the middle of its upload is no upstream fault (defect 1)', async () => {
  const errorsBefore = await upstreamErrors();
  for (let i = 0; i < 5; i++) {
    await leaveMidUpload(`/echo/abort/${i}`, 'main');
    // nginx's WebDAV reads the whole body before it answers.
    await leaveMidUpload(`/dav/abort-${i}.bin`, 'nginx-dav');
  }
  assert.equal(await breakerState('main'), 'closed');
  assert.equal(await breakerState('nginx-dav'), 'closed');
  assert.equal(await upstreamErrors(), errorsBefore);
});

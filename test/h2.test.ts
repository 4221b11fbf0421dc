/**
 * HTTP/2 from clients (listen.http2, protocols/h2-server.ts) with real
 * peers: curl by prior knowledge (h2c) and HTTP/1.1 on the same plaintext
 * port, node:http2 for admission per stream on one connection, the
 * server.http2 bounds, and a bounded rapid-reset flood (CVE-2023-44487).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { startCli } from './helpers/cli.js';
import { eventually, send, startSluice, writePolicy, type Running } from './helpers/sluice.js';
import { FRAME, PREFACE, closeSession, frame, h2Connect, h2Request, headersFrame, parseFrames, type RawFrame } from './helpers/h2.js';
import { curl, makeCerts } from './helpers/tls.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
let s: Running;
/** An HTTP/2-only upstream (h2c): says which protocol it was spoken to in, and sends a trailer. */
let h2up: http2.Http2Server;
let h2upPort = 0;

const policy = (upstream: string, extra = '') => `
listen: { host: 127.0.0.1, port: 0, http2: true }
log: { level: error }
server:
  http2: { maxConcurrentStreams: 8, maxExcessResets: 50, maxHeaderListBytes: 4096 }
${extra}
lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
routes:
  - name: full
    match: { pathPrefix: /full }
    upstream: ${upstream}
    limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
  - name: h2up
    match: { pathPrefix: /h2up }
    upstream: http://127.0.0.1:${h2upPort}
    http2: true
  - name: open
    match: { pathPrefix: / }
    upstream: ${upstream}
`;

before(async () => {
  h2up = http2.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.addTrailers({ 'x-checksum': 'abc123' });
    res.end(JSON.stringify({ httpVersion: req.httpVersion, path: req.url }));
  });
  await new Promise<void>((r) => h2up.listen(0, '127.0.0.1', r));
  h2upPort = (h2up.address() as net.AddressInfo).port;
  up = await startUpstream();
  s = await startSluice(policy(up.url));
});
after(async () => {
  up.releaseAll();
  await s.close();
  await up.close();
  await new Promise((r) => h2up.close(r));
});

test('curl --http2-prior-knowledge (h2c) and curl --http1.1 on the same plaintext port are both answered', async () => {
  const h2 = await curl(`${s.url}/echo/h2c`, ['--http2-prior-knowledge']);
  assert.equal(h2.status, 200);
  assert.equal(h2.version, '2');
  const seen = JSON.parse(h2.body) as { headers: Record<string, string> };
  assert.equal(seen.headers.via, '2 sluice');
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  const h1 = await curl(`${s.url}/echo/h1`, ['--http1.1']);
  assert.equal(h1.status, 200);
  assert.equal(h1.version, '1.1');
  // curl --http2 on http:// asks for an Upgrade to h2c; Sluice does not upgrade, it answers in HTTP/1.1.
  const asked = await curl(`${s.url}/echo/upgrade`, ['--http2']);
  assert.equal(asked.status, 200);
  assert.equal(asked.version, '1.1');
});

test('each stream is admitted on its own: a refused stream gets 503 with Retry-After, the connection serves on', async () => {
  const session = await h2Connect(s.url);
  try {
    const held = h2Request(session, '/full/hold/h2');
    await up.waitHolding(1);
    const refused = await h2Request(session, '/full/x');
    assert.equal(refused.status, 503);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    assert.equal((JSON.parse(refused.body) as { reason: string }).reason, 'queue_full');
    assert.match(String(refused.headers['x-request-id']), /.+/);
    // The same connection, another route: served while /full's slot is held.
    const other = await h2Request(session, '/echo/other');
    assert.equal(other.status, 200);
    up.releaseAll();
    assert.equal((await held).status, 200);
    assert.equal(session.destroyed, false);
  } finally {
    await closeSession(session);
  }
});

test('a malformed request on one stream is answered 4xx; the other streams of the connection are not touched', async () => {
  const session = await h2Connect(s.url);
  try {
    const held = h2Request(session, '/hold/bystander');
    await up.waitHolding(1);
    const bad = await h2Request(session, '/a/../b');
    assert.equal(bad.status, 400);
    up.releaseAll();
    assert.equal((await held).status, 200);
  } finally {
    await closeSession(session);
  }
});

test('server.http2.maxHeaderListBytes: a larger header list is 431 headers_too_large on its stream; the connection serves on', async () => {
  const session = await h2Connect(s.url);
  try {
    const big = await h2Request(session, '/echo/big', { 'x-big': 'a'.repeat(5000) });
    assert.equal(big.status, 431);
    assert.equal((JSON.parse(big.body) as { reason: string }).reason, 'headers_too_large');
    assert.equal((await h2Request(session, '/echo/small', { 'x-small': 'a'.repeat(1000) })).status, 200);
  } finally {
    await closeSession(session);
  }
});

test('server.http2.maxConcurrentStreams is the SETTINGS the client gets; a stream past it is refused (REFUSED_STREAM)', async () => {
  const session = await h2Connect(s.url);
  await eventually(() => session.remoteSettings.maxConcurrentStreams === 8, 'the server SETTINGS');
  await closeSession(session);
  // A client that ignores the SETTINGS: 9 streams at once, each held upstream.
  const u = new URL(s.url);
  const sock = net.connect(Number(u.port), u.hostname);
  await once(sock, 'connect');
  const streams = Array.from({ length: 9 }, (_, i) => 2 * i + 1);
  sock.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0), ...streams.map((id) => headersFrame(id, `/hold/c${id}`, u.host))]));
  let buf: Buffer = Buffer.alloc(0);
  const frames: RawFrame[] = [];
  sock.on('data', (c: Buffer) => {
    const p = parseFrames(Buffer.concat([buf, c]));
    buf = p.rest;
    frames.push(...p.frames);
  });
  await eventually(() => frames.some((f) => f.type === FRAME.RST_STREAM), 'a RST_STREAM');
  const rst = frames.filter((f) => f.type === FRAME.RST_STREAM);
  assert.deepEqual(rst.map((f) => [f.stream, f.payload.readUInt32BE(0)]), [[17, http2.constants.NGHTTP2_REFUSED_STREAM]]);
  await up.waitHolding(8);
  assert.equal(up.holding(), 8, 'the refused stream never reached the upstream');
  up.releaseAll();
  sock.destroy();
  await eventually(async () => (await s.state()).routes.every((r) => r.inflight === 0), 'nothing in flight');
});

test('rapid reset: a connection that opens and cancels streams in a flood is closed (ENHANCE_YOUR_CALM), counted, leaks no permit, and another connection is served meanwhile', async () => {
  const before = (await s.state()).listener.http2Clients?.rapidResetCloses ?? -1;
  const calm = await h2Connect(s.url);
  const flood = await h2Connect(s.url);
  const goaway = new Promise<number>((resolve) => flood.once('goaway', (code) => resolve(code)));
  flood.on('error', () => undefined);
  let opened = 0;
  // Bounded: at most 2000 streams, each cancelled at once (the request reached admission and an upstream hold).
  const FLOOD = 2000;
  const burst = () => {
    for (let i = 0; i < 20 && opened < FLOOD && !flood.destroyed && !flood.closed; i++, opened++) {
      try {
        const st = flood.request({ ':path': `/hold/flood${opened}` });
        st.on('error', () => undefined);
        st.close(http2.constants.NGHTTP2_CANCEL);
      } catch {
        return;
      }
    }
    if (opened < FLOOD && !flood.destroyed && !flood.closed) setImmediate(burst);
  };
  burst();
  // Meanwhile the calm connection is served.
  const served = await h2Request(calm, '/echo/calm');
  assert.equal(served.status, 200);
  const code = await goaway;
  assert.equal(code, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  assert.ok(opened < FLOOD, `closed before the flood ended (${opened} streams opened)`);
  await eventually(() => flood.destroyed, 'the flooding connection closed');
  const state = await s.state();
  assert.equal(state.listener.http2Clients?.rapidResetCloses, before + 1);
  // No permit leaked: every route ends with nothing in flight.
  up.releaseAll();
  await eventually(async () => (await s.state()).routes.every((r) => r.inflight === 0), 'nothing in flight');
  assert.equal((await h2Request(calm, '/echo/after')).status, 200);
  await closeSession(calm);
  const metrics = await send(`${s.adminUrl}/metrics`);
  assert.match(metrics.text, new RegExp(`^sluice_http2_rapid_reset_closes_total ${before + 1}$`, 'm'));
  assert.match(metrics.text, /^sluice_http2_streams_reset_total [1-9]\d*$/m);
});

test('routes[].http2: the upstream is spoken to in HTTP/2 (h2c by prior knowledge); its trailers reach HTTP/2 and HTTP/1.1 clients', async () => {
  const session = await h2Connect(s.url);
  try {
    const a = await h2Request(session, '/h2up/x', { te: 'trailers' });
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body), { httpVersion: '2.0', path: '/h2up/x' });
    assert.equal(a.trailers['x-checksum'], 'abc123');
  } finally {
    await closeSession(session);
  }
  // An HTTP/1.1 client that takes trailers (TE: trailers) gets them in the chunked body's end.
  const h1 = await curl(`${s.url}/h2up/y`, ['--http1.1', '--raw', '-H', 'TE: trailers']);
  assert.equal(h1.status, 200);
  assert.match(h1.body, /\r\nx-checksum: abc123\r\n/i);
});

test('/admin/state and the live page history show the listener: http + HTTP/2 and its client connections', async () => {
  const session = await h2Connect(s.url);
  try {
    assert.equal((await h2Request(session, '/echo/seen')).status, 200);
    const state = await s.state();
    assert.equal(state.listener.scheme, 'http');
    assert.equal(state.listener.http2, true);
    assert.equal(state.listener.tls, null);
    assert.ok((state.listener.http2Clients?.sessions ?? 0) >= 1);
    // The history samples once a second; the newest sample carries the listener as it is.
    await eventually(async () => {
      const h = (await send(`${s.adminUrl}/admin/history`)).json<{ samples: { listener?: { http2Clients: { sessions: number } | null } }[] }>();
      const last = h.samples[h.samples.length - 1];
      return (last?.listener?.http2Clients?.sessions ?? 0) >= 1;
    }, 'a history sample with the HTTP/2 connection');
  } finally {
    await closeSession(session);
  }
});

test('routes[].http2 with an https:// upstream: HTTP/2 chosen by ALPN, the upstream certificate verified (NODE_EXTRA_CA_CERTS), trailers pass', async () => {
  const certs = makeCerts();
  const secure = http2.createSecureServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    res.addTrailers({ 'x-checksum': 'tls' });
    res.end(JSON.stringify({ httpVersion: req.httpVersion, alpn: (req.socket as unknown as { alpnProtocol?: string }).alpnProtocol ?? null }));
  });
  await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
  const port = (secure.address() as net.AddressInfo).port;
  // The real CLI: Node reads NODE_EXTRA_CA_CERTS at start only, so the test's CA needs a process of its own.
  const cli = await startCli(writePolicy(`
listen: { host: 127.0.0.1, port: 0, http2: true }
log: { level: info }
routes:
  - name: secure
    match: { pathPrefix: / }
    upstream: https://localhost:${port}
    http2: true
`), { NODE_EXTRA_CA_CERTS: certs.caCert });
  try {
    const session = await h2Connect(cli.proxy.replace('localhost', '127.0.0.1'));
    const a = await h2Request(session, '/x', { te: 'trailers' });
    await closeSession(session);
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body), { httpVersion: '2.0', alpn: 'h2' });
    assert.equal(a.trailers['x-checksum'], 'tls');
  } finally {
    cli.child.kill('SIGTERM');
    await cli.exited;
    await new Promise((r) => secure.close(r));
  }
});

/**
 * WebSockets through Sluice (issue 13), with the real `ws` client and
 * server: upgrade and echo, the maxOpen bound (503 websocket_limit with
 * Retry-After before any 101), admission refusals, idle close, a drain's
 * 1001 after the readiness grace, and what the limit and the breaker learn
 * (a 101 is never a failure; an open socket holds no permit, feeds no RTT).
 * Upgrades on routes without `websocket:` keep their old behaviour.
 */
import assert from 'node:assert/strict';
import http, { type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { startCli } from './helpers/cli.js';
import { makeCerts } from './helpers/tls.js';
import { scrape } from './helpers/prom.js';
import { connect } from 'node:net';
import { eventually, rawExchange, send, splitAnswer, startSluice, startSluiceFile, writePolicy, type Running } from './helpers/sluice.js';

/** An upstream: a ws echo server on a plain HTTP server that answers other requests with the headers it saw. */
interface WsUpstream {
  readonly url: string;
  /** Upgrade requests the upstream saw, in order. */
  readonly upgrades: IncomingMessage[];
  /** Sockets the upstream holds open. */
  readonly server: WebSocketServer;
  close(): Promise<void>;
}

async function startWsUpstream(opts: { reject?: (req: IncomingMessage) => number } = {}): Promise<WsUpstream> {
  const upgrades: IncomingMessage[] = [];
  const httpServer = http.createServer((req, res) => {
    // Answered once the whole body is in: a request that never finishes its body holds its permit.
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ plain: true, headers: req.headers }));
    });
  });
  const wss = new WebSocketServer({
    server: httpServer,
    verifyClient: (info, cb) => {
      upgrades.push(info.req);
      const status = opts.reject?.(info.req) ?? 0;
      if (status > 0) cb(false, status, 'no');
      else cb(true);
    },
  });
  wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const port = (httpServer.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    upgrades,
    server: wss,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}

/** Opens a WebSocket through Sluice: the socket, or the HTTP answer that refused it. */
function openWs(base: string, path: string): Promise<{ ws: WebSocket } | { status: number; headers: IncomingMessage['headers']; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}${path}`);
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    ws.once('error', (err) => reject(err));
  });
}

async function mustOpen(base: string, path: string): Promise<WebSocket> {
  const r = await openWs(base, path);
  if (!('ws' in r)) throw new Error(`refused: ${r.status} ${r.body}`);
  return r.ws;
}

function echo(ws: WebSocket, data: string | Buffer): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) => {
    ws.once('message', (d: Buffer, binary: boolean) => resolve({ data: d, binary }));
    ws.send(data);
  });
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: -1, reason: 'already closed' });
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}

let up: WsUpstream;
let s: Running;
before(async () => {
  up = await startWsUpstream({ reject: (req) => (req.url?.startsWith('/ws/private') ? 401 : 0) });
  s = await startSluice(`
log: { level: error }
server: { headersTimeoutMs: 300, requestTimeoutMs: 600 }
defaults:
  limit: { algorithm: fixed, initial: 8, min: 1, max: 100 }
  circuitBreaker: { enabled: true, consecutiveFailures: 1, openMs: 60000 }
routes:
  - name: chat
    match: { pathPrefix: /ws }
    upstream: ${up.url}
    websocket: { maxOpen: 3, idleTimeoutMs: 60000 }
  - name: idle
    match: { pathPrefix: /idle }
    upstream: ${up.url}
    websocket: { idleTimeoutMs: 150 }
  - name: plain
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
});
after(async () => {
  await s.close();
  await up.close();
});

async function route(name: string) {
  const r = (await s.state()).routes.find((x) => x.name === name);
  assert.ok(r, name);
  return r;
}

test('upgrade and echo through Sluice: text, binary, a 1 MB message; the upstream sees forwarding headers and the request id', async () => {
  const ws = await mustOpen(s.url, '/ws/echo');
  try {
    const t = await echo(ws, 'hello');
    assert.equal(t.data.toString(), 'hello');
    assert.equal(t.binary, false);
    const bin = Buffer.from([0, 1, 2, 255]);
    assert.deepEqual((await echo(ws, bin)).data, bin);
    const big = Buffer.alloc(1 << 20, 7);
    const back = await echo(ws, big);
    assert.equal(back.data.length, big.length);
    assert.ok(back.data.equals(big));
    const seen = up.upgrades.at(-1) as IncomingMessage;
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
    assert.match(String(seen.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    assert.match(String(seen.headers.via), /sluice/);
    const r = await route('chat');
    assert.equal(r.websocket?.open, 1);
    // The open socket holds no request permit.
    assert.equal(r.inflight, 0);
  } finally {
    ws.close();
    await closed(ws);
  }
  await eventually(async () => (await route('chat')).websocket?.open === 0, 'the socket is no longer open');
  // The client started the closing handshake (the upstream then drops TCP first, as servers do).
  assert.equal((await route('chat')).websocket?.closed.client, 1);
});

test('an open WebSocket outlives server.headersTimeoutMs and requestTimeoutMs (they are for requests)', async () => {
  const ws = await mustOpen(s.url, '/ws/long');
  try {
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal((await echo(ws, 'still here')).data.toString(), 'still here');
  } finally {
    ws.close();
    await closed(ws);
  }
});

test('maxOpen: the next upgrade is refused 503 websocket_limit with Retry-After and the JSON contract, before any 101; a freed slot opens again', async () => {
  const open = [await mustOpen(s.url, '/ws/a'), await mustOpen(s.url, '/ws/b'), await mustOpen(s.url, '/ws/c')];
  const upstreamBefore = up.upgrades.length;
  try {
    const r = await openWs(s.url, '/ws/d');
    assert.ok(!('ws' in r), 'the fourth socket must be refused');
    assert.equal(r.status, 503);
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.deepEqual(JSON.parse(r.body), { error: 'overloaded', reason: 'websocket_limit', retryAfterSeconds: Number(r.headers['retry-after']) });
    assert.equal(typeof r.headers['x-request-id'], 'string');
    assert.equal(up.upgrades.length, upstreamBefore, 'a refused upgrade never reaches the upstream');
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_websockets_open', { route: 'chat' }), 3);
    assert.equal(m.value('sluice_websockets_max_open', { route: 'chat' }), 3);
    assert.equal(m.value('sluice_websocket_upgrades_total', { route: 'chat', result: 'refused' }), 1);
    assert.equal(m.all('sluice_rejections_total', { route: 'chat', reason: 'websocket_limit', status: '503' }).reduce((a, x) => a + x.value, 0), 1);
    const first = open.shift() as WebSocket;
    first.close();
    await closed(first);
    await eventually(async () => (await route('chat')).websocket?.open === 2, 'a slot is free');
    open.push(await mustOpen(s.url, '/ws/e'));
  } finally {
    for (const ws of open) ws.close();
    await Promise.all(open.map(closed));
  }
});

test('the upgrade passes admission: the gate refuses it 503 queue_full (nothing reaches the upstream) and its socket slot is given back', async () => {
  const gated = await startSluice(`
log: { level: error }
lanes: [{ name: interactive, queue: { maxLength: 0 } }]
routes:
  - name: tight
    match: { pathPrefix: /ws }
    upstream: ${up.url}
    limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
    websocket: { maxOpen: 5 }
`);
  const before = up.upgrades.length;
  // A held request takes the route's one permit: an upgraded handshake waits on no permit, so a
  // raw request that never finishes its body holds it.
  const held = rawExchange(gated.url, 'POST /ws/hold HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc', { timeoutMs: 1500 });
  try {
    await eventually(async () => (await gated.state()).routes[0]?.inflight === 1, 'the permit is held');
    const r = await openWs(gated.url, '/ws/x');
    assert.ok(!('ws' in r));
    assert.equal(r.status, 503);
    assert.equal(JSON.parse(r.body).reason, 'queue_full');
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.equal(up.upgrades.length, before);
    await eventually(async () => (await gated.state()).routes[0]?.websocket?.reserved === 0, 'the slot is given back');
    assert.equal((await gated.state()).routes[0]?.websocket?.released, 1);
  } finally {
    await held;
    await gated.close();
  }
});

test('idle: a WebSocket silent for idleTimeoutMs is closed with 1001, counted as idle', async () => {
  const ws = await mustOpen(s.url, '/idle/x');
  const c = await closed(ws);
  assert.equal(c.code, 1001);
  await eventually(async () => (await route('idle')).websocket?.closed.idle === 1, 'counted as idle');
  const m = await scrape(s.adminUrl);
  assert.equal(m.value('sluice_websockets_closed_total', { route: 'idle', reason: 'idle' }), 1);
});

test('a 101 is never a breaker failure and feeds no RTT sample; an upstream refusal (401) is relayed and is no failure either', async () => {
  for (let i = 0; i < 5; i++) {
    const ws = await mustOpen(s.url, `/ws/breaker-${i}`);
    await echo(ws, 'x');
    ws.close();
    await closed(ws);
  }
  const r = await openWs(s.url, '/ws/private');
  assert.ok(!('ws' in r));
  assert.equal(r.status, 401);
  const chat = await route('chat');
  assert.equal(chat.circuitBreaker?.state, 'closed');
  assert.equal(chat.inflight, 0);
  const m = await scrape(s.adminUrl);
  assert.equal(m.all('sluice_settled_total', { route: 'chat', result: 'success' }).reduce((a, x) => a + x.value, 0), 0, 'no RTT sample');
  assert.ok(m.all('sluice_settled_total', { route: 'chat', result: 'ignore' }).reduce((a, x) => a + x.value, 0) >= 6);
  assert.ok(m.value('sluice_websocket_upgrades_total', { route: 'chat', result: 'not_opened' }) >= 1);
});

test('an unreachable upstream: 502 upstream_refused before any 101, counted against the upstream', async () => {
  const dead = http.createServer();
  await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
  const port = (dead.address() as AddressInfo).port;
  await new Promise<void>((resolve) => dead.close(() => resolve()));
  const d = await startSluice(`
log: { level: error }
routes:
  - name: gone
    match: { pathPrefix: / }
    upstream: http://127.0.0.1:${port}
    websocket: {}
`);
  try {
    const r = await openWs(d.url, '/ws');
    assert.ok(!('ws' in r));
    assert.equal(r.status, 502);
    assert.equal(JSON.parse(r.body).reason, 'upstream_refused');
    const ws = (await d.state()).routes[0]?.websocket;
    assert.equal(ws?.open, 0);
    assert.equal(ws?.reserved, 0);
  } finally {
    await d.close();
  }
});

test('Upgrade on a route without websocket: forwarded as an ordinary request without Upgrade, the connection lives on', async () => {
  const head = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
  const rr = await rawExchange(s.url, [head('/plain/1'), head('/plain/2')], { gapMs: 100, timeoutMs: 3000, until: (d) => (d.match(/"plain":true/g) ?? []).length === 2 });
  const answers = rr.data.split(/(?=HTTP\/1\.1 )/);
  assert.equal(answers.length, 2, rr.data.slice(0, 400));
  for (const a of answers) {
    const x = splitAnswer(a);
    assert.equal(x.status, 200);
    const seen = JSON.parse(x.rest) as { headers: Record<string, string> };
    assert.equal(seen.headers.upgrade, undefined);
  }
  assert.equal(rr.closedByServer, false, 'keep-alive: the connection stays open after the answers');
  assert.equal((await route('plain')).circuitBreaker?.state, 'closed');
});

test('drain: open WebSockets keep working through the readiness grace, then get 1001', async () => {
  const d = await startSluice(`
log: { level: error }
shutdown: { readinessGraceMs: 300, drainTimeoutMs: 5000 }
routes:
  - name: chat
    match: { pathPrefix: / }
    upstream: ${up.url}
    websocket: {}
`);
  const ws = await mustOpen(d.url, '/ws');
  const gone = closed(ws);
  const drained = d.app.drain();
  // Readiness fails at once; the socket still echoes during the grace.
  assert.equal((await send(`${d.adminUrl}/readyz`)).status, 503);
  assert.equal((await echo(ws, 'during grace')).data.toString(), 'during grace');
  const c = await gone;
  assert.equal(c.code, 1001);
  await drained;
  const m = d.app.state().routes[0]?.websocket;
  assert.equal(m?.closed.drain, 1);
  assert.equal(m?.open, 0);
});

test('workers: 2: maxOpen holds for the instance (split 2 + 2 over the workers), echo through either, counts summed, drain closes with 1001', { timeout: 60_000 }, async () => {
  const file = writePolicy(`
workers: 2
log: { level: info }
shutdown: { readinessGraceMs: 100, drainTimeoutMs: 5000 }
routes:
  - name: chat
    match: { pathPrefix: / }
    upstream: ${up.url}
    websocket: { maxOpen: 4 }
`);
  const cli = await startCli(file);
  const open: WebSocket[] = [];
  try {
    // Each upgrade is a new connection: the primary hands them round-robin, two to each worker.
    for (let i = 0; i < 4; i++) open.push(await mustOpen(cli.proxy, `/w${i}`));
    for (const ws of open) assert.equal((await echo(ws, 'w')).data.toString(), 'w');
    const r = await openWs(cli.proxy, '/w5');
    assert.ok(!('ws' in r), 'the fifth socket must be refused');
    assert.equal(r.status, 503);
    assert.equal(JSON.parse(r.body).reason, 'websocket_limit');
    const state = (await (await fetch(`${cli.admin}/admin/state`)).json()) as { routes: { websocket: { open: number; maxOpen: number; refused: number } }[] };
    assert.deepEqual([state.routes[0]?.websocket.open, state.routes[0]?.websocket.maxOpen, state.routes[0]?.websocket.refused], [4, 4, 1]);
    const m = await scrape(cli.admin);
    assert.equal(m.value('sluice_websockets_open', { route: 'chat' }), 4);
    const gone = open.map(closed);
    cli.child.kill('SIGTERM');
    for (const c of await Promise.all(gone)) assert.equal(c.code, 1001);
    assert.equal(await cli.exited, 0);
  } finally {
    for (const ws of open) ws.terminate();
    cli.child.kill('SIGKILL');
  }
});

/** A masked client text frame (RFC 6455 §5.2), as a browser would send it. */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([0x11, 0x22, 0x33, 0x44]);
  const masked = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

const UPGRADE_HEAD = (path: string) =>
  `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

test('raw client: a plain request pipelined before the upgrade is answered first, and a frame sent with the upgrade head (before the 101) is relayed', async () => {
  const bytes = `GET /ws/plain HTTP/1.1\r\nHost: x\r\n\r\n${UPGRADE_HEAD('/ws/raw')}`;
  const sock = connect(Number(new URL(s.url).port), '127.0.0.1');
  let data = Buffer.alloc(0);
  sock.on('data', (c: Buffer) => (data = Buffer.concat([data, c])));
  try {
    sock.write(Buffer.concat([Buffer.from(bytes, 'latin1'), clientFrame('early bird')]));
    await eventually(() => data.includes('early bird'), 'the echo of the early frame');
    const text = data.toString('latin1');
    const first = text.indexOf('HTTP/1.1 200');
    const second = text.indexOf('HTTP/1.1 101 Switching Protocols');
    assert.ok(first >= 0 && second > first, text.slice(0, 300));
    // The accept key of RFC 6455's own example, computed by the upstream and passed through.
    assert.match(text, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
    // The echo is an unmasked server frame after the 101 head.
    const frame = data.subarray(data.indexOf('\r\n\r\n', second) + 4);
    assert.deepEqual([frame[0], frame[1]], [0x81, 'early bird'.length]);
  } finally {
    sock.destroy();
  }
  await eventually(async () => (await route('chat')).websocket?.open === 0, 'the raw socket is closed');
});

test('an upstream that closes first is counted as upstream; a client that resets is counted as error', async () => {
  const before = (await route('chat')).websocket?.closed;
  const ws = await mustOpen(s.url, '/ws/server-closes');
  const gone = closed(ws);
  for (const c of up.server.clients) if (c.readyState === WebSocket.OPEN) c.close(4000, 'bye');
  assert.deepEqual(await gone, { code: 4000, reason: 'bye' });
  await eventually(async () => (await route('chat')).websocket?.closed.upstream === (before?.upstream ?? 0) + 1, 'counted as upstream');
  const ws2 = await mustOpen(s.url, '/ws/reset');
  ws2.terminate();
  await eventually(async () => (await route('chat')).websocket?.open === 0, 'gone');
  const after = (await route('chat')).websocket?.closed;
  assert.equal((after?.error ?? 0) + (after?.client ?? 0), (before?.error ?? 0) + (before?.client ?? 0) + 1);
});

test('reload: a lower maxOpen applies to the next upgrade (open sockets stay); without websocket: the upgrade is an ordinary request again', async () => {
  const policy = (ws: string) => `
log: { level: error }
routes:
  - name: chat
    match: { pathPrefix: / }
    upstream: ${up.url}
${ws}`;
  const file = writePolicy(policy('    websocket: { maxOpen: 5 }'));
  const r = await startSluiceFile(file);
  const open: WebSocket[] = [];
  try {
    open.push(await mustOpen(r.url, '/a'), await mustOpen(r.url, '/b'));
    writePolicy(policy('    websocket: { maxOpen: 2 }'), file);
    assert.equal(r.app.reload().result, 'success');
    const refused = await openWs(r.url, '/c');
    assert.ok(!('ws' in refused));
    assert.equal(refused.status, 503);
    for (const ws of open) assert.equal((await echo(ws, 'kept')).data.toString(), 'kept');
    writePolicy(policy(''), file);
    assert.equal(r.app.reload().result, 'success');
    // The route proxies no upgrade now: the upstream sees a plain GET (its plain answer, no 101).
    const plain = await openWs(r.url, '/d');
    assert.ok(!('ws' in plain));
    assert.equal(plain.status, 200);
    assert.equal(JSON.parse(plain.body).headers.upgrade, undefined);
    // The sockets opened before still work.
    assert.equal((await echo(open[0] as WebSocket, 'still')).data.toString(), 'still');
  } finally {
    for (const ws of open) ws.terminate();
    await r.close();
  }
});

test('access log: an open WebSocket gets one line when it closes (status 101, its lifetime, bytes written); a refused upgrade gets its 503 line', async () => {
  const a = await startSluice(`
log: { level: error, access: { enabled: true } }
routes:
  - name: chat
    match: { pathPrefix: / }
    upstream: ${up.url}
    websocket: { maxOpen: 1 }
`);
  try {
    const ws = await mustOpen(a.url, '/logged');
    await echo(ws, 'x'.repeat(1000));
    const refused = await openWs(a.url, '/second');
    assert.ok(!('ws' in refused));
    assert.equal(a.logs.filter((l) => l.msg === 'access' && l.status === 101).length, 0, 'no line while the socket is open');
    ws.close();
    await closed(ws);
    await eventually(() => a.logs.some((l) => l.msg === 'access' && l.status === 101), 'the WebSocket line');
    const line = a.logs.find((l) => l.msg === 'access' && l.status === 101) as Record<string, unknown>;
    assert.equal(line.route, 'chat');
    assert.equal(line.path, '/logged');
    assert.equal(line.reason, null);
    assert.ok((line.bytesOut as number) > 1000, `bytesOut ${String(line.bytesOut)}`);
    const no = a.logs.find((l) => l.msg === 'access' && l.status === 503) as Record<string, unknown>;
    assert.equal(no.reason, 'websocket_limit');
    assert.equal(no.path, '/second');
  } finally {
    await a.close();
  }
});

test('over TLS (listen.tls + http2: the ALPN router): wss echo through Sluice; an Upgrade on a plain route is an ordinary request and the TLS connection lives on', async () => {
  const certs = makeCerts();
  const t = await startSluice(`
listen: { host: 127.0.0.1, port: 0, http2: true, tls: { certFile: ${certs.cert}, keyFile: ${certs.key} } }
log: { level: error }
routes:
  - name: chat
    match: { pathPrefix: /ws }
    upstream: ${up.url}
    websocket: {}
  - name: plain
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
  const ca = readFileSync(certs.caCert);
  try {
    const ws = new WebSocket(`${t.url.replace(/^https/, 'wss')}/ws/tls`, { ca });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    assert.equal((await echo(ws, 'over tls')).data.toString(), 'over tls');
    assert.equal((up.upgrades.at(-1) as IncomingMessage).headers['x-forwarded-proto'], 'https');
    ws.close();
    await closed(ws);
    const u = new URL(t.url);
    const sock = tlsConnect({ host: '127.0.0.1', port: Number(u.port), ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    let data = '';
    sock.on('data', (c: Buffer) => (data += c.toString('latin1')));
    try {
      await new Promise((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject));
      sock.write(`GET /plain/a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
      await eventually(() => (data.match(/"plain":true/g) ?? []).length === 1, 'the first answer');
      sock.write('GET /plain/b HTTP/1.1\r\nHost: x\r\n\r\n');
      await eventually(() => (data.match(/"plain":true/g) ?? []).length === 2, 'the second answer on the same TLS connection');
      assert.doesNotMatch(data, /"upgrade"/);
    } finally {
      sock.destroy();
    }
  } finally {
    await t.close();
  }
});

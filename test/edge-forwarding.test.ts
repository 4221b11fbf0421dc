/**
 * Forwarding headers (HTTP-edge defect 4): X-Forwarded-For/-Proto/-Host,
 * Via and RFC 7239 Forwarded are added; what an untrusted client sends of
 * them never passes through; behind trusted proxies the client's address
 * comes from X-Forwarded-For (for clients.key { ip: true }, too); the
 * route option preserveHost. A real nginx shows what the upstream gets.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { echoed, startNginx, type Nginx } from './helpers/nginx.js';
import { rawExchange, startSluice, type Running } from './helpers/sluice.js';

let nginx: Nginx;
let s: Running;
before(async () => {
  nginx = await startNginx();
  s = await startSluice(`
log: { level: error }
routes:
  - name: plain
    match: { pathPrefix: /plain }
    upstream: ${nginx.url}
  - name: behind-lb
    match: { pathPrefix: /lb }
    upstream: ${nginx.url}
    forwarding: { trustedProxies: [loopback], forwarded: true, via: edge-1 }
  - name: replace
    match: { pathPrefix: /replace }
    upstream: ${nginx.url}
    forwarding: { trustedProxies: ["127.0.0.0/8"], xForwardedFor: replace }
  - name: quiet
    match: { pathPrefix: /quiet }
    upstream: ${nginx.url}
    forwarding: { xForwardedFor: off, xForwardedProto: false, xForwardedHost: false, via: false }
  - name: host
    match: { pathPrefix: /host }
    upstream: ${nginx.url}
    preserveHost: true
`);
});
after(async () => {
  await s.close();
  await nginx.close();
});

/** What nginx saw of the request (its /headers echo), '' for a field it did not get. */
async function seen(path: string, headers: string): Promise<Record<string, string>> {
  const r = await rawExchange(s.url, `GET ${path}/headers HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`);
  assert.match(r.data, /^HTTP\/1\.1 200 /, r.data.slice(0, 200));
  return echoed(r.data.slice(r.data.indexOf('\r\n\r\n') + 4));
}

const SPOOFED = 'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Port: 1\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n';

test('Sluice adds X-Forwarded-For/-Proto/-Host and Via; an untrusted client\'s own forwarding headers never pass (defect 4)', async () => {
  const h = await seen('/plain', `Host: shop.example:8080\r\n${SPOOFED}Via: 1.0 client-proxy\r\n`);
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], 'shop.example:8080');
  assert.equal(h['x-forwarded-port'], '');
  assert.equal(h['x-real-ip'], '');
  assert.equal(h['forwarded'], '');
  // Via is a chain every proxy appends to.
  assert.equal(h['via'], '1.0 client-proxy, 1.1 sluice');
  // The upstream's own host, as before (preserveHost is off by default).
  assert.equal(h['host'], `127.0.0.1:${nginx.port}`);
});

test('behind a trusted proxy: its chain is appended to, its X-Forwarded-Proto/-Host kept, Forwarded appended, the Via pseudonym configurable (defect 4)', async () => {
  const h = await seen('/lb', 'Host: shop.example\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\nForwarded: for=198.51.100.7;proto=https\r\n');
  assert.equal(h['x-forwarded-for'], '198.51.100.7, 127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'https');
  assert.equal(h['x-forwarded-host'], 'shop.example');
  assert.equal(h['forwarded'], 'for=198.51.100.7;proto=https, for=127.0.0.1;host="shop.example";proto=http');
  assert.equal(h['via'], '1.1 edge-1');
});

test('xForwardedFor: replace sends the client\'s address alone: the right-most untrusted hop (defect 4)', async () => {
  const h = await seen('/replace', 'Host: x\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.7, 127.0.0.5\r\n');
  assert.equal(h['x-forwarded-for'], '198.51.100.7');
});

test('forwarding off: nothing added, and still nothing an untrusted client claims passes (defect 4)', async () => {
  const h = await seen('/quiet', `Host: x\r\n${SPOOFED}`);
  for (const name of ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'forwarded', 'via']) assert.equal(h[name], '', name);
});

test('preserveHost sends the client\'s Host upstream; with an absolute-form target, the target\'s authority (defect 4)', async () => {
  assert.equal((await seen('/host', 'Host: shop.example:8443\r\n'))['host'], 'shop.example:8443');
  const r = await rawExchange(s.url, 'GET http://api.example/host/headers HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n');
  assert.match(r.data, /^HTTP\/1\.1 200 /);
  const h = echoed(r.data.slice(r.data.indexOf('\r\n\r\n') + 4));
  assert.equal(h['host'], 'api.example');
  assert.equal(h['x-forwarded-host'], 'api.example');
});

test('clients.key { ip: true } behind a trusted proxy keys each client by its X-Forwarded-For address, not the proxy\'s (defect 4)', async () => {
  const policy = (trusted: string) => `
log: { level: error }
forwarding: { trustedProxies: [${trusted}] }
clients: { key: { ip: true }, rate: { perSecond: 0.001, burst: 1 } }
routes:
  - name: r
    match: { pathPrefix: / }
    upstream: ${nginx.url}
`;
  const status = async (x: Running, client: string) =>
    Number(/^HTTP\/1\.1 (\d+)/.exec((await rawExchange(x.url, `GET /r HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${client}\r\nConnection: close\r\n\r\n`)).data)?.[1]);
  const behind = await startSluice(policy('loopback'));
  try {
    assert.equal(await status(behind, '198.51.100.1'), 200);
    assert.equal(await status(behind, '198.51.100.1'), 429, 'the same client, over its rate');
    assert.equal(await status(behind, '198.51.100.2'), 200, 'another client behind the same proxy has its own bucket');
  } finally {
    await behind.close();
  }
  // Without trusted proxies the claim is ignored: every request is the peer's.
  const direct = await startSluice(policy(''));
  try {
    assert.equal(await status(direct, '198.51.100.1'), 200);
    assert.equal(await status(direct, '198.51.100.2'), 429);
  } finally {
    await direct.close();
  }
});

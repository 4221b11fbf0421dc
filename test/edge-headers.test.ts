/**
 * Hop-by-hop fields (RFC 9110 §7.6.1) in both directions (HTTP-edge
 * defect 6) and response trailers (defect 7), against a real nginx (which
 * shows what an upstream receives) and a Node upstream (which sends
 * hop-by-hop fields and trailers back).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { echoed, startNginx, type Nginx } from './helpers/nginx.js';
import { rawExchange, splitAnswer, startSluice, type RawAnswer, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let nginx: Nginx;
let up: TestUpstream;
let s: Running;
before(async () => {
  nginx = await startNginx();
  up = await startUpstream();
  s = await startSluice(`
log: { level: error }
routes:
  - name: nginx
    match: { pathPrefix: /headers }
    upstream: ${nginx.url}
  - name: node
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
});
after(async () => {
  await s.close();
  await up.close();
  await nginx.close();
});

/** One request on its own connection. */
async function ask(head: string): Promise<RawAnswer> {
  return splitAnswer((await rawExchange(s.url, `${head}Connection: close\r\n\r\n`, { timeoutMs: 3000 })).data);
}

test('request hop-by-hop fields never reach the upstream: TE (but trailers), Proxy-Connection, Proxy-Authorization, Keep-Alive, Upgrade, what Connection names (defect 6)', async () => {
  const r = await ask(
    'GET /headers HTTP/1.1\r\nHost: x\r\nTE: gzip\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n' +
      'Keep-Alive: timeout=5\r\nUpgrade: websocket\r\nConnection: X-Secret\r\nX-Secret: for-this-hop\r\n',
  );
  assert.equal(r.status, 200);
  const seen = echoed(r.rest);
  for (const name of ['te', 'proxy-connection', 'proxy-authorization', 'keep-alive', 'upgrade', 'x-secret']) assert.equal(seen[name], '', `${name} reached nginx`);
  assert.equal(seen['x-request-id'], r.headers['x-request-id']);
  const t = echoed((await ask('GET /headers HTTP/1.1\r\nHost: x\r\nTE: trailers, deflate;q=0.5\r\n')).rest);
  assert.equal(t.te, 'trailers', 'TE: trailers goes on (alone)');
});

test('response hop-by-hop fields never reach the client: what the upstream Connection names, Keep-Alive, Upgrade, Proxy-Authenticate (defect 6)', async () => {
  const r = await ask('GET /hop-response HTTP/1.1\r\nHost: x\r\n');
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-kept'], 'yes');
  for (const name of ['x-internal', 'upgrade', 'proxy-authenticate', 'proxy-connection']) assert.equal(r.headers[name], undefined, `${name} reached the client`);
  // The client's own connection: Sluice's, not the upstream's.
  assert.equal(r.headers['connection'], 'close');
  assert.equal(r.headers['keep-alive'], undefined);
  assert.equal(r.headers['via'], '1.1 sluice');
});

test('response trailers reach a client that sent TE: trailers; framing and auth fields never travel as trailers (defect 7)', async () => {
  const r = await ask('GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n');
  assert.equal(r.status, 200);
  assert.equal(r.headers['transfer-encoding'], 'chunked');
  assert.equal(r.headers['trailer'], 'x-checksum, grpc-status');
  // The chunked body ends with the last chunk, then the trailer section.
  const tail = r.rest.slice(r.rest.indexOf('\r\n0\r\n') + 5);
  const trailers = Object.fromEntries(tail.split('\r\n').filter((l) => l.includes(':')).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
  assert.deepEqual(trailers, { 'x-checksum': 'abc123', 'grpc-status': '0' });
  assert.match(r.rest, /part one\n/);
  assert.match(r.rest, /part two\n/);
});

test('without TE: trailers the client gets the body, no trailers, and no Trailer announcement (defect 7)', async () => {
  const r = await ask('GET /trailers HTTP/1.1\r\nHost: x\r\n');
  assert.equal(r.status, 200);
  assert.equal(r.headers['trailer'], undefined);
  assert.match(r.rest, /part one\n[\s\S]*part two\n[\s\S]*\r\n0\r\n\r\n$/);
  assert.doesNotMatch(r.rest, /x-checksum/i);
});

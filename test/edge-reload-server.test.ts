/**
 * Reload applies server.* (HTTP-edge defect 10): a reload with changed
 * `server` settings answered success, warned of nothing and changed
 * nothing. Now every connection opened after the reload gets the new
 * limits and timeouts, and the one thing that needs a restart (how often
 * slow requests are checked) is named in the reload's warnings. log.access
 * follows a reload too.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { eventually, rawExchange, splitAnswer, startSluiceFile, writePolicy, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

const policy = (server: string, access = 'false') => `
log: { level: error, access: { enabled: ${access} } }
server: ${server}
routes:
  - name: main
    match: { pathPrefix: /api }
    upstream: ${up.url}
`;

const statusOf = async (s: Running, head: string) => splitAnswer((await rawExchange(s.url, `${head}Connection: close\r\n\r\n`)).data);

test('a reload applies server.* to new connections, and names in its warnings what needs a restart (defect 10)', async () => {
  const file = writePolicy(policy('{ maxHeaderBytes: 16384, maxHeaderCount: 200, keepAliveTimeoutMs: 72000, bodyIdleTimeoutMs: 30000 }'));
  const s = await startSluiceFile(file);
  try {
    const bigHead = `GET /api/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(4000)}\r\n`;
    const manyFields = `GET /api/x HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 20 }, (_, i) => `X-${i}: v\r\n`).join('')}`;
    assert.equal((await statusOf(s, bigHead)).status, 200);
    assert.equal((await statusOf(s, manyFields)).status, 200);
    const kept = splitAnswer((await rawExchange(s.url, 'GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n', { until: (d) => d.endsWith('}') })).data);
    assert.equal(kept.headers['keep-alive'], 'timeout=72');

    writePolicy(policy('{ maxHeaderBytes: 2048, maxHeaderCount: 10, keepAliveTimeoutMs: 5000, bodyIdleTimeoutMs: 200, headersTimeoutMs: 2000, requestTimeoutMs: 60000 }', 'true'), file);
    const r = s.app.reload();
    assert.equal(r.result, 'success');
    assert.deepEqual((r as { warnings: readonly string[] }).warnings, [
      'server.headersTimeoutMs / requestTimeoutMs: applied, but slow requests are still checked every 1000 ms (restart to check every 500 ms): a slow one may be answered up to 1000 ms late',
    ]);

    const big = await statusOf(s, bigHead);
    assert.equal(big.status, 431, 'maxHeaderBytes');
    const many = await statusOf(s, manyFields);
    assert.equal(many.status, 431, 'maxHeaderCount');
    assert.match(many.rest, /"reason":"headers_too_large"/);
    // Sluice's own answers and the forwarded ones advertise the new keep-alive timeout.
    const own = splitAnswer((await rawExchange(s.url, 'GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n', { until: (d) => d.endsWith('}') })).data);
    assert.equal(own.headers['keep-alive'], 'timeout=5');
    const fwd = splitAnswer((await rawExchange(s.url, 'GET /api/echo HTTP/1.1\r\nHost: x\r\n\r\n', { until: (d) => /\}(\r\n0\r\n\r\n)?$/.test(d) })).data);
    assert.equal(fwd.status, 200);
    assert.equal(fwd.headers['keep-alive'], 'timeout=5');
    // bodyIdleTimeoutMs: a silent upload gets 408.
    const u = new URL(s.url);
    const sock = connect(Number(u.port), u.hostname);
    let got = '';
    sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
    const closed = new Promise((resolve) => sock.on('close', resolve));
    sock.write('POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc');
    await closed;
    assert.match(got, /^HTTP\/1\.1 408 /);
    // log.access applies at once.
    await eventually(() => s.logs.some((l) => l.msg === 'access' && l.status === 408), 'an access line');
  } finally {
    await s.close();
  }
});

test('a reload that changes nothing the check interval depends on has no warning', async () => {
  const file = writePolicy(policy('{ maxHeaderCount: 100 }'));
  const s = await startSluiceFile(file);
  try {
    writePolicy(policy('{ maxHeaderCount: 50, keepAliveTimeoutMs: 9000 }'), file);
    const r = s.app.reload();
    assert.equal(r.result, 'success');
    assert.deepEqual((r as { warnings: readonly string[] }).warnings, []);
  } finally {
    await s.close();
  }
});

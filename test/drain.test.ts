/**
 * Graceful drain: the real CLI under SIGTERM, and the app's drain() for the
 * timeout and connection details. Timing here is generous on purpose: the
 * readiness grace only has to be long enough to observe that the listener
 * still accepts after readiness failed.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { startCli } from './helpers/cli.js';
import { eventually, JSON_POST, refusalOf, send, startSluiceFile, writePolicy, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

function policy(o: { graceMs: number; timeoutMs: number; extraRoutes?: string }): string {
  return `
log: { level: info }
shutdown: { readinessGraceMs: ${o.graceMs}, drainTimeoutMs: ${o.timeoutMs} }
lanes:
  - name: interactive
    queue: { maxLength: 10, maxWaitMs: 20000 }
defaults:
  timeouts: { connectMs: 1000, headersMs: 20000, bodyMs: 20000 }
routes:
  - name: slow
    match: { pathPrefix: /hold }
    upstream: ${up.url}
    limit: { initial: 1 }
  - name: fast
    match: { pathPrefix: / }
    upstream: ${up.url}
    limit: { initial: 50 }
${o.extraRoutes ?? ''}`;
}

/** Resolves true once a new TCP connection to `url` is refused. */
function refusesConnections(url: string): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

test('SIGTERM: readiness fails first, the listener closes after the grace, admitted and queued requests finish, exit 0', { timeout: 60_000 }, async () => {
  const file = writePolicy(policy({ graceMs: 1500, timeoutMs: 20_000 }));
  const s = await startCli(file);
  try {
    assert.equal((await send(`${s.admin}/readyz`)).status, 200);
    const inflight = send(`${s.proxy}/hold/t1`);
    await up.waitHolding(1);
    const queued = send(`${s.proxy}/hold/t2`);
    await eventually(async () => (await send(`${s.admin}/admin/state`)).json<{ routes: { queued: number }[] }>().routes[0]!.queued === 1, 't2 queued');

    s.child.kill('SIGTERM');
    await eventually(async () => (await send(`${s.admin}/readyz`)).status === 503, 'readiness fails');
    const ready = await send(`${s.admin}/readyz`);
    assert.deepEqual(ready.json(), { status: 'not_ready', reason: 'draining' });
    // Readiness failed, but the listener still takes new connections during the grace;
    // each response asks the client to close, so keep-alive clients move on.
    const during = await send(`${s.proxy}/during-grace`);
    assert.equal(during.status, 200);
    assert.equal(during.headers.connection, 'close');

    await eventually(() => refusesConnections(s.proxy), 'new connections refused', 10_000);
    assert.equal((await send(`${s.admin}/healthz`)).status, 200, 'the admin listener stays up during the drain');
    up.release('t1');
    const first = await inflight;
    assert.equal(first.status, 200);
    assert.equal(first.headers.connection, 'close');
    await up.waitHolding(1);
    up.release('t2');
    assert.equal((await queued).status, 200);

    assert.equal(await s.exited, 0);
    const order = ['draining: readiness fails; still serving until the grace ends', 'draining: listener closed; waiting for admitted and queued requests', 'drained'];
    assert.deepEqual(
      s.logs.filter((l) => order.includes(String(l.msg))).map((l) => l.msg),
      order,
    );
    const drained = s.logs.find((l) => l.msg === 'drained');
    assert.deepEqual([drained?.refusedQueued, drained?.cut], [0, 0]);
  } finally {
    s.child.kill('SIGKILL');
    up.releaseAll();
  }
});

test('a drain that runs out of time answers what is left 503 draining, and nothing stays counted', { timeout: 30_000 }, async () => {
  const s = await startSluiceFile(writePolicy(policy({ graceMs: 0, timeoutMs: 300 })));
  try {
    const stuck = send(`${s.url}/hold/stuck`);
    await up.waitHolding(1);
    const queued = send(`${s.url}/hold/never`);
    await eventually(async () => (await s.state()).routes[0]!.queued === 1, 'queued');
    const report = await s.app.drain();
    assert.deepEqual([report.refusedQueued, report.cut], [1, 1]);
    for (const a of [await stuck, await queued]) {
      assert.equal(a.status, 503);
      const r = refusalOf(a);
      assert.equal(r.reason, 'draining');
      assert.equal(r.error, 'overloaded');
      assert.ok(Number.isInteger(r.retryAfter) && r.retryAfter >= 1);
    }
    assert.ok(!up.seen.includes('/hold/never'), 'the queued request was never forwarded');
    const st = s.app.state();
    assert.deepEqual(
      st.routes.map((r) => [r.inflight, r.queued]),
      [
        [0, 0],
        [0, 0],
      ],
    );
    await eventually(() => up.holding() === 0, 'the upstream request was aborted');
  } finally {
    up.releaseAll();
    await s.close();
  }
});

/** Opens a connection and sends the start of a request, leaving the headers unfinished. */
async function partialRequest(url: string, path: string): Promise<{ sock: Socket; finish(): Promise<string> }> {
  const u = new URL(url);
  const sock = connect(Number(u.port), u.hostname);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  sock.on('error', () => undefined);
  sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n`);
  return {
    sock,
    async finish() {
      sock.write('\r\n');
      await closed;
      return Buffer.concat(chunks).toString('latin1');
    },
  };
}

test('after the listener closed, a request still arriving on an open connection gets 503 draining and the connection closes', { timeout: 30_000 }, async () => {
  const s = await startSluiceFile(writePolicy(policy({ graceMs: 0, timeoutMs: 20_000 })));
  try {
    const held = send(`${s.url}/hold/keep`);
    await up.waitHolding(1);
    const late = await partialRequest(s.url, '/late');
    const drained = s.app.drain();
    await eventually(() => refusesConnections(s.url), 'listener closed');
    const answer = await late.finish();
    assert.match(answer, /^HTTP\/1\.1 503 /);
    assert.match(answer, /\r\nconnection: close\r\n/i);
    assert.match(answer, /\r\nretry-after: \d+\r\n/i);
    assert.match(answer, /"reason":"draining"/);
    assert.ok(!up.seen.includes('/late'));
    up.release('keep');
    assert.equal((await held).status, 200);
    assert.deepEqual([(await drained).cut, (await drained).refusedQueued], [0, 0]);
  } finally {
    up.releaseAll();
    await s.close();
  }
});

test('a drain also waits for a route a reload removed; reloading while draining is refused', { timeout: 30_000 }, async () => {
  const legacy = `  - name: legacy
    match: { pathPrefix: /legacy }
    upstream: ${up.url}
`;
  const file = writePolicy(policy({ graceMs: 0, timeoutMs: 20_000, extraRoutes: legacy }));
  const s = await startSluiceFile(file);
  try {
    const held = send(`${s.url}/legacy/hold/old`);
    await up.waitHolding(1);
    writePolicy(policy({ graceMs: 0, timeoutMs: 20_000 }), file);
    assert.equal(s.app.reload().result, 'success');
    const drained = s.app.drain();
    await eventually(() => refusesConnections(s.url), 'listener closed');
    const again = await send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers: JSON_POST });
    assert.equal(again.status, 409);
    assert.equal(again.json<{ reason: string }>().reason, 'draining');
    const waiting = s.logs.find((l) => String(l.msg).startsWith('draining: listener closed'));
    assert.equal(waiting?.active, 1, 'the drain counts the removed route\'s request');
    up.release('old');
    assert.equal((await held).status, 200);
    assert.equal((await drained).cut, 0);
  } finally {
    up.releaseAll();
    await s.close();
  }
});

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
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { rawRequest, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const run = promisify(execFile);

let up: TestUpstream;
let s: Running;
before(async () => {
  up = await startUpstream();
  s = await startSluice(`
log: { level: error }
defaults:
  limit: { algorithm: fixed, initial: 8, min: 1, max: 100 }
  circuitBreaker: { enabled: true, consecutiveFailures: 3, openMs: 60000 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
});
after(async () => {
  await s.close();
  await up.close();
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
  const raw = (await rawRequest(s.url, `POST ${path} HTTP/1.1\r\n${lines.join('')}${framing}\r\n${body}`, 3000)).replace(
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

async function breakerState(): Promise<string> {
  const r = (await s.state()).routes[0] as unknown as { circuitBreaker: { state: string } };
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

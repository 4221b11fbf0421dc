import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '../src/core/clock.js';
import { createLogger, formatLine } from '../src/observability/logger.js';
import { eventually, send, startSluice } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

test('every log line about a request carries its x-request-id, on every refusal and error path', async () => {
  const dead = await startUpstream();
  const deadUrl = dead.url;
  await dead.close();
  const clock = new ManualClock(0);
  const s = await startSluice(
    `
lanes:
  - name: interactive
    queue: { maxLength: 1, maxWaitMs: 500 }
defaults:
  limit: { algorithm: fixed, initial: 1 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
  - name: dead
    match: { pathPrefix: /dead }
    upstream: ${deadUrl}
`,
    { clock },
  );
  const startup = s.logs.length;
  try {
    const held = send(`${s.url}/hold/l1`, { headers: { 'x-request-id': 'held-1' } });
    await up.waitHolding(1);
    const waited = send(`${s.url}/x`, { headers: { 'x-request-id': 'waited-2' } });
    await eventually(async () => (await s.state()).routes[0]!.queued === 1, 'queued');
    const full = await send(`${s.url}/x`, { headers: { 'x-request-id': 'full-3' } });
    assert.equal(full.status, 503);
    clock.advance(500);
    assert.equal((await waited).status, 503); // refused from the queue (a later callback)
    const broken = await send(`${s.url}/dead/x`, { headers: { 'x-request-id': 'broken-4' } });
    assert.equal(broken.status, 502);
    const generated = await send(`${s.url}/dead/y`);
    const genId = generated.headers['x-request-id'];
    up.release('l1');
    await held;

    // Each upstream error once (reply-from's own 'response errored' line, with a stack, is silenced).
    const about = (id: unknown) => s.logs.filter((l) => l.requestId === id).map((l) => `${l.msg}/${String(l.reason ?? l.code)}`);
    assert.deepEqual(about('full-3'), ['request refused/queue_full']);
    assert.deepEqual(about('waited-2'), ['request refused/queue_timeout']);
    assert.deepEqual(about('broken-4'), ['upstream error/upstream_refused']);
    assert.equal(typeof genId, 'string');
    assert.deepEqual(about(genId), ['upstream error/upstream_refused']);
    // Nothing was logged during the traffic without a request id.
    const traffic = s.logs.slice(startup);
    assert.equal(traffic.length, 4, JSON.stringify(traffic));
    for (const l of traffic) assert.equal(typeof l.requestId, 'string', JSON.stringify(l));
  } finally {
    up.releaseAll();
    await s.close();
  }
});

test('log.pretty writes one readable line per record: time, level, message, key=value fields, error stack below', () => {
  const out: string[] = [];
  const log = createLogger({ level: 'info', pretty: true }, { write: (s: string) => void out.push(s) });
  log.warn({ route: 'main', lane: 'batch', reason: 'queue_full', requestId: 'r-1', retryAfterSeconds: 2 }, 'request refused');
  log.info({ note: 'two words', nested: { a: 1 } }, 'hello');
  const err = new Error('boom');
  log.error({ err, route: 'main' }, 'upstream error');
  log.debug('not written at info');
  assert.equal(out.length, 3);
  assert.match(out[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN {2}request refused route=main lane=batch reason=queue_full requestId=r-1 retryAfterSeconds=2\n$/);
  assert.match(out[1]!, / INFO {2}hello note="two words" nested=\{"a":1\}\n$/);
  const [first, ...stack] = out[2]!.trimEnd().split('\n');
  assert.match(first!, / ERROR upstream error route=main$/);
  assert.match(stack[0]!, /^ {4}Error: boom$/);
  assert.ok(stack.length > 1 && stack.slice(1).every((l) => l.startsWith('        at ')), 'stack frames indented');
});

test('formatLine passes through a line that is not JSON', () => {
  assert.equal(formatLine('plain text'), 'plain text\n');
});

test('sluice --config with log.pretty: true logs human-readable lines', async () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-log-')), 'pretty.yaml');
  writeFileSync(
    file,
    `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nlog: { level: info, pretty: true }\nroutes:\n  - name: all\n    match: { pathPrefix: / }\n    upstream: ${up.url}\n`,
  );
  const child = spawn(process.execPath, [join(root, 'build/src/cli.js'), '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (c: Buffer) => {
        buf += c.toString();
        const found = buf.split('\n').slice(0, -1).find((l) => l.includes('event=started'));
        if (found !== undefined) resolve(found);
      });
      child.on('exit', (code) => reject(new Error(`exited early with ${code}`)));
    });
    assert.match(line, /^\S+ INFO {2}sluice \d+\.\d+\.\d+\S* listening on http:\/\/127\.0\.0\.1:\d+, admin on http:\/\/127\.0\.0\.1:\d+, 1 route: all → http:\/\/127\.0\.0\.1:\d+ \(\/, limit \w+ [\d.]+/);
    assert.match(line, / proxy=http:\/\/127\.0\.0\.1:\d+ admin=http:\/\/127\.0\.0\.1:\d+ /);
    // The routes are in the message: no JSON table at the end of a terminal line.
    assert.doesNotMatch(line, /^\{|routes=|\[\{/);
    // An answer from the admin port means the start-up code (signal handlers included) has run to the end.
    const admin = /admin=(\S+)/.exec(line)![1]!;
    assert.equal((await send(`${admin}/healthz`)).status, 200);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
  }
});

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startUpstream } from './helpers/upstream.js';
import { send } from './helpers/sluice.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = join(root, 'build/src/cli.js');

function run(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, SLUICE_CONFIG: '' } });
}

function tempFile(name: string, text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-cli-')), name);
  writeFileSync(file, text);
  return file;
}

test('sluice validate: exit 0 for the example config', () => {
  const r = run('validate', join(root, 'config.example.yaml'));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /config\.example\.yaml: ok/);
});

test('sluice validate: exit 2 with every problem as FILE:LINE:COL: path: message', () => {
  const file = tempFile('bad.yaml', 'listen: { port: 99999 }\nroutes:\n  - name: a\n    match: { pathPrefix: x }\n    upstream: http://127.0.0.1:1\n    bogus: 1\n');
  const r = run('validate', file);
  assert.equal(r.status, 2);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith(file));
  assert.deepEqual(
    lines.map((l) => l.slice(file.length).split(': ').slice(0, 2).join(': ')),
    [':1:17: listen.port', ':4:26: routes.0.match.pathPrefix', ':6:5: routes.0.bogus'],
  );
});

test('sluice --config with an invalid file exits 2 and never listens', () => {
  const file = tempFile('bad.yaml', 'routes: []\n');
  const r = run('--config', file);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /bad\.yaml:1:9: routes: /);
});

test('sluice --help prints usage and exits 0; an unknown argument exits 2', () => {
  const help = run('--help');
  assert.equal(help.status, 0);
  assert.match(help.stdout, /sluice --config FILE/);
  assert.equal(run('--bogus').status, 2);
  assert.equal(run().status, 2);
});

test('sluice --config starts the proxy, forwards, and exits 0 on SIGTERM', async () => {
  const up = await startUpstream();
  const file = tempFile(
    'ok.yaml',
    `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nshutdown: { readinessGraceMs: 0 }\nroutes:\n  - name: all\n    match: { pathPrefix: / }\n    upstream: ${up.url}\n    limit: { algorithm: fixed, initial: 7 }\n`,
  );
  const child = spawn(process.execPath, [cli, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const started = await new Promise<{ proxy: string; admin: string; msg: string; routes: { name: string; upstream: string }[] }>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (c: Buffer) => {
        buf += c.toString();
        for (const line of buf.split('\n')) {
          if (line.includes('"event":"started"')) resolve(JSON.parse(line) as { proxy: string; admin: string; msg: string; routes: { name: string; upstream: string }[] });
        }
      });
      child.on('exit', (code) => reject(new Error(`exited early with ${code}`)));
    });
    // The start-up line: a sentence for people, the same facts as fields.
    const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
    assert.equal(started.msg, `sluice ${version} listening on ${started.proxy}, admin on ${started.admin}, 1 route: all → ${up.url} (/, limit fixed 7)`);
    assert.deepEqual(started.routes.map((r) => [r.name, r.upstream]), [['all', up.url]]);
    const a = await send(`${started.proxy}/hello`);
    assert.equal(a.status, 200);
    assert.deepEqual(a.json(), { path: '/hello' });
    assert.equal((await send(`${started.admin}/healthz`)).status, 200);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    await up.close();
  }
});

// ---------------------------------------------------------------- start-up failures: one line, exit 1

const dist = join(root, 'dist/cli.js');

/** Holds a loopback port (a real listening socket) for the duration of `fn`. */
async function holdingPort<T>(fn: (port: number) => T | Promise<T>): Promise<T> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await fn((server.address() as AddressInfo).port);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

/** Starts the shipped CLI (dist/cli.js) on `yaml`; it must fail to start. */
function startFailing(yaml: string) {
  const file = tempFile('sluice.yaml', `${yaml}routes:\n  - name: all\n    match: { pathPrefix: / }\n    upstream: http://127.0.0.1:9\n`);
  return spawnSync(process.execPath, [dist, '--config', file], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, SLUICE_CONFIG: '', SLUICE_DEBUG: '' } });
}

/** Exactly one line on stderr, no stack frames, nothing on stdout but log lines. */
function oneLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, stderr);
  assert.doesNotMatch(stderr, /\n\s+at /);
  return lines[0]!;
}

test('a busy proxy port: one line naming the address and the cause, exit 1', async () => {
  await holdingPort((port) => {
    const r = startFailing(`listen: { host: 127.0.0.1, port: ${port} }\nadmin: { host: 127.0.0.1, port: 0 }\n`);
    assert.equal(r.status, 1);
    assert.equal(
      oneLine(r.stderr),
      `sluice: cannot listen on 127.0.0.1:${port} (proxy listener, listen.host/listen.port): address already in use (another process listens there) [EADDRINUSE]`,
    );
  });
});

test('a busy admin port: the line names the admin listener', async () => {
  await holdingPort((port) => {
    const r = startFailing(`listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: ${port} }\n`);
    assert.equal(r.status, 1);
    assert.match(oneLine(r.stderr), new RegExp(`^sluice: cannot listen on 127\\.0\\.0\\.1:${port} \\(admin listener, admin\\.host/admin\\.port\\): address already in use .*\\[EADDRINUSE\\]$`));
  });
});

test('an address this machine does not have: one line, EADDRNOTAVAIL, exit 1', () => {
  // 192.0.2.1 is TEST-NET-1 (RFC 5737): no interface has it; a failed bind sends nothing.
  const r = startFailing('listen: { host: 192.0.2.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n');
  assert.equal(r.status, 1);
  assert.equal(oneLine(r.stderr), 'sluice: cannot listen on 192.0.2.1:0 (proxy listener, listen.host/listen.port): address not available (no interface of this machine has it) [EADDRNOTAVAIL]');
});

test('sluice validate warns when the admin listener leaves loopback without admin.token (exit 0)', () => {
  const body = 'routes:\n  - name: a\n    match: { pathPrefix: / }\n    upstream: http://127.0.0.1:1\n';
  const open = run('validate', tempFile('open.yaml', `admin: { host: 0.0.0.0 }\n${body}`));
  assert.equal(open.status, 0);
  assert.match(open.stderr, /warning: admin listener on 0\.0\.0\.0 without admin\.token: POST endpoints \(\/admin\/reload\) answer only connections on loopback/);
  const closed = run('validate', tempFile('token.yaml', `admin: { host: 0.0.0.0, token: 0123456789abcdef0123 }\n${body}`));
  assert.equal(closed.status, 0);
  assert.equal(closed.stderr, '');
  assert.equal(run('validate', tempFile('loop.yaml', body)).stderr, '');
});

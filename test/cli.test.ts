import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
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
    `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nshutdown: { readinessGraceMs: 0 }\nroutes:\n  - name: all\n    match: { pathPrefix: / }\n    upstream: ${up.url}\n`,
  );
  const child = spawn(process.execPath, [cli, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const started = await new Promise<{ proxy: string; admin: string }>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (c: Buffer) => {
        buf += c.toString();
        for (const line of buf.split('\n')) {
          if (line.includes('"sluice started"')) resolve(JSON.parse(line) as { proxy: string; admin: string });
        }
      });
      child.on('exit', (code) => reject(new Error(`exited early with ${code}`)));
    });
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

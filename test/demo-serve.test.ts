/**
 * `npm run demo:serve` (dist/demo/serve.js), the target of the k6 scripts:
 * it starts the capacity upstream and Sluice from a config file, serves
 * through Sluice, exposes the upstream's control endpoint, and stops on
 * SIGINT. Also: loadtests/config.yaml is a valid policy.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/load.js';
import { send } from './helpers/sluice.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test('loadtests/config.yaml is a valid policy for the demo upstream', () => {
  const c = loadConfig(join(ROOT, 'loadtests/config.yaml'));
  assert.equal(c.routes[0]?.upstream, 'http://127.0.0.1:3000');
  assert.deepEqual(c.lanes.map((l) => l.name), ['interactive', 'batch']);
  assert.equal(c.listen.port, 8080);
});

test('demo:serve starts the upstream and Sluice from the config, serves, and stops on SIGINT', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-'));
  const [proxyPort, adminPort, upstreamPort] = [await freePort(), await freePort(), await freePort()];
  const yaml = readFileSync(join(ROOT, 'loadtests/config.yaml'), 'utf8')
    .replace('port: 8080', `port: ${proxyPort}`)
    .replace('port: 9901', `port: ${adminPort}`)
    .replace('http://127.0.0.1:3000', `http://127.0.0.1:${upstreamPort}`);
  const file = join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  const child = spawn(process.execPath, [join(ROOT, 'dist/demo/serve.js'), '--config', file], {
    env: { ...process.env, DEMO_WORKERS: '4', DEMO_SERVICE_MS: '10' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`demo:serve not ready:\n${out}`)), 15_000);
      const check = (): void => {
        if (out.includes('Ctrl-C')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', check);
      child.once('exit', () => reject(new Error(`demo:serve exited:\n${out}`)));
    });
    assert.match(out, new RegExp(`sluice: +http://127\\.0\\.0\\.1:${proxyPort}`));
    assert.match(out, /4 workers x 10 ms = 400 req\/s/);
    assert.match(out, new RegExp(`CAPACITY=400 loadtests/smoke\\.js`));

    const a = await send(`http://127.0.0.1:${proxyPort}/api/page`);
    assert.equal(a.status, 200);
    assert.equal(a.json<{ path: string }>().path, '/api/page');
    const control = await send(`http://127.0.0.1:${upstreamPort}/_control`);
    assert.equal(control.json<{ workers: number; stats: { served: number } }>().stats.served, 1);
    const state = await send(`http://127.0.0.1:${adminPort}/admin/state`);
    assert.equal(state.json<{ routes: { name: string }[] }>().routes[0]?.name, 'demo');

    child.kill('SIGINT');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('demo:serve refuses an invalid config with every problem listed and exit code 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-'));
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, 'routes:\n  - name: x\n    match: { pathPrefix: nope }\n    upstream: http://127.0.0.1:1\n');
  try {
    const child = spawn(process.execPath, [join(ROOT, 'dist/demo/serve.js'), '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    assert.equal(code, 2);
    assert.match(err, /bad\.yaml:3:\d+: routes\.0\.match\.pathPrefix/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

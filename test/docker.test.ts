/**
 * Docker cannot run here, so this test reads the Dockerfile and performs the
 * steps of its final stage in a temp directory standing in for the image's
 * filesystem: copy what it copies (honouring .dockerignore), install the
 * production dependencies with the same `npm ci --omit=dev` (from the local
 * npm cache when possible), start the ENTRYPOINT with the image's ENV, hit
 * /healthz, run the HEALTHCHECK command, and stop it with SIGTERM.
 * The build stage's output (/app/dist) is the dist/ that `npm run build`
 * made from the same sources at the start of `npm test`.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseDocument } from 'yaml';
import { eventually, send } from './helpers/sluice.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

interface Instruction {
  readonly cmd: string;
  readonly args: string;
}
interface Stage {
  readonly from: string;
  readonly name?: string;
  readonly steps: Instruction[];
}

/** Instructions by stage; line continuations joined, comments dropped. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && current === '')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    logical.push((current + line).trim());
    current = '';
  }
  const stages: Stage[] = [];
  for (const l of logical.filter((x) => x !== '')) {
    const [cmd = '', ...rest] = l.split(/\s+/);
    const args = l.slice(cmd.length).trim();
    if (cmd.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert.ok(m, `FROM ${args}`);
      stages.push({ from: m[1]!, ...(m[2] !== undefined && { name: m[2] }), steps: [] });
    } else {
      assert.ok(stages.length > 0, `${cmd} before FROM`);
      stages.at(-1)!.steps.push({ cmd: cmd.toUpperCase(), args: rest.length ? args : '' });
    }
  }
  return stages;
}

/** .dockerignore semantics: last matching pattern wins; a pattern matching a parent directory matches its files. */
function dockerIgnored(path: string, patterns: string[]): boolean {
  const toRe = (p: string) =>
    new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\0').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\0/g, '.*')}$`);
  const parts = path.split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const re = toRe((negate ? raw.slice(1) : raw).replace(/^\/+|\/+$/g, ''));
    if (prefixes.some((p) => re.test(p))) ignored = !negate;
  }
  return ignored;
}

/** ENV a=b c=d  ->  { a: 'b', c: 'd' } */
function envOf(args: string): Record<string, string> {
  return Object.fromEntries([...args.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]));
}

test('the Dockerfile: multi-stage, LTS slim base, non-root, ports, config path, healthcheck', () => {
  const stages = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  assert.equal(stages.length, 2);
  assert.equal(stages[0]!.name, 'build');
  const final = stages[1]!;
  for (const s of stages) {
    const m = /^node:(\d+)-slim$/.exec(s.from);
    assert.ok(m, `${s.from}: a node slim image`);
    assert.equal(Number(m[1]) % 2, 0, 'an even (LTS) Node major');
    assert.ok(Number(m[1]) >= 20, 'satisfies engines.node');
  }
  const all = (cmd: string) => final.steps.filter((s) => s.cmd === cmd).map((s) => s.args);
  const example = parse(readFileSync(join(root, 'config.example.yaml'), 'utf8')) as { listen: { port: number }; admin: { port: number } };
  assert.deepEqual(all('EXPOSE').join(' ').split(/\s+/).map(Number).sort(), [example.listen.port, example.admin.port].sort());
  const user = all('USER').at(-1) ?? '';
  assert.match(user, /^[1-9]\d*(:\d+)?$/, 'a numeric non-root user (Kubernetes runAsNonRoot can check it)');
  const env = Object.assign({}, ...all('ENV').map(envOf)) as Record<string, string>;
  assert.equal(env.SLUICE_CONFIG, '/etc/sluice/config.yaml');
  const health = new URL(env.SLUICE_HEALTHCHECK_URL ?? '');
  assert.equal(health.pathname, '/healthz');
  assert.equal(Number(health.port), example.admin.port);
  assert.ok(all('COPY').includes('config.example.yaml /etc/sluice/config.yaml'));
  assert.ok(all('COPY').includes('--from=build /app/dist ./dist'));
  assert.ok(all('RUN').some((r) => /^npm ci --omit=dev\b/.test(r)), 'production dependencies only');
  assert.match(all('HEALTHCHECK')[0] ?? '', /CMD \[/);
  assert.deepEqual(JSON.parse(all('ENTRYPOINT')[0] ?? ''), ['node', 'dist/cli.js']);
});

test('the Dockerfile steps, run outside Docker: production install, start, /healthz, HEALTHCHECK, SIGTERM exits 0', { timeout: 180_000 }, async () => {
  const stages = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  const build = stages.find((s) => s.name === 'build')!;
  const final = stages.at(-1)!;
  assert.ok(build.steps.some((s) => s.cmd === 'WORKDIR' && s.args === '/app'));
  assert.ok(build.steps.some((s) => s.cmd === 'RUN' && s.args === 'npm run build'));
  const ignore = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  // Everything either stage copies from the context must be in it.
  for (const s of [...build.steps, ...final.steps].filter((x) => x.cmd === 'COPY' && !x.args.startsWith('--from'))) {
    for (const src of s.args.split(/\s+/).slice(0, -1)) {
      assert.ok(existsSync(join(root, src)), `${src} exists`);
      assert.ok(!dockerIgnored(src, ignore), `${src} is not excluded by .dockerignore`);
    }
  }
  assert.ok(dockerIgnored('node_modules/x', ignore) && dockerIgnored('dist/cli.js', ignore) && dockerIgnored('.env', ignore));

  const image = mkdtempSync(join(tmpdir(), 'sluice-image-'));
  const inImage = (p: string, workdir: string) => join(image, isAbsolute(p) ? p : join(workdir, p));
  let workdir = '/';
  let env: Record<string, string> = {};
  let user = '';
  try {
    for (const step of final.steps) {
      switch (step.cmd) {
        case 'ENV':
          env = { ...env, ...envOf(step.args) };
          break;
        case 'WORKDIR':
          workdir = step.args;
          mkdirSync(inImage('.', workdir), { recursive: true });
          break;
        case 'COPY': {
          const words = step.args.split(/\s+/);
          const fromBuild = words[0] === '--from=build';
          const sources = words.slice(fromBuild ? 1 : 0, -1);
          const dest = words.at(-1)!;
          for (const src of sources) {
            // The build stage ran in /app: its /app/dist is this repo's dist/.
            const from = fromBuild ? join(root, src.replace(/^\/app\//, '')) : join(root, src);
            const to = dest.endsWith('/') ? join(inImage(dest, workdir), src.split('/').at(-1)!) : inImage(dest, workdir);
            mkdirSync(dirname(to), { recursive: true });
            cpSync(from, to, { recursive: true });
          }
          break;
        }
        case 'RUN':
          for (const part of step.args.split('&&').map((x) => x.trim())) {
            if (part === 'npm cache clean --force') continue; // would wipe this machine's cache; irrelevant outside an image layer
            assert.match(part, /^npm ci /, `a RUN step this test knows how to perform: ${part}`);
            // --prefer-offline: the local cache has every package after the `npm ci` that preceded `npm test`.
            const r = spawnSync('npm', [...part.split(/\s+/).slice(1), '--prefer-offline'], {
              cwd: inImage('.', workdir),
              encoding: 'utf8',
              timeout: 150_000,
              env: { ...process.env, ...env },
            });
            assert.equal(r.status, 0, r.stderr);
          }
          break;
        case 'USER':
          user = step.args;
          break;
        case 'EXPOSE':
        case 'HEALTHCHECK':
        case 'ENTRYPOINT':
        case 'CMD':
          break;
        default:
          assert.fail(`a Dockerfile instruction this test does not perform: ${step.cmd}`);
      }
    }
    assert.ok(user !== '' && user !== 'root' && user !== '0');
    const app = inImage('.', workdir);
    assert.ok(existsSync(join(app, 'node_modules/fastify')), 'runtime dependencies installed');
    assert.ok(!existsSync(join(app, 'node_modules/typescript')), 'no dev dependencies');
    assert.ok(!existsSync(join(app, 'src')) && existsSync(join(app, 'dist/cli.js')));

    // As `docker run -e ... -v my.yaml:/etc/sluice/config.yaml`: the image's config, moved to loopback port 0.
    const configPath = inImage(env.SLUICE_CONFIG!, workdir);
    const doc = parseDocument(readFileSync(configPath, 'utf8'));
    doc.setIn(['listen', 'host'], '127.0.0.1');
    doc.setIn(['listen', 'port'], 0);
    doc.setIn(['admin', 'port'], 0);
    doc.setIn(['shutdown', 'readinessGraceMs'], 0);
    writeFileSync(configPath, doc.toString());

    const entry = JSON.parse(final.steps.find((s) => s.cmd === 'ENTRYPOINT')!.args) as string[];
    assert.equal(entry[0], 'node');
    const child = spawn(process.execPath, entry.slice(1), {
      cwd: app,
      env: { PATH: process.env.PATH ?? '', ...env, SLUICE_CONFIG: configPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      await eventually(() => out.includes('"event":"started"') || child.exitCode !== null, 'started', 20_000);
      const started = JSON.parse(out.split('\n').find((l) => l.includes('"event":"started"')) ?? 'null') as { admin: string } | null;
      assert.ok(started, `did not start: ${stderr}`);
      assert.equal((await send(`${started.admin}/healthz`)).status, 200);

      const health = final.steps.find((s) => s.cmd === 'HEALTHCHECK')!.args;
      const cmd = JSON.parse(health.slice(health.indexOf('CMD') + 3).trim()) as string[];
      assert.equal(cmd[0], 'node');
      const check = (url: string) =>
        spawnSync(process.execPath, cmd.slice(1), { env: { ...env, SLUICE_HEALTHCHECK_URL: url }, timeout: 10_000 }).status;
      assert.equal(check(`${started.admin}/healthz`), 0, 'HEALTHCHECK passes');
      assert.equal(check(`${started.admin}/nope`), 1, 'HEALTHCHECK fails on a non-2xx');

      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
  } finally {
    rmSync(image, { recursive: true, force: true });
  }
});

/**
 * The oldest Node.js the project claims (package.json `engines.node`, as the
 * README states it) must be one every installed package accepts: `npm ci`
 * only warns about engines, so a dependency that moved on to a newer Node
 * would otherwise go unnoticed until someone runs the old one.
 *
 * light-my-request (fastify's inject) asks for cookie@^2, which requires
 * Node >= 22 and is ESM-only; package.json overrides it with cookie@^1.1.1,
 * which supports Node >= 18 and has the same stringifySetCookie({ name, value }).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fastify from 'fastify';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };

type Version = [number, number, number];

function parseVersion(v: string): { v: Version; wild: number } {
  const parts = v.replace(/^v/, '').split('.');
  const nums: number[] = [];
  for (const p of parts) {
    if (p === 'x' || p === '*' || p === '') break;
    if (!/^\d+$/.test(p)) throw new Error(`unsupported version: ${v}`);
    nums.push(Number(p));
  }
  const wild = 3 - nums.length;
  while (nums.length < 3) nums.push(0);
  return { v: nums as Version, wild };
}

function cmp(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return (a[i] as number) - (b[i] as number);
  return 0;
}

/** Whether `version` satisfies one comparator (>=, >, <=, <, ^, ~, =, or a bare/partial version). */
function satisfiesOne(version: Version, comparator: string): boolean {
  const m = /^(>=|<=|>|<|\^|~|=)?\s*(.+)$/.exec(comparator);
  if (!m) throw new Error(`unsupported comparator: ${comparator}`);
  const op = m[1] ?? '';
  const { v, wild } = parseVersion(m[2] as string);
  const c = cmp(version, v);
  if (op === '>=') return c >= 0;
  if (op === '>') return c > 0;
  if (op === '<=') return c <= 0;
  if (op === '<') return c < 0;
  // ^: same major (or same minor for 0.x); ~: same minor; bare or partial: the wildcarded parts are free.
  const fixed = op === '^' ? (v[0] > 0 || wild >= 2 ? 1 : 2) : op === '~' ? (wild >= 2 ? 1 : 2) : 3 - wild;
  for (let i = 0; i < fixed; i++) if (version[i] !== v[i]) return false;
  return op === '' || op === '=' ? true : c >= 0;
}

/** npm's range syntax as used in `engines` fields: alternatives (||) of space-separated comparators. */
function satisfies(version: string, range: string): boolean {
  const v = parseVersion(version).v;
  return range
    .split('||')
    .map((alt) => alt.trim().replace(/(>=|<=|>|<|\^|~|=)\s+/g, '$1'))
    .some((alt) => alt === '' || alt === '*' || alt.split(/\s+/).every((c) => satisfiesOne(v, c)));
}

/** Every package.json under node_modules (nested ones too), with its name and engines.node. */
function installed(dir: string, out: { name: string; node: string }[] = []): { name: string; node: string }[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name === '.bin') continue;
    const path = join(dir, entry.name);
    if (entry.name.startsWith('@')) {
      installed(path, out);
      continue;
    }
    const file = join(path, 'package.json');
    if (existsSync(file)) {
      const p = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string; engines?: { node?: string } };
      if (typeof p.engines?.node === 'string') out.push({ name: `${p.name}@${p.version}`, node: p.engines.node });
    }
    if (existsSync(join(path, 'node_modules'))) installed(join(path, 'node_modules'), out);
  }
  return out;
}

test('the range checker reads the engines forms packages use', () => {
  assert.equal(satisfies('20.18.1', '>=20.18.1'), true);
  assert.equal(satisfies('20.18.0', '>=20.18.1'), false);
  assert.equal(satisfies('20.18.1', '>=22'), false);
  assert.equal(satisfies('20.18.1', '^16 || ^18 || >=20'), true);
  assert.equal(satisfies('20.18.1', '^18'), false);
  assert.equal(satisfies('20.18.1', '>= 10.x'), true);
  assert.equal(satisfies('20.18.1', '>=14 <20'), false);
  assert.equal(satisfies('20.18.1', '~20.18.0'), true);
  assert.equal(satisfies('20.18.1', '20.x'), true);
});

test('every installed package accepts the oldest Node.js the project claims', () => {
  const oldest = /^>=\s*(\d+\.\d+\.\d+)$/.exec(pkg.engines.node)?.[1];
  assert.ok(oldest, `engines.node is a plain ">=X.Y.Z": ${pkg.engines.node}`);
  const packages = installed(join(root, 'node_modules'));
  assert.ok(packages.length > 10, 'node_modules was read');
  const refusing = packages.filter((p) => !satisfies(oldest, p.node)).map((p) => `${p.name} requires node ${p.node}`);
  assert.deepEqual(refusing, []);
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.ok(readme.includes(`Node.js >= ${oldest}`), `README states Node.js >= ${oldest}`);
});

test('fastify.inject (light-my-request with the overridden cookie) sends cookies', async () => {
  const app = fastify();
  app.get('/', async (req) => ({ cookie: req.headers.cookie }));
  try {
    const r = await app.inject({ method: 'GET', url: '/', cookies: { a: 'b c', d: 'e' } });
    assert.deepEqual(r.json(), { cookie: 'a=b%20c; d=e' });
  } finally {
    await app.close();
  }
});

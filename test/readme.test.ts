/**
 * README.md: the quick start's policy is the one in examples/ (valid, at most
 * 15 lines), and every link points inside the repository at something that
 * exists.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join, normalize, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/load.js';
import { ERRORS, REFUSALS, type ErrorCode } from '../src/proxy/errors.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');

test('the quick start opens the README: a policy of at most 15 lines, the one in examples/, that validates', () => {
  const quick = readme.indexOf('## Quick start');
  assert.ok(quick > 0 && quick < readme.indexOf('## Concepts'), 'the quick start comes before the concepts');
  assert.ok(readme.slice(0, quick).split('\n').length < 25, 'and near the top');
  const yaml = /```yaml\n([\s\S]*?)```/.exec(readme.slice(quick))?.[1];
  assert.ok(yaml, 'a yaml block in the quick start');
  assert.ok(yaml.trimEnd().split('\n').length <= 15, `${yaml.split('\n').length} lines`);
  assert.equal(yaml, readFileSync(join(root, 'examples/quickstart.yaml'), 'utf8'));
  const config = loadConfig(join(root, 'examples/quickstart.yaml'));
  assert.deepEqual(
    config.routes.map((r) => r.name),
    ['hello'],
  );
  assert.ok(readme.slice(quick).includes('node dist/cli.js --config examples/quickstart.yaml'), 'the start command');
});

test('the first commands are the tests and the demo; the benchmark comes later', () => {
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  assert.match(firstBlock, /^npm ci && npm test\b/m);
  assert.match(firstBlock, /^npm run demo\b/m);
  assert.doesNotMatch(firstBlock, /bench/);
});

test('every link in the README points inside the repository at a file that exists', () => {
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] as string).filter((l) => !l.startsWith('#'));
  assert.ok(links.length > 5);
  for (const link of links) {
    assert.doesNotMatch(link, /^[a-z][a-z0-9+.-]*:/i, `${link}: links outside the repository`);
    const path = normalize(link.split('#')[0] as string);
    assert.ok(!relative(root, join(root, path)).startsWith('..') && !path.startsWith('/'), `${link}: outside the repository`);
    assert.ok(existsSync(join(root, path)), `${link}: no such file`);
  }
});

test('the HTTP contract table lists every answer code Sluice gives, with its status', () => {
  const table = readme.slice(readme.indexOf('## The HTTP contract'), readme.indexOf('## Running'));
  const rows = table.split('\n').filter((l) => /^\| \d/.test(l));
  const codes: [string, number][] = [
    ...(Object.keys(ERRORS) as ErrorCode[]).map((c): [string, number] => [c, ERRORS[c].status]),
    ...Object.entries(REFUSALS),
  ];
  for (const [code, status] of codes) {
    const row = rows.find((r) => r.includes(`\`${code}\``));
    assert.ok(row !== undefined, `${code} is not in the contract table`);
    assert.match(row, new RegExp(`^\\| [^|]*\\b${status}\\b`), `${code}: status ${status}`);
  }
});

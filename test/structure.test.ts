/**
 * The house rules about the code's shape, checked on src/ as it is
 * (docs/architecture.md, "Who may import whom"): no function over 80 lines,
 * no import circle, imports pointing down between rooms, and core/ pure.
 * Read with the TypeScript parser, so a rule broken by a change fails here
 * instead of waiting for someone to notice.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const MAX_FUNCTION_LINES = 80;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

const files = sources(SRC).map((file) => ({
  file,
  rel: relative(SRC, file),
  ast: ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true),
}));

/** Relative imports (and re-exports) of a file, resolved to src/-relative .ts paths. */
function importsOf(f: (typeof files)[number]): { target: string; typeOnly: boolean }[] {
  const out: { target: string; typeOnly: boolean }[] = [];
  for (const s of f.ast.statements) {
    if (!(ts.isImportDeclaration(s) || ts.isExportDeclaration(s)) || s.moduleSpecifier === undefined) continue;
    const spec = (s.moduleSpecifier as ts.StringLiteral).text;
    if (!spec.startsWith('.')) continue;
    const typeOnly = ts.isImportDeclaration(s) ? (s.importClause?.isTypeOnly ?? false) : s.isTypeOnly;
    out.push({ target: relative(SRC, resolve(dirname(f.file), spec.replace(/\.js$/, '.ts'))), typeOnly });
  }
  return out;
}

/** Package (and node:) imports of a file. */
function packagesOf(f: (typeof files)[number]): string[] {
  return f.ast.statements
    .filter((s): s is ts.ImportDeclaration => ts.isImportDeclaration(s))
    .map((s) => (s.moduleSpecifier as ts.StringLiteral).text)
    .filter((spec) => !spec.startsWith('.'));
}

/** The room a src/-relative path belongs to: its first folder, or the file itself at the top. */
const roomOf = (rel: string) => (rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel.replace(/\.ts$/, ''));

test(`no function in src/ is longer than ${MAX_FUNCTION_LINES} lines`, () => {
  const long: string[] = [];
  for (const f of files) {
    const visit = (n: ts.Node): void => {
      if (ts.isFunctionLike(n) && 'body' in n && n.body !== undefined) {
        const first = f.ast.getLineAndCharacterOfPosition(n.getStart()).line;
        const last = f.ast.getLineAndCharacterOfPosition(n.end).line;
        if (last - first + 1 > MAX_FUNCTION_LINES) long.push(`${f.rel}:${first + 1} (${last - first + 1} lines)`);
      }
      ts.forEachChild(n, visit);
    };
    visit(f.ast);
  }
  assert.deepEqual(long, []);
});

test('no import circle between the files of src/', () => {
  const graph = new Map(files.map((f) => [f.rel, importsOf(f).map((i) => i.target)]));
  const state = new Map<string, 'open' | 'done'>();
  const circles: string[] = [];
  const path: string[] = [];
  const visit = (u: string): void => {
    state.set(u, 'open');
    path.push(u);
    for (const v of graph.get(u) ?? []) {
      if (state.get(v) === 'open') circles.push([...path.slice(path.indexOf(v)), v].join(' -> '));
      else if (!state.has(v) && graph.has(v)) visit(v);
    }
    path.pop();
    state.set(u, 'done');
  };
  for (const u of graph.keys()) if (!state.has(u)) visit(u);
  assert.deepEqual(circles, []);
});

test('imports point down between rooms: core and config below everything, protocols below proxy, proxy below observability, instance and app above', () => {
  /** What each room may import besides itself (types included). */
  const MAY: Readonly<Record<string, readonly string[]>> = {
    config: [],
    core: ['config'],
    ratestore: ['core', 'config'],
    protocols: ['core', 'config'],
    proxy: ['protocols', 'ratestore', 'core', 'config'],
    observability: ['proxy', 'protocols', 'core', 'config'],
    instance: ['observability', 'proxy', 'protocols', 'core', 'config'],
  };
  const wrong: string[] = [];
  for (const f of files) {
    const allowed = MAY[roomOf(f.rel)];
    if (allowed === undefined) continue; // app, cli, version, demo, soak compose everything
    for (const { target } of importsOf(f)) {
      const to = roomOf(target);
      if (to !== roomOf(f.rel) && !allowed.includes(to)) wrong.push(`${f.rel} -> ${target}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('core/ is pure: no HTTP, logging or metrics packages, and no clock or randomness read outside clock.ts', () => {
  const IO = /^(fastify|@fastify\/|undici|prom-client|pino|@redis\/|redis|node:(http|https|http2|net|tls|dgram|fs|child_process))/;
  const impure: string[] = [];
  for (const f of files.filter((x) => x.rel.startsWith('core/'))) {
    for (const p of packagesOf(f)) if (IO.test(p)) impure.push(`${f.rel} imports ${p}`);
    if (f.rel === 'core/clock.ts') continue; // systemClock: the one place the process clock is read
    const text = f.ast.getFullText();
    const visit = (n: ts.Node): void => {
      if (ts.isPropertyAccessExpression(n)) {
        const name = n.getText(f.ast);
        if (name === 'Date.now' || name === 'performance.now' || name === 'Math.random') impure.push(`${f.rel}: ${name}`);
      }
      ts.forEachChild(n, visit);
    };
    if (/Date\.now|performance\.now|Math\.random/.test(text)) visit(f.ast);
  }
  assert.deepEqual(impure, []);
});

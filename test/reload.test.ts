/**
 * Hot reload over real sockets: the config file is rewritten and reloaded
 * (app.reload(), POST /admin/reload) while requests are in flight.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { ReloadResult } from '../src/app.js';
import type { RouteConfig } from '../src/config/types.js';
import type { Limit, Sample } from '../src/core/limit/limit.js';
import { startCli } from './helpers/cli.js';
import { scrape } from './helpers/prom.js';
import { eventually, JSON_POST, send, startSluiceFile, writePolicy, type Answer, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up1: TestUpstream;
let up2: TestUpstream;
before(async () => {
  up1 = await startUpstream();
  up2 = await startUpstream();
});
after(async () => {
  await up1.close();
  await up2.close();
});

interface Route {
  name: string;
  prefix: string;
  upstream: string;
  limit?: number;
  extra?: string;
}

/** A policy: the given routes, two lanes, short timeouts. */
function policy(routes: Route[], o: { maxLength?: number; batchMaxShare?: number; top?: string } = {}): string {
  return `
log: { level: info }
${o.top ?? ''}
lanes:
  - name: interactive
    queue: { maxLength: ${o.maxLength ?? 50}, maxWaitMs: 5000 }
  - name: batch
    maxShare: ${o.batchMaxShare ?? 0.5}
    queue: { maxLength: 50, maxWaitMs: 5000 }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
defaults:
  timeouts: { connectMs: 1000, headersMs: 5000, bodyMs: 5000 }
  # Queues here are deep on purpose; the route must not shed batch work for it.
  overload: { enterMs: 600000, exitMs: 1 }
routes:
${routes
  .map(
    (r) => `  - name: ${r.name}
    match: { pathPrefix: ${r.prefix} }
    upstream: ${r.upstream}
    limit: { algorithm: fixed, initial: ${r.limit ?? 4}, min: 1, max: 100 }
${r.extra ?? ''}`,
  )
  .join('\n')}`;
}

/** A scripted limit (stands in for an adaptive one): one step up per successful sample, capped at max. */
class StepLimit implements Limit {
  constructor(
    public current: number,
    private readonly max: number,
  ) {}
  onSample(s: Sample): void {
    if (!s.dropped) this.current = Math.min(this.max, this.current + 1);
  }
}
const stepLimits = { createLimit: (r: RouteConfig) => new StepLimit(r.limit.initial, r.limit.max) };

async function withSluice(file: string, fn: (s: Running, reloads: ReloadResult[]) => Promise<void>, deps = {}): Promise<void> {
  const reloads: ReloadResult[] = [];
  const s = await startSluiceFile(file, { onReload: (r) => reloads.push(r), ...deps });
  try {
    await fn(s, reloads);
  } finally {
    up1.releaseAll();
    up2.releaseAll();
    await s.close();
  }
}

function reloadOk(s: Running): ReloadResult & { result: 'success' } {
  const r = s.app.reload();
  assert.equal(r.result, 'success', JSON.stringify(r));
  return r as ReloadResult & { result: 'success' };
}

async function route(s: Running, name: string) {
  const r = (await s.state()).routes.find((x) => x.name === name);
  assert.ok(r, `route ${name} in /admin/state`);
  return r;
}

test('under steady load through repeated reloads, no request fails', { timeout: 60_000 }, async () => {
  const main: Route = { name: 'main', prefix: '/', upstream: up1.url, limit: 2 };
  const configs = [
    policy([main], { maxLength: 20 }),
    policy([main, { name: 'other', prefix: '/other', upstream: up2.url }], { batchMaxShare: 1 }),
    policy([{ ...main, upstream: up2.url }, { name: 'other', prefix: '/other', upstream: up1.url }]),
    policy([{ ...main, limit: 6 }], { maxLength: 80 }),
    policy([main], { top: 'mode: shadow' }),
    policy([main]),
  ];
  const file = writePolicy(configs[0]!);
  await withSluice(file, async (s, reloads) => {
    const total = 480;
    const statuses = new Map<number | string, number>();
    let sent = 0;
    let done = 0;
    const stopAt = Date.now() + 30_000;
    const worker = async (w: number) => {
      while (sent < total && Date.now() < stopAt) {
        const i = sent++;
        const path = i % 3 === 0 ? `/other/delay/${2 + (i % 5)}` : `/delay/${2 + (i % 5)}`;
        const headers: Record<string, string> = w % 2 ? { 'x-priority': 'batch' } : {};
        const a = await send(`${s.url}${path}`, { headers, signal: AbortSignal.timeout(5000) }).catch(
          (e: Error) => ({ status: e.name }) as unknown as Answer,
        );
        statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
        done++;
      }
    };
    const load = Promise.all(Array.from({ length: 12 }, (_, w) => worker(w)));
    // Reload at intervals measured in completed requests, not in time.
    let queuedAtReload = 0;
    for (let k = 1; k < configs.length * 2; k++) {
      const target = Math.floor((total * k) / (configs.length * 2));
      await eventually(() => done >= target || sent >= total, `${target} requests done`, 30_000);
      writePolicy(configs[k % configs.length]!, file);
      queuedAtReload += s.app.state().routes.reduce((n, r) => n + r.queued, 0);
      reloadOk(s);
    }
    await load;
    assert.ok(queuedAtReload > 0, 'some reloads happened while requests were queued');
    assert.equal(done, total, 'the load ran to the end');
    assert.deepEqual([...statuses], [[200, total]]);
    assert.ok(reloads.length >= configs.length && reloads.every((r) => r.result === 'success'));
    await eventually(async () => (await s.state()).routes.every((r) => r.inflight === 0 && r.queued === 0), 'all settled');
  });
});

test('a surviving route keeps its learned limit; a changed limit config starts from its new initial', { timeout: 60_000 }, async () => {
  const main: Route = { name: 'main', prefix: '/', upstream: up1.url, limit: 2 };
  const file = writePolicy(policy([main]));
  await withSluice(
    file,
    async (s) => {
      for (let i = 0; i < 5; i++) assert.equal((await send(`${s.url}/x`)).status, 200);
      assert.equal((await route(s, 'main')).limit, 7);
      writePolicy(policy([main], { maxLength: 10, batchMaxShare: 0.25 }), file);
      const r = reloadOk(s);
      assert.deepEqual(r.routes.changed, ['main']);
      assert.deepEqual(r.routes.limitReset, []);
      assert.equal((await route(s, 'main')).limit, 7, 'lanes changed: the limit stays');
      writePolicy(policy([{ ...main, limit: 3 }], { maxLength: 10, batchMaxShare: 0.25 }), file);
      assert.deepEqual(reloadOk(s).routes.limitReset, ['main']);
      assert.equal((await route(s, 'main')).limit, 3);
    },
    stepLimits,
  );
});

test('a surviving route keeps its in-flight count: at its limit, a request after the reload waits', { timeout: 60_000 }, async () => {
  const main: Route = { name: 'main', prefix: '/', upstream: up1.url, limit: 1 };
  const file = writePolicy(policy([main]));
  await withSluice(file, async (s) => {
    const held = send(`${s.url}/hold/k1`);
    await up1.waitHolding(1);
    writePolicy(policy([main], { maxLength: 5 }), file);
    reloadOk(s);
    const next = send(`${s.url}/hold/k2`);
    await eventually(async () => (await route(s, 'main')).queued === 1, 'k2 queued behind k1');
    assert.equal(up1.holding(), 1);
    up1.release('k1');
    assert.equal((await held).status, 200);
    await up1.waitHolding(1);
    up1.release('k2');
    assert.equal((await next).status, 200);
  });
});

test('an invalid file keeps the running config: 422 with every problem at file:line:col, logged, counted', { timeout: 60_000 }, async () => {
  const file = writePolicy(policy([{ name: 'main', prefix: '/', upstream: up1.url }]));
  await withSluice(file, async (s, reloads) => {
    writeFileSync(file, 'routes:\n  - name: main\n    match: { pathPrefix: nope }\n    upstream: http://127.0.0.1:1\n    limit: { initial: 0 }\n');
    const a = await send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers: JSON_POST });
    assert.equal(a.status, 422);
    const body = a.json<{ result: string; reason: string; message: string; problems: { line: number; col: number; path: string }[] }>();
    assert.equal(body.result, 'error');
    assert.equal(body.reason, 'invalid_config');
    assert.deepEqual(
      body.problems.map((p) => [p.line, p.col, p.path]),
      [
        [3, 26, 'routes.0.match.pathPrefix'],
        [5, 23, 'routes.0.limit.initial'],
      ],
    );
    assert.match(body.message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:26: routes\\.0\\.match\\.pathPrefix: `));
    const line = s.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('config reload failed'));
    assert.ok(line, 'logged');
    assert.equal(line.level, 50);
    assert.match(String((line.problems as string[])[0]), /:3:26: routes\.0\.match\.pathPrefix/);
    assert.deepEqual(
      reloads.map((r) => r.result),
      ['error'],
    );
    // The running config still routes to the old upstream.
    const ok = await send(`${s.url}/still`);
    assert.equal(ok.status, 200);
    assert.ok(up1.seen.includes('/still'));

    writeFileSync(file, '{{ not yaml');
    assert.equal((await send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers: JSON_POST })).status, 422);
    assert.equal((await send(`${s.url}/still-2`)).status, 200);
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_config_reloads_total', { result: 'error' }), 2);
    assert.equal(m.value('sluice_config_reloads_total', { result: 'success' }), 0);
    // What SluiceConfigReloadFailed reads: the file on disk is not what runs.
    assert.equal(m.value('sluice_config_last_reload_successful'), 0);
  });
});

test('POST /admin/reload applies a valid file and reports what changed', { timeout: 60_000 }, async () => {
  const main: Route = { name: 'main', prefix: '/', upstream: up1.url };
  const file = writePolicy(policy([main, { name: 'old', prefix: '/old', upstream: up1.url }]));
  await withSluice(file, async (s, reloads) => {
    writePolicy(policy([{ ...main, limit: 8 }, { name: 'reports', prefix: '/reports', upstream: up2.url }]), file);
    const a = await send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers: JSON_POST });
    assert.equal(a.status, 200);
    const body = a.json<{ result: string; routes: Record<string, string[]>; warnings: string[] }>();
    assert.equal(body.result, 'success');
    assert.deepEqual(body.routes, { added: ['reports'], removed: ['old'], changed: ['main'], unchanged: [], limitReset: ['main'] });
    assert.deepEqual(body.warnings, []);
    assert.equal(reloads.length, 1);
    assert.equal((await send(`${s.url}/reports/r1`)).status, 200);
    assert.ok(up2.seen.includes('/reports/r1'));
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_config_reloads_total', { result: 'success' }), 1);
    assert.equal(m.value('sluice_config_last_reload_successful'), 1);
    assert.equal(m.value('sluice_requests_total', { route: 'reports', lane: 'interactive', outcome: 'admitted' }), 1);
    assert.deepEqual(
      (await s.state()).routes.map((r) => [r.name, r.limit]),
      [
        ['main', 8],
        ['reports', 4],
      ],
    );
  });
});

test('a removed route finishes what it holds, takes nothing new, then closes its upstream connections', { timeout: 60_000 }, async () => {
  const api: Route = { name: 'api', prefix: '/api', upstream: up1.url };
  const file = writePolicy(policy([api, { name: 'legacy', prefix: '/legacy', upstream: up2.url, limit: 1 }]));
  await withSluice(file, async (s) => {
    const inflight = send(`${s.url}/legacy/hold/r1`);
    await up2.waitHolding(1);
    const queued = send(`${s.url}/legacy/hold/r2`);
    await eventually(async () => (await route(s, 'legacy')).queued === 1, 'r2 queued');
    writePolicy(policy([api]), file);
    assert.deepEqual(reloadOk(s).routes.removed, ['legacy']);
    const after = await send(`${s.url}/legacy/new`);
    assert.equal(after.status, 404, 'the route is gone for new requests');
    assert.ok(!up2.seen.includes('/legacy/new'));
    up2.release('r1');
    assert.equal((await inflight).status, 200);
    // The queued request was admitted under the old config: it is still served.
    await up2.waitHolding(1);
    up2.release('r2');
    assert.equal((await queued).status, 200);
    await eventually(async () => (await up2.connections()) === 0, 'the retired pool closed its connections');
    assert.ok(s.logs.some((l) => l.msg === 'retired upstream pool closed' && l.route === 'legacy'));
  });
});

test('a route whose upstream changes: in-flight requests finish on the old upstream, new ones go to the new one', { timeout: 60_000 }, async () => {
  const file = writePolicy(policy([{ name: 'main', prefix: '/', upstream: up1.url, limit: 4 }]));
  await withSluice(file, async (s) => {
    const old = send(`${s.url}/hold/u1`);
    await up1.waitHolding(1);
    writePolicy(policy([{ name: 'main', prefix: '/', upstream: up2.url, limit: 4 }]), file);
    reloadOk(s);
    assert.equal((await send(`${s.url}/moved`)).status, 200);
    assert.ok(up2.seen.includes('/moved'));
    assert.ok(!up1.seen.includes('/moved'));
    up1.release('u1');
    const a = await old;
    assert.equal(a.status, 200);
    assert.deepEqual(a.json(), { id: 'u1' });
    await eventually(async () => (await up1.connections()) === 0, 'the old pool closed');
  });
});

test('listener addresses cannot change on reload: a warning says so, the rest applies', { timeout: 60_000 }, async () => {
  const main: Route = { name: 'main', prefix: '/', upstream: up1.url };
  const file = writePolicy(policy([main]));
  await withSluice(file, async (s) => {
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: 18080 }\nadmin: { host: 127.0.0.1, port: 0 }\n${policy([main, { name: 'extra', prefix: '/extra', upstream: up2.url }])}`,
    );
    const r = reloadOk(s);
    assert.equal(r.warnings.length, 1);
    assert.match(r.warnings[0]!, /^listen: listener addresses cannot change on reload; still on 127\.0\.0\.1:0 \(restart to move to 127\.0\.0\.1:18080\)/);
    assert.ok(s.logs.some((l) => l.level === 40 && String(l.msg).includes('listener addresses cannot change')));
    assert.equal((await send(`${s.url}/extra/x`)).status, 200, 'the same listener serves the new route');
    assert.ok(up2.seen.includes('/extra/x'));
  });
});

test('a route switched from enforce to shadow by reload stops refusing', { timeout: 60_000 }, async () => {
  const main: Route = { name: 'main', prefix: '/', upstream: up1.url, limit: 1 };
  const file = writePolicy(policy([main], { maxLength: 0 }));
  await withSluice(file, async (s) => {
    const held = send(`${s.url}/hold/s1`);
    await up1.waitHolding(1);
    assert.equal((await send(`${s.url}/refused`)).status, 503);
    writePolicy(policy([{ ...main, extra: '    mode: shadow\n' }], { maxLength: 0 }), file);
    reloadOk(s);
    assert.equal((await send(`${s.url}/forwarded`)).status, 200);
    assert.ok(up1.seen.includes('/forwarded'));
    up1.releaseAll();
    await held;
  });
});

test('SIGHUP reloads the file in the running CLI; an invalid file is logged with file:line:col and changes nothing', { timeout: 60_000 }, async () => {
  const main: Route = { name: 'main', prefix: '/api', upstream: up1.url };
  const file = writePolicy(policy([main], { top: 'shutdown: { readinessGraceMs: 0 }' }));
  const cli = await startCli(file);
  try {
    assert.equal((await send(`${cli.proxy}/hup/before`)).status, 404);
    writePolicy(policy([main, { name: 'hup', prefix: '/hup', upstream: up2.url }], { top: 'shutdown: { readinessGraceMs: 0 }' }), file);
    cli.child.kill('SIGHUP');
    await eventually(() => cli.logs.some((l) => l.msg === 'config reloaded'), 'reloaded', 10_000);
    assert.deepEqual(cli.logs.find((l) => l.msg === 'config reloaded')?.added, ['hup']);
    assert.equal((await send(`${cli.proxy}/hup/after`)).status, 200);
    assert.ok(up2.seen.includes('/hup/after'));

    writeFileSync(file, 'routes:\n  - name: x\n    bogus: 1\n');
    cli.child.kill('SIGHUP');
    await eventually(() => cli.logs.some((l) => String(l.msg).startsWith('config reload failed')), 'reload failed', 10_000);
    const failed = cli.logs.find((l) => String(l.msg).startsWith('config reload failed'))!;
    assert.ok((failed.problems as string[]).some((p) => p.startsWith(`${file}:3:5: routes.0.bogus: `)), JSON.stringify(failed.problems));
    assert.equal((await send(`${cli.proxy}/hup/still`)).status, 200, 'the running config stays');
    cli.child.kill('SIGTERM');
    assert.equal(await cli.exited, 0);
  } finally {
    cli.child.kill('SIGKILL');
  }
});

/**
 * Shadow mode over real sockets: every decision is computed, counted and
 * logged as "would refuse", and every request is forwarded anyway.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { AppDeps } from '../src/app.js';
import type { RouteConfig } from '../src/config/types.js';
import type { Limit, Sample } from '../src/core/limit/limit.js';
import type { Refusal } from '../src/core/limiter/refusal.js';
import type { RouteRuntime } from '../src/proxy/runtime.js';
import { scrape } from './helpers/prom.js';
import { eventually, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

function policy(o: { top?: string; route?: string; limit?: number; maxLength?: number; rate?: string; extraRoutes?: string } = {}): string {
  return `
log: { level: info }
${o.top ?? 'mode: shadow'}
lanes:
  - name: interactive
    queue: { maxLength: ${o.maxLength ?? 0}, maxWaitMs: 2000 }
clients:
  key: { header: x-api-key }
${o.rate ? `  rate: ${o.rate}` : ''}
defaults:
  limit: { algorithm: fixed, initial: ${o.limit ?? 1}, min: 1, max: 100 }
  timeouts: { connectMs: 1000, headersMs: 5000, bodyMs: 5000 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
${o.route ?? ''}
${o.extraRoutes ?? ''}`;
}

/** What the proxy reported through ProxyEvents. */
function recorder() {
  const seen = { admitted: 0, refused: [] as string[], shadowRefused: [] as string[], settled: 0 };
  const events: AppDeps['events'] = {
    onAdmitted: () => void seen.admitted++,
    onRefused: (_r: RouteRuntime, _l: number, x: Refusal) => void seen.refused.push(x.reason),
    onShadowRefused: (_r: RouteRuntime, _l: number, x: Refusal) => void seen.shadowRefused.push(x.reason),
    onSettled: () => void seen.settled++,
  };
  return { seen, events };
}

async function withSluice(yaml: string, deps: AppDeps, fn: (s: Running) => Promise<void>): Promise<void> {
  const s = await startSluice(yaml, deps);
  try {
    await fn(s);
  } finally {
    up.releaseAll();
    await s.close();
  }
}

test('shadow: a full route refuses nothing; each would-be refusal is counted and logged with its reason', { timeout: 30_000 }, async () => {
  const { seen, events } = recorder();
  await withSluice(policy({ limit: 1, maxLength: 0 }), { events }, async (s) => {
    const all = ['w1', 'w2', 'w3', 'w4'].map((id) => send(`${s.url}/hold/${id}`, { headers: { 'x-request-id': id } }));
    await up.waitHolding(4);
    const st = (await s.state()).routes[0]!;
    assert.equal(st.inflight, 4, 'over the limit of 1: shadow requests are counted in flight');
    assert.equal(st.queued, 0);
    up.releaseAll();
    for (const a of await Promise.all(all)) assert.equal(a.status, 200);

    assert.equal(seen.admitted, 1);
    assert.deepEqual(seen.shadowRefused, ['queue_full', 'queue_full', 'queue_full']);
    assert.deepEqual(seen.refused, []);
    const lines = s.logs.filter((l) => l.msg === 'would refuse');
    assert.equal(lines.length, 3);
    for (const l of lines) {
      assert.equal(l.reason, 'queue_full');
      assert.equal(l.status, 503);
      assert.equal(l.route, 'main');
      assert.equal(l.lane, 'interactive');
      assert.equal(l.shadow, true);
      assert.match(String(l.requestId), /^w[1-4]$/);
    }
    assert.ok(!s.logs.some((l) => l.msg === 'request refused'));
    const m = await scrape(s.adminUrl);
    const requests = (outcome: string) => m.value('sluice_requests_total', { route: 'main', lane: 'interactive', outcome });
    assert.deepEqual([requests('shadow_refused'), requests('admitted'), requests('refused')], [3, 1, 0]);
    await eventually(() => seen.settled === 4, 'every request settled once');
    const end = (await s.state()).routes[0]!;
    assert.deepEqual([end.inflight, end.queued], [0, 0]);
  });
});

test('shadow: an empty token bucket would refuse client_rate; the request is forwarded', { timeout: 30_000 }, async () => {
  const { seen, events } = recorder();
  await withSluice(policy({ limit: 10, rate: '{ perSecond: 0.1, burst: 1 }' }), { events }, async (s) => {
    const h = { 'x-api-key': 'k' };
    assert.equal((await send(`${s.url}/r1`, { headers: h })).status, 200);
    assert.equal((await send(`${s.url}/r2`, { headers: h })).status, 200);
    assert.ok(up.seen.includes('/r2'));
    assert.deepEqual(seen.shadowRefused, ['client_rate']);
    const line = s.logs.find((l) => l.msg === 'would refuse');
    assert.equal(line?.status, 429);
  });
});

/** A scripted limit: one step up per successful sample. */
class StepLimit implements Limit {
  samples = 0;
  constructor(public current: number) {}
  onSample(s: Sample): void {
    this.samples++;
    if (!s.dropped) this.current++;
  }
}

test('shadow: the limit still learns, from every forwarded request', { timeout: 30_000 }, async () => {
  const limits: StepLimit[] = [];
  const createLimit = (r: RouteConfig) => {
    const l = new StepLimit(r.limit.initial);
    limits.push(l);
    return l;
  };
  await withSluice(policy({ limit: 1, maxLength: 0 }), { createLimit }, async (s) => {
    const all = ['l1', 'l2', 'l3'].map((id) => send(`${s.url}/hold/${id}`));
    await up.waitHolding(3);
    up.releaseAll();
    await Promise.all(all);
    await eventually(() => limits[0]!.samples === 3, 'three samples');
    assert.equal((await s.state()).routes[0]!.limit, 4);
  });
});

test('mode is per route: a route may enforce under a shadow top level, and the other way round', { timeout: 30_000 }, async () => {
  const { seen, events } = recorder();
  const strict = `  - name: strict
    match: { pathPrefix: /strict }
    upstream: ${up.url}
    mode: enforce
`;
  await withSluice(policy({ limit: 1, maxLength: 0, extraRoutes: strict }), { events }, async (s) => {
    const a = send(`${s.url}/strict/hold/p1`);
    const b = send(`${s.url}/hold/p2`);
    await up.waitHolding(2);
    assert.equal((await send(`${s.url}/strict/x`)).status, 503, 'enforce route refuses');
    assert.equal((await send(`${s.url}/y`)).status, 200, 'shadow route forwards');
    assert.deepEqual(seen.refused, ['queue_full']);
    assert.deepEqual(seen.shadowRefused, ['queue_full']);
    up.releaseAll();
    await Promise.all([a, b]);
  });
  const reverse = `  - name: trial
    match: { pathPrefix: /trial }
    upstream: ${up.url}
    mode: shadow
`;
  await withSluice(policy({ top: 'mode: enforce', limit: 1, maxLength: 0, extraRoutes: reverse }), {}, async (s) => {
    const a = send(`${s.url}/trial/hold/q1`);
    const b = send(`${s.url}/hold/q2`);
    await up.waitHolding(2);
    assert.equal((await send(`${s.url}/trial/x`)).status, 200);
    assert.equal((await send(`${s.url}/z`)).status, 503);
    up.releaseAll();
    await Promise.all([a, b]);
  });
});

test('shadow: after a burst with client aborts and upstream errors, nothing stays in flight', { timeout: 30_000 }, async () => {
  await withSluice(policy({ limit: 2, maxLength: 1 }).replace('headersMs: 5000', 'headersMs: 100'), {}, async (s) => {
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      const kind = i % 4;
      if (kind === 0) jobs.push(send(`${s.url}/reset`).catch(() => null));
      else if (kind === 1) jobs.push(send(`${s.url}/delay/300`).catch(() => null));
      else if (kind === 2) {
        const ac = new AbortController();
        jobs.push(send(`${s.url}/delay/50`, { signal: ac.signal }).catch(() => null));
        setTimeout(() => ac.abort(), 5 + (i % 5) * 10).unref();
      } else jobs.push(send(`${s.url}/x`).catch(() => null));
    }
    await Promise.all(jobs);
    await eventually(async () => {
      const r = (await s.state()).routes[0]!;
      return r.inflight === 0 && r.queued === 0;
    }, 'all settled');
  });
});

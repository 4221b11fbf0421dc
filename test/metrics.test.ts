import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { promtool, scrape } from './helpers/prom.js';
import { eventually, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

/**
 * One route `main` to the test upstream with limit 1; interactive may queue
 * one request for 1 s, batch never queues; each client gets one token.
 */
function policy(o: { upstream?: string; limit?: number; queue?: number; rate?: boolean } = {}): string {
  return `
log: { level: warn }
lanes:
  - name: interactive
    queue: { maxLength: ${o.queue ?? 1}, maxWaitMs: 1000 }
  - name: batch
    maxShare: 1
    queue: { maxLength: 0, maxWaitMs: 1000 }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
clients:
  key: { header: x-api-key }
  maxShare: 1
${o.rate === false ? '' : '  rate: { perSecond: 1, burst: 1 }'}
defaults:
  limit: { algorithm: fixed, initial: ${o.limit ?? 1} }
  timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 2000 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${o.upstream ?? up.url}
`;
}

async function withSluice(yaml: string, fn: (s: Running, clock: ManualClock) => Promise<void>): Promise<void> {
  // A manual clock: queue timeouts fire when the test says so, and waits are exact.
  const clock = new ManualClock(1_000_000);
  const s = await startSluice(yaml, { clock });
  try {
    await fn(s, clock);
  } finally {
    up.releaseAll();
    await s.close();
  }
}

const key = (k: string, extra: Record<string, string> = {}) => ({ headers: { 'x-api-key': k, ...extra } });
const main = (lane: string) => ({ route: 'main', lane });

test('after a scripted mix of admitted and refused requests, every series has the right labels and values', () =>
  withSluice(policy(), async (s, clock) => {
    const held = send(`${s.url}/hold/a`, key('k1'));
    await up.waitHolding(1);
    const queued = send(`${s.url}/hold/b`, key('k2'));
    await eventually(async () => (await s.state()).routes[0]!.queued === 1, 'second request queued');

    assert.equal((await send(`${s.url}/x`, key('k3'))).status, 503); // interactive queue full
    assert.equal((await send(`${s.url}/x`, key('k4', { 'x-priority': 'batch' }))).status, 503); // batch never queues
    assert.equal((await send(`${s.url}/x`, key('k1'))).status, 429); // k1 spent its one token

    clock.advance(250);
    let m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_inflight', main('interactive')), 1);
    assert.equal(m.value('sluice_inflight', main('batch')), 0);
    assert.equal(m.value('sluice_queue_depth', main('interactive')), 1);
    assert.equal(m.value('sluice_oldest_queued_seconds', main('interactive')), 0.25);
    assert.equal(m.value('sluice_oldest_queued_seconds', main('batch')), 0);
    assert.equal(m.value('sluice_concurrency_limit', { route: 'main' }), 1);
    assert.equal(m.value('sluice_route_overloaded', { route: 'main' }), 0);

    clock.advance(750); // the queued request has waited its maxWaitMs
    assert.equal((await queued).status, 503);
    up.release('a');
    assert.equal((await held).status, 200);
    assert.equal((await send(`${s.url}/status/503`, key('k5'))).status, 503); // the upstream's own 503 passes through
    assert.equal((await send(`${s.url}/echo`, key('k6'))).status, 200);
    await eventually(async () => (await s.state()).routes[0]!.inflight === 0, 'nothing in flight');

    m = await scrape(s.adminUrl);
    const req = (lane: string, outcome: string) => m.value('sluice_requests_total', { ...main(lane), outcome });
    assert.equal(req('interactive', 'admitted'), 3);
    assert.equal(req('interactive', 'refused'), 3);
    assert.equal(req('batch', 'refused'), 1);
    assert.equal(req('batch', 'admitted'), 0);
    assert.equal(req('interactive', 'abandoned'), 0);

    const rej = (lane: string, reason: string, status: string) =>
      m.value('sluice_rejections_total', { ...main(lane), reason, status });
    assert.equal(rej('interactive', 'queue_full', '503'), 1);
    assert.equal(rej('interactive', 'queue_timeout', '503'), 1);
    assert.equal(rej('interactive', 'client_rate', '429'), 1);
    assert.equal(rej('batch', 'queue_full', '503'), 1);
    const refusedTotal = m.all('sluice_rejections_total', { route: 'main' }).reduce((n, x) => n + x.value, 0);
    assert.equal(refusedTotal, 4, 'no other rejection series counted anything');

    assert.equal(m.value('sluice_retry_after_seconds_count', { route: 'main', status: '503' }), 3);
    assert.equal(m.value('sluice_retry_after_seconds_count', { route: 'main', status: '429' }), 1);
    assert.equal(m.value('sluice_retry_after_seconds_bucket', { route: 'main', status: '429', le: '+Inf' }), 1);

    // Three admitted at once (0 s) and the one that timed out after exactly 1 s; door refusals are not waits.
    assert.equal(m.value('sluice_queue_wait_seconds_count', main('interactive')), 4);
    assert.equal(m.value('sluice_queue_wait_seconds_sum', main('interactive')), 1);
    assert.equal(m.value('sluice_queue_wait_seconds_bucket', { ...main('interactive'), le: '0.5' }), 3);
    assert.equal(m.value('sluice_queue_wait_seconds_bucket', { ...main('interactive'), le: '1' }), 4);
    assert.equal(m.value('sluice_queue_wait_seconds_count', main('batch')), 0);

    assert.equal(m.value('sluice_upstream_latency_seconds_count', { route: 'main', status_class: '2xx' }), 2);
    assert.equal(m.value('sluice_upstream_latency_seconds_count', { route: 'main', status_class: '5xx' }), 1);
    assert.equal(m.value('sluice_settled_total', { ...main('interactive'), result: 'success' }), 2);
    assert.equal(m.value('sluice_settled_total', { ...main('interactive'), result: 'dropped' }), 1);
    assert.equal(m.value('sluice_inflight', main('interactive')), 0);
    assert.equal(m.value('sluice_queue_depth', main('interactive')), 0);
    assert.equal(m.types.get('sluice_requests_total'), 'counter');
    assert.equal(m.types.get('sluice_queue_wait_seconds'), 'histogram');
    assert.equal(m.types.get('sluice_inflight'), 'gauge');

    // Upstream latency is per lane too: a batch request's response counts in the batch series only.
    assert.equal((await send(`${s.url}/echo`, key('k7', { 'x-priority': 'batch' }))).status, 200);
    await eventually(async () => (await s.state()).routes[0]!.inflight === 0, 'nothing in flight');
    m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_upstream_latency_seconds_count', { ...main('batch'), status_class: '2xx' }), 1);
    assert.equal(m.value('sluice_upstream_latency_seconds_count', { ...main('interactive'), status_class: '2xx' }), 2);
    assert.equal(m.all('sluice_upstream_latency_seconds_count', main('batch')).length, 1, 'one series per status class seen');
  }));

test('a client that leaves the queue is counted as abandoned, with its wait', () =>
  withSluice(policy({ rate: false }), async (s, clock) => {
    const held = send(`${s.url}/hold/c`);
    await up.waitHolding(1);
    const ac = new AbortController();
    const gone = send(`${s.url}/hold/d`, { signal: ac.signal }).catch(() => 'aborted');
    await eventually(async () => (await s.state()).routes[0]!.queued === 1, 'queued');
    clock.advance(300);
    ac.abort();
    assert.equal(await gone, 'aborted');
    await eventually(async () => (await s.state()).routes[0]!.queued === 0, 'left the queue');
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_requests_total', { ...main('interactive'), outcome: 'abandoned' }), 1);
    assert.equal(m.value('sluice_requests_total', { ...main('interactive'), outcome: 'refused' }), 0);
    assert.equal(m.value('sluice_queue_wait_seconds_sum', main('interactive')), 0.3);
    up.release('c');
    assert.equal((await held).status, 200);
  }));

test('upstream failures are counted by kind and settle as ignore', async () => {
  // A port that was just free: nothing listens there.
  const closed = await startUpstream();
  const deadUrl = closed.url;
  await closed.close();
  await withSluice(policy({ upstream: deadUrl, rate: false }), async (s) => {
    assert.equal((await send(`${s.url}/x`)).status, 502);
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_upstream_errors_total', { route: 'main', kind: 'refused' }), 1);
    assert.equal(m.value('sluice_upstream_errors_total', { route: 'main', kind: 'timeout' }), 0);
    assert.equal(m.value('sluice_settled_total', { ...main('interactive'), result: 'ignore' }), 1);
    assert.equal(m.value('sluice_requests_total', { ...main('interactive'), outcome: 'admitted' }), 1);
  });
});

test('refusal log lines beyond 20 per second are suppressed and counted', () =>
  withSluice(policy({ queue: 0, rate: false }), async (s) => {
    const held = send(`${s.url}/hold/e`);
    await up.waitHolding(1);
    // The manual clock stands still, so all of these fall in one sampling second.
    for (let i = 0; i < 30; i++) assert.equal((await send(`${s.url}/x`)).status, 503);
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_log_suppressed_total'), 10);
    assert.equal(s.logs.filter((l) => l.msg === 'request refused').length, 20);
    up.release('e');
    await held;
  }));

test('each instance has its own registry: two in one process count separately; series exist before traffic', async () => {
  const a = await startSluice(policy({ rate: false }));
  const b = await startSluice(policy({ rate: false }));
  try {
    const fresh = await scrape(b.adminUrl);
    for (const lane of ['interactive', 'batch']) {
      for (const outcome of ['admitted', 'refused', 'shadow_refused', 'abandoned']) {
        assert.equal(fresh.value('sluice_requests_total', { ...main(lane), outcome }), 0);
      }
    }
    await send(`${a.url}/x`);
    await send(`${a.url}/x`);
    await send(`${b.url}/x`);
    const ma = await scrape(a.adminUrl);
    const mb = await scrape(b.adminUrl);
    assert.equal(ma.value('sluice_requests_total', { ...main('interactive'), outcome: 'admitted' }), 2);
    assert.equal(mb.value('sluice_requests_total', { ...main('interactive'), outcome: 'admitted' }), 1);
    // Process metrics are there on both (prom-client's defaults).
    assert.ok(ma.value('process_resident_memory_bytes') > 0);
    assert.ok(mb.value('process_resident_memory_bytes') > 0);
  } finally {
    await a.close();
    await b.close();
  }
});

test('build info carries the package version; reloads are counted by result', async () => {
  const s = await startSluice(policy({ rate: false }));
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    s.app.metrics.configReloaded('error');
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_info', { version: pkg.version }), 1);
    assert.equal(m.value('sluice_config_reloads_total', { result: 'error' }), 1);
    assert.equal(m.value('sluice_config_reloads_total', { result: 'success' }), 0);
  } finally {
    await s.close();
  }
});

test('the last reload\'s result and the last successful load time are exported; a success clears a failure', async () => {
  const s = await startSluice(policy({ rate: false }));
  try {
    const before = await scrape(s.adminUrl);
    assert.equal(before.value('sluice_config_last_reload_successful'), 1, 'the config loaded at start counts as a success');
    const loadedAt = before.value('sluice_config_last_reload_success_timestamp_seconds');
    assert.ok(Math.abs(loadedAt - Date.now() / 1000) < 600, `a Unix time: ${loadedAt}`);
    s.app.metrics.configReloaded('error');
    const failed = await scrape(s.adminUrl);
    assert.equal(failed.value('sluice_config_last_reload_successful'), 0);
    assert.equal(failed.value('sluice_config_last_reload_success_timestamp_seconds'), loadedAt);
    s.app.metrics.configReloaded('success');
    const fixed = await scrape(s.adminUrl);
    assert.equal(fixed.value('sluice_config_last_reload_successful'), 1);
    assert.ok(fixed.value('sluice_config_last_reload_success_timestamp_seconds') >= loadedAt);
  } finally {
    await s.close();
  }
});

test('each lane\'s queue.maxWaitMs is exported in seconds per route (SluiceBacklogAge compares waits with it)', async () => {
  const s = await startSluice(`
log: { level: warn }
lanes:
  - name: interactive
    queue: { maxLength: 10, maxWaitMs: 250 }
  - name: batch
    queue: { maxLength: 10, maxWaitMs: 4000 }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
  - name: slow
    match: { pathPrefix: /slow }
    upstream: ${up.url}
    lanes: { batch: { queue: { maxWaitMs: 30000 } } }
`);
  try {
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_queue_max_wait_seconds', main('interactive')), 0.25);
    assert.equal(m.value('sluice_queue_max_wait_seconds', main('batch')), 4);
    assert.equal(m.value('sluice_queue_max_wait_seconds', { route: 'slow', lane: 'interactive' }), 0.25);
    assert.equal(m.value('sluice_queue_max_wait_seconds', { route: 'slow', lane: 'batch' }), 30);
  } finally {
    await s.close();
  }
});

test('/metrics passes promtool check metrics after traffic', () =>
  withSluice(policy({ rate: false }), async (s) => {
    const held = send(`${s.url}/hold/f`);
    await up.waitHolding(1);
    const queued = send(`${s.url}/x`); // waits: gauges and histograms all have data
    await eventually(async () => (await s.state()).routes[0]!.queued === 1, 'queued');
    assert.equal((await send(`${s.url}/x`, { headers: { 'x-priority': 'batch' } })).status, 503);
    const m = await scrape(s.adminUrl);
    const check = await promtool(['check', 'metrics'], m.text);
    assert.equal(check.code, 0, `promtool check metrics:\n${check.output}`);
    up.release('f');
    assert.equal((await held).status, 200);
    assert.equal((await queued).status, 200);
  }));

/**
 * The Grafana dashboard against a real Prometheus: a Prometheus server
 * (started here, scraping every second) scrapes a running Sluice while a
 * bounded load runs through it — queueing and refusals, batch and shadow
 * traffic (with would-be refusals), batch alone (upstream latency per lane), a client that leaves while queued, 5xx answers, a dead upstream
 * whose breaker opens, client 4xx errors, a good and a bad reload; and a
 * second Sluice (the real CLI, workers: 2, client rates shared through a real
 * redis-server) whose Redis is killed and one of whose workers is killed — and then
 * every query of every panel runs as Grafana would run it (a range query over
 * the load, $__rate_interval = 4 × the scrape interval). A query that returns
 * nothing although the load produced its data fails the test: a renamed
 * metric, a wrong label or a filter that never matches cannot leave a panel
 * silently empty.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startCli, type Cli } from './helpers/cli.js';
import { dashboardTargets, fillVariables } from './helpers/dashboard.js';
import { startPrometheus, type RangeSeries, type TestPrometheus } from './helpers/prometheus.js';
import { scrape } from './helpers/prom.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import type { AdminState } from '../src/observability/state.js';
import { eventually as waitFor, JSON_POST, rawRequest, send, startSluiceFile, writePolicy, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const ROUTES = ['main', 'dead', 'shadow', 'held', 'quota'] as const;

function policy(upstream: string, deadUpstream: string, mainLimit: number): string {
  return `
log: { level: fatal }
lanes:
  - name: interactive
    queue: { maxLength: 6, maxWaitMs: 300 }
  - name: batch
    maxShare: 0.5
    queue: { maxLength: 2, maxWaitMs: 300 }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
defaults:
  limit: { algorithm: fixed, initial: ${mainLimit} }
routes:
  - name: main
    match: { pathPrefix: /api }
    upstream: ${upstream}
  - name: dead
    match: { pathPrefix: /dead }
    upstream: ${deadUpstream}
    circuitBreaker: { consecutiveFailures: 3, openMs: 60000 }
  - name: shadow
    match: { pathPrefix: /shadow }
    upstream: ${upstream}
    mode: shadow
    limit: { algorithm: fixed, initial: 1 }
  - name: held
    match: { pathPrefix: /held }
    upstream: ${upstream}
    limit: { algorithm: fixed, initial: 1 }
`;
}

/** The second instance: workers: 2, one route whose client rates are shared through Redis. */
function quotaPolicy(upstream: string, redisUrl: string): string {
  return `
workers: 2
log: { level: info }
shutdown: { readinessGraceMs: 0, drainTimeoutMs: 1000 }
clients:
  key: { header: x-api-key }
  rate:
    perSecond: 1000
    burst: 1000
    store:
      redis: { url: ${redisUrl}, timeoutMs: 50 }
      instances: 2
routes:
  - name: quota
    match: { pathPrefix: / }
    upstream: ${upstream}
`;
}

let up: TestUpstream;
let s: Running;
let redis: TestRedis;
let w: Cli;
let prom: TestPrometheus;
let file: string;
let window: { start: number; end: number };

const nowS = () => Date.now() / 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Load {
  readonly workers: number;
  /** Each worker starts a request at most this often (refusals are fast: without pacing the load would be over at once). */
  readonly everyMs: number;
  readonly count: number;
  readonly ms: number;
  readonly path: (i: number) => string;
  readonly headers?: (i: number) => Record<string, string>;
}

/** `workers` clients, each sending one request at a time, paced, until `count` were sent or `ms` passed. */
async function load(url: string, o: Load): Promise<number[]> {
  const statuses: number[] = [];
  const end = Date.now() + o.ms;
  let next = 0;
  const worker = async () => {
    while (next < o.count && Date.now() < end) {
      const i = next++;
      const started = Date.now();
      statuses.push((await send(`${url}${o.path(i)}`, { headers: o.headers?.(i) })).status);
      await sleep(Math.max(0, started + o.everyMs - Date.now()));
    }
  };
  await Promise.all(Array.from({ length: o.workers }, worker));
  return statuses;
}

before(async () => {
  up = await startUpstream();
  const gone = await startUpstream();
  const deadUrl = gone.url;
  await gone.close();
  file = writePolicy(policy(up.url, deadUrl, 2));
  s = await startSluiceFile(file);
  redis = await startRedis();
  w = await startCli(writePolicy(quotaPolicy(up.url, redis.url)));
  prom = await startPrometheus({ sluice: new URL(s.adminUrl).host, sluice_workers: new URL(w.admin).host });
  await Promise.all([prom.waitForScrape('sluice', 0), prom.waitForScrape('sluice_workers', 0)]);
  window = { start: Math.floor(nowS()), end: 0 };

  // About 3 s of load, each part bounded in count and time.
  const main = load(s.url, {
    workers: 12,
    everyMs: 40,
    count: 900,
    ms: 3000,
    path: (i) => (i % 10 === 9 ? '/api/status/500' : `/api/delay/${20 + (i % 4) * 10}`),
    headers: (i): Record<string, string> => (i % 3 === 0 ? { 'x-priority': 'batch' } : {}),
  });
  const shadow = load(s.url, { workers: 3, everyMs: 50, count: 200, ms: 3000, path: () => '/shadow/delay/30' });
  const dead = load(s.url, { workers: 1, everyMs: 50, count: 60, ms: 3000, path: () => '/dead/x' });
  // Made to happen, not left to timing: shadow requests held at the upstream, more than its
  // limit (1) and queue (6) take, so the last ones would be refused; a client that leaves
  // while queued behind a held request (abandoned).
  const rare = (async () => {
    const held = Array.from({ length: 9 }, (_, i) => send(`${s.url}/shadow/hold/s${i}`));
    await up.waitHolding(9);
    await waitFor(async () => (await s.state()).routes.find((r) => r.name === 'shadow')?.inflight === 9, 'shadow holds');
    const first = send(`${s.url}/held/hold/h0`);
    await up.waitHolding(10);
    const leaving = new AbortController();
    const leaver = send(`${s.url}/held/x`, { signal: leaving.signal }).catch(() => undefined);
    await waitFor(async () => (await s.state()).routes.find((r) => r.name === 'held')?.queued === 1, 'the leaver queued');
    leaving.abort();
    await leaver;
    await waitFor(async () => (await scrape(s.adminUrl)).value('sluice_requests_total', { route: 'held', lane: 'interactive', outcome: 'abandoned' }) === 1, 'abandoned');
    up.releaseAll();
    await Promise.all([first, ...held]);
  })();
  // Client errors Sluice answers itself: no route, a path that is not valid percent-encoding, garbage, CONNECT.
  assert.equal((await send(`${s.url}/nowhere`)).status, 404);
  await send(`${s.url}/api/%zz`);
  await rawRequest(s.url, 'this is not http\r\n\r\n');
  await rawRequest(s.url, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
  // The second instance: keyed traffic while Redis answers, then Redis dies (the instance
  // fails open: local buckets); after that load a worker is killed (it is replaced).
  const quota = load(w.proxy, { workers: 2, everyMs: 50, count: 120, ms: 3000, path: () => '/delay/10', headers: (i) => ({ 'x-api-key': `k${i % 4}` }) });
  const crashes = (async () => {
    const metric = async (name: string) => (await scrape(w.admin)).value(name, {});
    await sleep(1200);
    assert.equal(await metric('sluice_rate_store_up'), 1, 'the shared store answered');
    await redis.kill();
    await waitFor(async () => (await metric('sluice_rate_store_up')) === 0, 'the rate store seen down');
    // Once its load is over: a killed worker cuts what it is forwarding.
    await quota;
    const workers = ((await (await fetch(`${w.admin}/admin/state`)).json()) as AdminState).workers ?? [];
    process.kill(workers[0]?.pid as number, 'SIGKILL');
    await waitFor(async () => (await metric('sluice_worker_deaths_total')) === 1, 'the death counted');
  })();
  const [mainStatuses, , deadStatuses, , quotaStatuses] = await Promise.all([main, shadow, dead, rare, quota, crashes]);
  assert.ok(quotaStatuses.includes(200), `quota: ${[...new Set(quotaStatuses)]}`);
  assert.ok(mainStatuses.includes(200) && mainStatuses.includes(503) && mainStatuses.includes(500), `main: ${[...new Set(mainStatuses)]}`);
  assert.ok(deadStatuses.includes(502) && deadStatuses.includes(503), `dead: ${[...new Set(deadStatuses)]}`);

  // Batch requests on main once it is quiet again (the overload above sheds most of them), so
  // upstream latency has a batch lane line of its own.
  const batch = await load(s.url, { workers: 1, everyMs: 50, count: 20, ms: 1000, path: () => '/api/delay/40', headers: () => ({ 'x-priority': 'batch' }) });
  assert.ok(batch.includes(200), `main batch: ${[...new Set(batch)]}`);

  // A good reload, then a bad one (the running config stays).
  writePolicy(policy(up.url, deadUrl, 3), file);
  assert.equal((await send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers: JSON_POST })).status, 200);
  writeFileSync(file, 'routes: [ { name: broken } ]\n');
  assert.equal((await send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers: JSON_POST })).status, 422);

  window.end = Math.ceil(nowS());
  // Two scrapes after the load, so the last state is stored.
  await prom.waitForScrape('sluice', window.end + 1);
  window.end = Math.ceil(nowS());
});

after(async () => {
  await prom?.close();
  if (w !== undefined) {
    w.child.kill('SIGTERM');
    await w.exited;
  }
  await redis?.kill();
  await s?.close();
  await up?.close();
});

/** A panel's query over the load, as Grafana runs it (scrape 1 s → $__rate_interval 4 s). */
function run(expr: string, route: string): Promise<RangeSeries[]> {
  return prom.queryRange(fillVariables(expr, { route, rateInterval: '4s' }), window.start - 2, window.end, 1);
}

/** Series with at least one value (a histogram quantile over no observations is NaN: nothing to draw). */
const drawn = (series: readonly RangeSeries[]) => series.filter((x) => x.values.some(([, v]) => !Number.isNaN(v)));

test('every dashboard query returns data for the load that produced it', async () => {
  const empty: string[] = [];
  for (const t of dashboardTargets) {
    // A per-route panel is repeated for every route; its query must draw something for at least one.
    const routes = t.expr.includes('$route') ? ROUTES : (['-'] as const);
    let found = false;
    for (const route of routes) if (drawn(await run(t.expr, route)).length > 0) found = true;
    if (!found) empty.push(`${t.panel.title} / ${t.legend}: ${t.expr}`);
  }
  assert.deepEqual(empty, []);
});

/** The largest value a query draws over the load. */
async function peak(expr: string, route: string): Promise<number> {
  return Math.max(...drawn(await run(expr, route)).flatMap((x) => x.values.map(([, v]) => v).filter((v) => !Number.isNaN(v))));
}

/** The distinct values of a label across a query's drawn series. */
async function labels(expr: string, label: string, route = '-'): Promise<string[]> {
  return [...new Set(drawn(await run(expr, route)).map((x) => x.metric[label] as string))].sort();
}

function expr(panelTitle: string, legend: string): string {
  const t = dashboardTargets.find((x) => x.panel.title === panelTitle && x.legend === legend);
  assert.ok(t, `no panel "${panelTitle}" with a query "${legend}"`);
  return t.expr;
}

test('the breaker panel shows the dead route open and the healthy route closed', async () => {
  const breaker = expr('Circuit breaker', '{{instance}}');
  assert.equal(await peak(breaker, 'dead'), 2, 'open');
  assert.equal(await peak(breaker, 'main'), 0, 'closed throughout');
  const notClosed = await run(expr('Circuit breakers not closed', 'not closed'), '-');
  assert.equal(notClosed[0]?.values.at(-1)?.[1], 1);
});

test('refusals by reason, errors by kind, client errors by code and reloads by result show what the load did', async () => {
  const refused = expr('Offered vs admitted vs refused (by reason)', 'refused: {{reason}}');
  assert.ok((await labels(refused, 'reason', 'main')).includes('queue_full'));
  assert.deepEqual(await labels(refused, 'reason', 'dead'), ['circuit_open']);
  assert.deepEqual(await labels(expr('Upstream errors by kind and 5xx', '{{kind}}'), 'kind', 'dead'), ['refused']);
  assert.deepEqual(await labels(expr('Client errors per second by code', '{{code}}'), 'code'), ['bad_path', 'bad_request', 'method_not_allowed', 'no_route']);
  assert.deepEqual(await labels(expr('Config reloads', '{{result}}'), 'result'), ['error', 'success']);
  assert.deepEqual(await labels(expr('Queue wait p50 / p99 per lane', 'p99 {{lane}}'), 'lane', 'main'), ['batch', 'interactive']);
  // Upstream latency per lane: main's batch and interactive requests each drew their own line.
  for (const q of ['p50 {{lane}}', 'p99 {{lane}}']) {
    assert.deepEqual(await labels(expr('Upstream latency p50 / p99 per lane', q), 'lane', 'main'), ['batch', 'interactive'], q);
  }
  assert.equal(await peak(expr('Upstream error share', 'failed or 5xx'), 'dead'), 1, 'every request to the dead upstream failed');
  const mainShare = await peak(expr('Upstream error share', 'failed or 5xx'), 'main');
  assert.ok(mainShare > 0 && mainShare < 1, `main: some 5xx (${mainShare})`);
  const last = await run(expr('Last config reload', 'last reload'), '-');
  assert.equal(last[0]?.values.at(-1)?.[1], 0, 'the last reload failed');
});

test('the rate store panels show the store up, then down with its errors; the workers panel shows a death', async () => {
  const store = drawn(await run(expr('Shared rate store', '{{instance}} {{store}}'), '-'));
  const values = new Set(store.flatMap((x) => x.values.map(([, v]) => v)));
  assert.ok(values.has(1) && values.has(0), `up then down: ${[...values]}`);
  assert.ok((await labels(expr('Rate store errors per second by kind', '{{kind}}'), 'kind')).includes('connection'));
  assert.ok((await labels(expr('Worker processes', '{{state}}'), 'state')).includes('ready'));
  assert.ok((await peak(expr('Worker processes', 'deaths'), '-')) >= 1, 'the killed worker drew a death');
});

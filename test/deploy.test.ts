/**
 * deploy/: the Prometheus alert rules and the Grafana dashboard are checked
 * with promtool and against the metrics a running Sluice actually exposes,
 * so a renamed metric cannot leave a dashboard panel or an alert silently empty.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { dashboard, dashboardTargets, fillVariables } from './helpers/dashboard.js';
import { promtool, scrape } from './helpers/prom.js';
import { startCli } from './helpers/cli.js';
import { makeCerts } from './helpers/tls.js';
import { send, startSluice, writePolicy } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const alertsFile = join(root, 'deploy/prometheus/alerts.yaml');
const alerts = parseYaml(readFileSync(alertsFile, 'utf8')) as { groups: { rules: { alert: string; expr: string; for: string }[] }[] };
const dashboardExprs = dashboardTargets.map((t) => t.expr);
const alertExprs = alerts.groups.flatMap((g) => g.rules.map((r) => r.expr));

/**
 * The metric names a PromQL expression reads: what is left once strings,
 * label matchers, ranges and grouping clauses are removed, minus function
 * calls (an identifier before "(") and keywords.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const keywords = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'Inf', 'NaN']);
  const names = new Set<string>();
  for (const m of bare.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?!\s*\()(?![\w])/g)) {
    if (!keywords.has(m[1] as string)) names.add(m[1] as string);
  }
  return [...names];
}

test('metricNames finds every metric an expression reads, and nothing else', () => {
  assert.deepEqual(
    metricNames('(a_total <= on (job, route) b_min) and on (route) c_info{algorithm!="fixed"} and sum by (route) (rate(d_total{x="y"}[5m])) > 0.5'),
    ['a_total', 'b_min', 'c_info', 'd_total'],
  );
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le) (rate(h_bucket[1m]))) or vector(0)'), ['h_bucket']);
});

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

test('alerts.yaml passes promtool check rules', async () => {
  const r = await promtool(['check', 'rules', alertsFile]);
  assert.equal(r.code, 0, r.output);
  assert.match(r.output, /SUCCESS: 13 rules found/);
});

test('alerts fire and stay quiet as their promtool unit tests say (alerts.test.yaml)', async () => {
  const r = await promtool(['test', 'rules', join(root, 'deploy/prometheus/alerts.test.yaml')]);
  assert.equal(r.code, 0, r.output);
});

test('the alerts cover shedding, throttled clients, interactive refusals, an open breaker, upstream errors, failed reloads, backlog, the limit, the shared rate store, crashing workers and an expiring certificate', () => {
  const names = alerts.groups.flatMap((g) => g.rules.map((r) => r.alert));
  for (const a of [
    'SluiceSustainedShedding',
    'SluiceClientsThrottled',
    'SluiceInteractiveRefusals',
    'SluiceCircuitOpen',
    'SluiceUpstreamErrors',
    'SluiceConfigReloadFailed',
    'SluiceBacklogAge',
    'SluiceBacklogNotDraining',
    'SluiceLimitPinnedAtMin',
    'SluiceRouteOverloaded',
    'SluiceRateStoreDown',
    'SluiceWorkersCrashing',
    'SluiceCertificateExpiring',
  ]) {
    assert.ok(names.includes(a), `missing alert ${a}`);
  }
});

test('every dashboard query is valid PromQL (checked by promtool as recording rules)', async () => {
  assert.ok(dashboardExprs.length >= 15);
  const groups = [
    {
      name: 'dashboard',
      rules: dashboardExprs.map((expr, i) => ({
        record: `dashboard:expr_${i}`,
        // Grafana's variables, as Grafana would fill them in.
        expr: fillVariables(expr, { route: 'main', rateInterval: '1m' }),
      })),
    },
  ];
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-dash-')), 'dashboard-rules.json');
  writeFileSync(file, JSON.stringify({ groups }));
  const r = await promtool(['check', 'rules', file]);
  assert.equal(r.code, 0, r.output);
});

test('the dashboard repeats per route and shows traffic, limit, queues, waits, latency, errors, breaker, reloads and client errors', () => {
  assert.ok(dashboard.templating.list.some((v) => v.name === 'route'));
  assert.ok(dashboard.panels.some((p) => p.type === 'row' && p.repeat === 'route'));
  const used = new Set(dashboardExprs.flatMap(metricNames));
  for (const m of [
    'sluice_requests_total',
    'sluice_rejections_total',
    'sluice_concurrency_limit',
    'sluice_inflight',
    'sluice_queue_depth',
    'sluice_oldest_queued_seconds',
    'sluice_queue_wait_seconds_bucket',
    'sluice_upstream_latency_seconds_bucket',
    'sluice_route_overloaded',
    'sluice_circuit_breaker_state',
    'sluice_circuit_breaker_opens_total',
    'sluice_upstream_errors_total',
    'sluice_client_errors_total',
    'sluice_config_reloads_total',
    'sluice_config_last_reload_successful',
    'sluice_rate_store_up',
    'sluice_rate_store_errors_total',
    'sluice_workers',
    'sluice_worker_deaths_total',
  ]) {
    assert.ok(used.has(m), `no dashboard panel reads ${m}`);
  }
});

test('every graph and stat panel says its unit, and every graph names its axis', () => {
  for (const p of dashboard.panels.filter((x) => x.type === 'timeseries' || x.type === 'stat')) {
    assert.ok(p.fieldConfig?.defaults?.unit, `${p.title}: no unit`);
    if (p.type === 'timeseries') assert.ok(p.fieldConfig?.defaults?.custom?.axisLabel, `${p.title}: no axis label`);
  }
});

/** The metric names an exposition has (a histogram's as its _bucket, _sum and _count series). */
function exposedNames(m: Awaited<ReturnType<typeof scrape>>): string[] {
  const names = m.samples.map((x) => x.name);
  for (const [name, type] of m.types) if (type === 'histogram') names.push(...['_bucket', '_sum', '_count'].map((suffix) => name + suffix));
  return names;
}

test('every metric the dashboard and the alerts read is one a running Sluice exposes', async () => {
  const s = await startSluice(`
log: { level: warn }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
  // Some exist only with workers > 1 or a shared rate store: the real CLI with both (the store's
  // Redis address refuses connections, so its errors are counted too).
  const closed = await startUpstream();
  const redisUrl = `redis://${new URL(closed.url).host}`;
  await closed.close();
  const w = await startCli(
    writePolicy(`workers: 2
log: { level: info }
shutdown: { readinessGraceMs: 0, drainTimeoutMs: 1000 }
clients:
  key: { header: x-api-key }
  rate: { perSecond: 10, burst: 10, store: { redis: { url: ${redisUrl} } } }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`),
  );
  // The TLS series exist only on a TLS listener.
  const certs = makeCerts();
  const tls = await startSluice(`
listen: { host: 127.0.0.1, port: 0, tls: { certFile: ${certs.cert}, keyFile: ${certs.key} } }
log: { level: warn }
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
  try {
    await send(`${s.url}/x`);
    await send(`${w.proxy}/x`, { headers: { 'x-api-key': 'k' } });
    const exposed = new Set([...exposedNames(await scrape(s.adminUrl)), ...exposedNames(await scrape(w.admin)), ...exposedNames(await scrape(tls.adminUrl))]);
    const read = new Set([...dashboardExprs, ...alertExprs].flatMap(metricNames));
    for (const n of ['sluice_concurrency_limit_min', 'sluice_route_info', 'sluice_backlog_seconds', 'process_cpu_seconds_total', 'sluice_rate_store_up', 'sluice_worker_deaths_total', 'sluice_tls_certificate_expiry_timestamp_seconds']) assert.ok(read.has(n), n);
    const missing = [...read].filter((n) => !exposed.has(n));
    assert.deepEqual(missing, []);
  } finally {
    w.child.kill('SIGTERM');
    await w.exited;
    await s.close();
    await tls.close();
  }
});

/**
 * The k6 scripts in loadtests/, run without k6 (which cannot be installed
 * here): `npm run check:loadtests` type-checks them against @types/k6; these
 * tests import them with the k6 modules resolved to stand-ins
 * (helpers/k6-hooks.ts) and check what k6 would only find at run time:
 * - every scenario's `exec` names an exported function;
 * - every threshold parses, uses an aggregation valid for its metric's type,
 *   names a metric that exists, and filters on tags the script really sets
 *   (a filter on a tag nobody sets matches no sample and silently passes);
 * - each scenario function, answered 200 / refused properly / refused
 *   without Retry-After, records what the thresholds expect;
 * - the retry client waits Retry-After plus jitter; the slowdown script
 *   triples and restores the upstream's service time.
 */
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { test } from 'node:test';

register(new URL('./helpers/k6-hooks.js', import.meta.url));

type Tags = Record<string, string>;
interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}
type Responder = (method: string, url: string, body: string | null) => Answer;

interface Sample {
  metric: string;
  value: number | boolean;
  tags: Tags;
}

const CONTROL_URL = 'http://127.0.0.1:3000/_control';

/** What the k6 stand-ins call into. */
const k6 = {
  metrics: new Map<string, string>(),
  samples: [] as Sample[],
  sleeps: [] as number[],
  requests: [] as { method: string; url: string; body: string | null }[],
  responder: ((): Answer => ({ status: 200, body: '{}' })) as Responder,
  scenario: { name: 'test', startTime: Date.now() },
  reset(responder: Responder): void {
    this.samples = [];
    this.sleeps = [];
    this.requests = [];
    this.responder = responder;
  },
  check(value: unknown, sets: Record<string, unknown>, tags?: Tags): boolean {
    let all = true;
    for (const [name, f] of Object.entries(sets)) {
      const ok = Boolean(typeof f === 'function' ? (f as (v: unknown) => unknown)(value) : f);
      this.samples.push({ metric: 'checks', value: ok, tags: { ...tags, check: name } });
      all &&= ok;
    }
    return all;
  },
  sleep(seconds: number): void {
    this.sleeps.push(seconds);
  },
  metric(name: string, type: string): void {
    this.metrics.set(name, type);
  },
  sample(metric: string, value: number | boolean, tags?: Tags): void {
    this.samples.push({ metric, value, tags: { ...tags } });
  },
  setResponseCallback(): void {},
  request(method: string, url: string, body: string | null, params?: { tags?: Tags; headers?: Record<string, string> }) {
    this.requests.push({ method, url, body });
    const a = this.responder(method, url, body);
    const tags = { ...params?.tags, status: String(a.status), method, url, name: url };
    for (const m of ['http_reqs', 'http_req_duration', 'http_req_failed']) this.samples.push({ metric: m, value: 1, tags });
    return { status: a.status, headers: a.headers ?? {}, body: a.body ?? '', url };
  },
};
(globalThis as Record<string, unknown>)['__k6'] = k6;
(globalThis as Record<string, unknown>)['__ENV'] = {};

const BUILTIN: Record<string, string> = {
  http_reqs: 'counter',
  http_req_duration: 'trend',
  http_req_failed: 'rate',
  checks: 'rate',
  dropped_iterations: 'counter',
  iterations: 'counter',
};
/** Tags k6 adds by itself to every sample of these metrics (values we cannot see here). */
const SYSTEM_TAGS: Record<string, string[]> = {
  http: ['scenario', 'group', 'expected_response', 'proto', 'error_code'],
  checks: ['scenario', 'group'],
  dropped_iterations: ['scenario'],
  iterations: ['scenario', 'group'],
};
const AGGREGATIONS: Record<string, RegExp> = {
  counter: /^(count|rate)$/,
  rate: /^rate$/,
  trend: /^(avg|min|max|med|p\(\d+(\.\d+)?\))$/,
  gauge: /^value$/,
};
const THRESHOLD = /^\s*([a-z]+|p\(\d+(?:\.\d+)?\))\s*(<=|>=|===|==|!=|<|>)\s*-?\d+(\.\d+)?\s*$/;

const ok: Responder = (method, url) =>
  url === CONTROL_URL ? { status: 200, body: JSON.stringify({ workers: 8, serviceTimeMs: 50 }) } : { status: 200, body: '{"ok":true}' };
const refuse =
  (status: 429 | 503): Responder =>
  (method, url) =>
    url === CONTROL_URL
      ? ok(method, url, null)
      : {
          status,
          headers: { 'Retry-After': '2', 'Content-Type': 'application/json' },
          body: JSON.stringify({ error: status === 429 ? 'too_many_requests' : 'overloaded', reason: status === 429 ? 'client_share' : 'queue_full', retryAfterSeconds: 2 }),
        };
const badRefusal: Responder = (method, url) => (url === CONTROL_URL ? ok(method, url, null) : { status: 503, body: 'Service Unavailable' });

interface Script {
  options: { scenarios: Record<string, { exec?: string }>; thresholds: Record<string, string[]>; summaryTrendStats?: string[] };
  setup?: () => unknown;
  teardown?: (data: unknown) => void;
  [fn: string]: unknown;
}

async function load(name: string): Promise<Script> {
  return (await import(new URL(`../../loadtests/${name}`, import.meta.url).href)) as Script;
}

function execs(s: Script): [string, (data: unknown) => void][] {
  return Object.values(s.options.scenarios).map((sc) => {
    const fn = sc.exec ?? 'default';
    assert.equal(typeof s[fn], 'function', `scenario exec "${fn}" is not an exported function`);
    return [fn, s[fn] as (data: unknown) => void];
  });
}

/** Runs every scenario function once per responder, at both ends of the run (for time-based tags), collecting all samples. */
function runAll(s: Script, responders: Responder[]): Sample[] {
  const all: Sample[] = [];
  k6.reset(ok);
  const data = s.setup?.();
  all.push(...k6.samples);
  for (const r of responders) {
    for (const startTime of [Date.now(), Date.now() - 3_600_000]) {
      k6.scenario = { name: 'test', startTime };
      for (const [, fn] of execs(s)) {
        k6.reset(r);
        fn(data);
        all.push(...k6.samples);
      }
    }
  }
  k6.reset(ok);
  s.teardown?.(data);
  all.push(...k6.samples);
  return all;
}

function checkThresholds(s: Script, samples: Sample[]): void {
  for (const [key, exprs] of Object.entries(s.options.thresholds)) {
    const m = /^([a-z_][a-z0-9_]*)(?:\{([^}]*)\})?$/.exec(key);
    assert.ok(m, `threshold key "${key}" does not parse`);
    const metric = m[1] as string;
    const type = BUILTIN[metric] ?? k6.metrics.get(metric);
    assert.ok(type, `threshold on unknown metric "${metric}"`);
    for (const e of exprs) {
      const t = THRESHOLD.exec(e);
      assert.ok(t, `threshold "${key}: ${e}" does not parse`);
      assert.match(t[1] as string, AGGREGATIONS[type] as RegExp, `"${key}: ${e}": ${t[1]} is not valid for a ${type} metric`);
    }
    if (m[2] === undefined) continue;
    const family = metric.startsWith('http_') ? 'http' : metric;
    for (const pair of m[2].split(',')) {
      const [k, v] = pair.split(':').map((x) => x.trim()) as [string, string];
      if ((SYSTEM_TAGS[family] ?? []).includes(k)) continue;
      const seen = samples.some((x) => (metric.startsWith('http_') ? x.metric.startsWith('http_') : x.metric === metric) && x.tags[k] === v);
      assert.ok(seen, `threshold "${key}" filters on ${k}:${v}, which no ${metric} sample carries`);
    }
  }
}

const violations = (samples: Sample[]): number => samples.filter((x) => x.metric === 'refusal_contract_violations').length;

for (const name of ['smoke.js', 'spike.js', 'batch-flood.js', 'upstream-slowdown.js', 'retry.js']) {
  test(`${name}: scenarios, thresholds and the refusal contract check`, async () => {
    const s = await load(name);
    assert.ok(Object.keys(s.options.scenarios).length > 0);
    checkThresholds(s, runAll(s, [ok, refuse(503), refuse(429), badRefusal]));
    // The summary prints the percentile the latency thresholds use; arrivals k6 could not start are bounded.
    assert.ok(s.options.summaryTrendStats?.includes('p(99)'), 'summaryTrendStats includes p(99)');
    assert.match(s.options.thresholds['dropped_iterations']?.[0] ?? '', /^count(==|<=|<)\d+$/, 'a dropped_iterations threshold');

    // Answered 200: counted as success, no refusal recorded.
    const served = runAll(s, [ok]);
    assert.equal(violations(served), 0);
    assert.ok(served.some((x) => x.metric === 'success' && x.value === true));
    assert.ok(!served.some((x) => x.metric === 'refusals'));
    // A proper refusal: recorded with its reason, contract checks pass.
    const refused = runAll(s, [refuse(503)]);
    assert.equal(violations(refused), 0);
    assert.ok(refused.some((x) => x.metric === 'refusals' && x.tags['reason'] === 'queue_full' && x.tags['status'] === '503'));
    assert.ok(refused.filter((x) => x.metric === 'checks' && x.tags['check']?.startsWith('refusal')).every((x) => x.value === true));
    // A refusal without Retry-After and without a JSON reason breaks the contract.
    const broken = runAll(s, [badRefusal]);
    assert.ok(violations(broken) > 0);
    assert.ok(broken.some((x) => x.metric === 'checks' && x.tags['check'] === 'refusal has integer Retry-After >= 1' && x.value === false));
  });
}

test('retry.js: a refused client waits Retry-After plus jitter, then retries and recovers', async () => {
  const s = await load('retry.js');
  let calls = 0;
  k6.reset((method, url) => (++calls === 1 ? refuse(503)(method, url, null) : ok(method, url, null)));
  (s['client'] as () => void)();
  assert.equal(calls, 2);
  assert.equal(k6.sleeps.length, 1);
  const wait = k6.sleeps[0] as number;
  assert.ok(wait >= 2 && wait <= 4, `waited ${wait} s for Retry-After: 2`);
  const value = (metric: string) => k6.samples.filter((x) => x.metric === metric).map((x) => x.value);
  assert.deepEqual(value('first_attempt_refused'), [true]);
  assert.deepEqual(value('retry_ok'), [true]);
  assert.deepEqual(value('recovered'), [true]);
  assert.deepEqual(value('attempts'), [2]);

  // Always refused: gives up after MAX_ATTEMPTS and records the failure to recover.
  calls = 0;
  k6.reset((method, url) => {
    calls++;
    return refuse(503)(method, url, null);
  });
  (s['client'] as () => void)();
  assert.equal(calls, 8);
  assert.equal(k6.sleeps.length, 7);
  assert.deepEqual(value('recovered'), [false]);
});

test('upstream-slowdown.js: triples the service time through the control endpoint and restores it', async () => {
  const s = await load('upstream-slowdown.js');
  k6.reset(ok);
  const data = s.setup?.();
  assert.deepEqual(data, { serviceTimeMs: 50 });
  (s['slowDown'] as (d: unknown) => void)(data);
  s.teardown?.(data);
  const posts = k6.requests.filter((r) => r.method === 'POST');
  assert.deepEqual(
    posts.map((p) => [p.url, JSON.parse(p.body ?? '')]),
    [
      [CONTROL_URL, { serviceTimeMs: 150 }],
      [CONTROL_URL, { serviceTimeMs: 50 }],
    ],
  );
});

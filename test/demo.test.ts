/**
 * Tests for the demo building blocks: the capacity-limited upstream and the
 * open-loop load generator; then the demo itself, shortened: the same load
 * without and with Sluice, side by side. Everything listens on 127.0.0.1:0 and is closed in
 * `finally` blocks so a failing assertion never leaves a server running.
 * Timing checks are deliberately loose (order-of-magnitude), since these run
 * on shared CI machines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { startCapacityUpstream } from '../src/demo/upstream.js';
import { runOpenLoop, formatSummary, type RequestResult, type SecondStats } from '../src/demo/load.js';
import { runTarget } from '../src/demo/compare.js';
import { Tally, type DemoSetup } from '../src/demo/phases.js';
import { formatComparison, formatVerdict, SIDE_COLUMNS } from '../src/demo/report.js';

async function get(agent: Agent, url: string, signal?: AbortSignal): Promise<{ status: number; body: unknown; ms: number }> {
  const started = performance.now();
  const res = await request(url, { dispatcher: agent, signal });
  const body: unknown = await res.body.json();
  return { status: res.statusCode, body, ms: performance.now() - started };
}

test('upstream serves at most `workers` requests at once and queues the rest', async () => {
  const workers = 4;
  const upstream = await startCapacityUpstream({ workers, serviceTimeMs: 30 });
  const agent = new Agent({ connections: 3 * workers });
  try {
    const results = await Promise.all(
      Array.from({ length: 3 * workers }, (_, i) => get(agent, `${upstream.url}/item/${i}`)),
    );
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal((r.body as { ok: boolean }).ok, true);
    }
    const paths = results.map((r) => (r.body as { path: string }).path).sort();
    assert.deepEqual(paths, Array.from({ length: 3 * workers }, (_, i) => `/item/${i}`).sort());
    // Some requests must have waited in the upstream's own queue.
    assert.ok(results.some((r) => (r.body as { waitedMs: number }).waitedMs > 0));
    const s = upstream.stats();
    assert.equal(s.maxInFlightSeen, workers);
    assert.equal(s.served, 3 * workers);
    assert.equal(s.inFlight, 0);
    assert.equal(s.queued, 0);
    assert.equal(s.rejected, 0);
  } finally {
    await agent.close();
    await upstream.close();
  }
});

test('setServiceTime changes latency; the control endpoint reads and changes settings', async () => {
  const upstream = await startCapacityUpstream({ workers: 2, serviceTimeMs: 10 });
  const agent = new Agent();
  try {
    const fast = await get(agent, `${upstream.url}/a`);
    upstream.setServiceTime(200);
    const slow = await get(agent, `${upstream.url}/b`);
    assert.equal(fast.status, 200);
    assert.equal(slow.status, 200);
    assert.ok(slow.ms >= 170, `slow request took ${slow.ms} ms`);
    assert.ok(fast.ms < slow.ms, `fast ${fast.ms} ms vs slow ${slow.ms} ms`);

    const posted = await request(`${upstream.url}/_control`, {
      dispatcher: agent,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ serviceTimeMs: 5, workers: 3, serviceModel: 'lognormal' }),
    });
    assert.equal(posted.statusCode, 200);
    const settings = (await posted.body.json()) as { serviceTimeMs: number; workers: number };
    assert.equal(settings.serviceTimeMs, 5);
    assert.equal(settings.workers, 3);
    assert.deepEqual(upstream.settings(), { serviceTimeMs: 5, workers: 3, serviceModel: 'lognormal', maxQueue: null });

    const badModel = await request(`${upstream.url}/_control`, {
      dispatcher: agent,
      method: 'POST',
      body: JSON.stringify({ serviceModel: 'gaussian', workers: 4 }),
    });
    assert.equal(badModel.statusCode, 400);
    assert.match(await badModel.body.text(), /serviceModel must be one of: jitter, lognormal, bimodal/);
    assert.equal(upstream.settings().workers, 3, 'nothing applied from an invalid request');

    const bad = await request(`${upstream.url}/_control`, {
      dispatcher: agent,
      method: 'POST',
      body: JSON.stringify({ workers: -1 }),
    });
    assert.equal(bad.statusCode, 400);
    await bad.body.dump();
    assert.equal(upstream.settings().workers, 3);

    const state = await get(agent, `${upstream.url}/_control`);
    assert.equal(state.status, 200);
    // Control calls are not load: only /a and /b were served.
    assert.equal((state.body as { stats: { served: number } }).stats.served, 2);
  } finally {
    await agent.close();
    await upstream.close();
  }
});

test('maxQueue: requests beyond workers + maxQueue get 503 immediately', async () => {
  const upstream = await startCapacityUpstream({ workers: 1, serviceTimeMs: 300, maxQueue: 1 });
  const agent = new Agent({ connections: 8 });
  try {
    const results = await Promise.all(Array.from({ length: 4 }, (_, i) => get(agent, `${upstream.url}/q/${i}`)));
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 503, 503]);
    for (const r of results.filter((x) => x.status === 503)) {
      // Well under the 270-330 ms service time: refused without waiting for a worker.
      assert.ok(r.ms < 200, `503 should be immediate, took ${r.ms} ms`);
    }
    assert.equal(upstream.stats().rejected, 2);
    assert.equal(upstream.stats().served, 2);
  } finally {
    await agent.close();
    await upstream.close();
  }
});

test('a client that disconnects while queued is removed from the upstream queue', async () => {
  const upstream = await startCapacityUpstream({ workers: 1, serviceTimeMs: 150 });
  const agent = new Agent({ connections: 4 });
  try {
    const first = get(agent, `${upstream.url}/first`);
    const ac = new AbortController();
    const second = get(agent, `${upstream.url}/second`, ac.signal).catch((err: unknown) => err);
    // Wait until the second request is actually queued inside the upstream.
    while (upstream.stats().queued < 1) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    while (upstream.stats().queued > 0) await new Promise((r) => setTimeout(r, 5));
    assert.ok((await second) instanceof Error);
    assert.equal((await first).status, 200);
    const s = upstream.stats();
    assert.equal(s.abandoned, 1);
    assert.equal(s.served, 1);
  } finally {
    await agent.close();
    await upstream.close();
  }
});

test('open-loop generator offers the configured rate per stream and reports completions', async () => {
  const upstream = await startCapacityUpstream({ workers: 8, serviceTimeMs: 5 });
  try {
    const perSecond: SecondStats[] = [];
    const result = await runOpenLoop({
      url: upstream.url,
      durationMs: 1500,
      streams: [
        { name: 'interactive', ratePerSecond: 80, path: '/api/x', headers: { 'x-lane': 'interactive' } },
        { name: 'batch', ratePerSecond: () => 40, path: '/batch', method: 'POST', body: '{"n":1}' },
      ],
      onSecond: (s) => perSecond.push(s),
    });
    const interactive = result.summary.streams['interactive'];
    const batch = result.summary.streams['batch'];
    assert.ok(interactive && batch);
    // 80/s and 40/s for 1.5 s: 120 and 60 arrivals.
    assert.ok(Math.abs(interactive.offered - 120) <= 12, `interactive offered ${interactive.offered}`);
    assert.ok(Math.abs(batch.offered - 60) <= 6, `batch offered ${batch.offered}`);
    assert.equal(result.summary.total.offered, interactive.offered + batch.offered);
    assert.ok(result.summary.total.ok > 0);
    // An under-loaded upstream: every sent request completes with 200.
    assert.equal(result.summary.total.ok, result.summary.total.offered);
    assert.equal(result.summary.total.errors, 0);
    assert.equal(result.unfinished, 0);
    assert.ok(interactive.latencyOk.p50 !== null && interactive.latencyOk.p50 > 0);

    // onSecond saw every second in order, and the rows add up to the summary.
    assert.deepEqual(perSecond.map((s) => s.t), result.seconds.map((s) => s.t));
    assert.deepEqual(result.seconds.map((s) => s.t), [0, 1]);
    assert.equal(result.seconds.reduce((n, s) => n + s.total.offered, 0), result.summary.total.offered);
    assert.equal(upstream.stats().served, result.summary.total.ok);

    const summary = formatSummary(result);
    assert.match(summary, /batch/);
    assert.match(summary, /p99ok/);
  } finally {
    await upstream.close();
  }
});

test('open-loop generator drops arrivals beyond maxInFlight instead of queueing them', async () => {
  const upstream = await startCapacityUpstream({ workers: 1, serviceTimeMs: 40 });
  try {
    const result = await runOpenLoop({
      url: upstream.url,
      durationMs: 300,
      maxInFlight: 3,
      streams: [{ name: 'flood', ratePerSecond: 200, path: '/' }],
    });
    const t = result.summary.total;
    assert.ok(result.maxInFlightSeen <= 3);
    assert.ok(t.droppedByGenerator > 0, `dropped ${t.droppedByGenerator}`);
    assert.equal(t.ok + t.droppedByGenerator + result.unfinished + t.errors, t.offered);
  } finally {
    await upstream.close();
  }
});

test('open-loop generator times requests out and the upstream forgets the callers that left', async () => {
  // workers: 0 simulates a hung upstream: it accepts requests and never answers.
  const upstream = await startCapacityUpstream({ workers: 0, serviceTimeMs: 5 });
  try {
    const result = await runOpenLoop({
      url: upstream.url,
      durationMs: 200,
      requestTimeoutMs: 150,
      streams: [{ name: 'stuck', ratePerSecond: 50, path: '/' }],
    });
    const t = result.summary.total;
    assert.ok(t.offered > 0);
    assert.equal(t.errors, t.offered);
    assert.equal(t.timeouts, t.offered);
    assert.equal(result.errorCodes['TIMEOUT'], t.offered);
    assert.equal(result.unfinished, 0);
    // Timed-out requests were aborted, so the upstream drops them from its queue.
    const deadline = performance.now() + 1000;
    while (upstream.stats().queued > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.equal(upstream.stats().queued, 0);
    assert.equal(upstream.stats().abandoned, t.offered);
  } finally {
    await upstream.close();
  }
});

test('open-loop generator refuses non-loopback targets', async () => {
  await assert.rejects(
    runOpenLoop({ url: 'http://example.com', durationMs: 100, streams: [{ name: 'x', ratePerSecond: 1, path: '/' }] }),
    /non-loopback/,
  );
});

// ---------------------------------------------------------------- the demo: without and with Sluice

// A fixed limit told the truth (the worker count): this test is about the demo and what admission
// control and lanes change, not about how fast an adaptive limit learns on a busy 2-core machine
// (with the default `little` it failed 1 run in 5 at load average ~7: CPU contention inflates the
// RTT it measures and it cut its limit; issue 10's simulation and bench judge the controller).
const SETUP: DemoSetup = {
  workers: 8,
  serviceMs: 50,
  interactiveShare: 0.3,
  clientTimeoutMs: 1000,
  algorithm: 'fixed',
  phases: [
    { name: 'normal', seconds: 1, load: 0.5, serviceFactor: 1 },
    { name: 'overload', seconds: 2, load: 3, serviceFactor: 1 },
    { name: 'slowdown', seconds: 1, load: 0.5, serviceFactor: 3 },
  ],
};

const answer = (stream: string, atMs: number, status: number | null, latencyMs: number, kind: RequestResult['kind'] = 'response'): RequestResult => ({ stream, atMs, status, latencyMs, kind });

test('the tally counts each arrival in the phase it arrived in, and useful answers in the phase they reached the client', () => {
  const t = new Tally(SETUP);
  t.add(answer('interactive', 100, 200, 50)); // normal, useful in normal
  t.add(answer('interactive', 900, 200, 300)); // arrived in normal, answered in overload
  t.add(answer('interactive', 950, 503, 1)); // refused
  t.add(answer('interactive', 990, null, 1000, 'timeout')); // gave up
  t.add(answer('batch', 1500, 200, 20));
  t.add(answer('batch', 3900, 200, 500)); // answered after the last phase: useful nowhere
  const [normal, overload, slowdown] = t.results([10, 40, 1]);
  const overloadS = SETUP.phases[1]!.seconds;
  assert.ok(normal && overload && slowdown);
  assert.deepEqual(normal.lanes.interactive, { offered: 4, okPct: 50, refusedPct: 25, gaveUpPct: 25, p99OkMs: 300, usefulPerSecond: 1 });
  assert.equal(overload.lanes.interactive.usefulPerSecond, 1 / overloadS);
  assert.deepEqual(overload.lanes.batch, { offered: 1, okPct: 100, refusedPct: 0, gaveUpPct: 0, p99OkMs: 20, usefulPerSecond: 1 / overloadS });
  assert.deepEqual(normal.upstream, { servedPerSecond: 10, usefulPct: 10 });
  assert.deepEqual(overload.upstream, { servedPerSecond: 40 / overloadS, usefulPct: 5 });
  assert.equal(slowdown.lanes.batch.offered, 1);
  assert.equal(slowdown.lanes.batch.usefulPerSecond, 0);
});

test('the demo runs the same load without and with Sluice; Sluice keeps more interactive requests answered in the overload', { timeout: 120_000 }, async () => {
  const lines: string[] = [];
  const bare = await runTarget('bare', SETUP, (l) => lines.push(l));
  const sluice = await runTarget('sluice', SETUP, (l) => lines.push(l));

  // Sluice's start-up line (the real CLI runs it), then a labelled line per second of each run.
  const seconds = SETUP.phases.reduce((n, p) => n + p.seconds, 0);
  assert.equal(lines.length, 2 * seconds + 1);
  assert.match(lines[seconds] ?? '', /^sluice \S+ listening on http:\/\/127\.0\.0\.1:\d+, admin on http:\/\/127\.0\.0\.1:\d+, 1 route: demo → /);
  lines.splice(seconds, 1);
  for (const l of lines) assert.match(l, /^ *\d+ s (normal|overload|slowdown) +\| interactive: \d+ sent, \d+ ok \(p99 [^)]+\), \d+ refused, \d+ gave up \| batch: .* \| upstream: \d+\/8 busy, \d+ queued/);
  assert.ok(lines.slice(seconds).every((l) => / \| sluice: limit \d+, in flight \d+, queued \d+, rtt /.test(l)), 'the Sluice run says its limit');

  // The table: a title naming both sides, labelled columns for each, three rows per phase.
  const printed = formatComparison(bare, sluice);
  const table = printed.split('\n');
  const seen = `\n${lines.join('\n')}\n${printed}`;
  assert.match(table[0] ?? '', /\| without admission control: bare @fastify\/http-proxy .*\| with sluice, limit fixed starting at 8 \(2\.\.64\)/);
  const header = (table[1] ?? '').split(/ {2,}|\|/).map((c) => c.trim()).filter((c) => c !== '');
  assert.deepEqual(header, ['phase', 'lane', 'offered/s', ...SIDE_COLUMNS, ...SIDE_COLUMNS]);
  assert.equal(table.length, 2 + 3 * SETUP.phases.length);
  SETUP.phases.forEach((p, i) => {
    const [a, b, u] = table.slice(2 + 3 * i, 5 + 3 * i);
    assert.match(a ?? '', new RegExp(`^${p.name} +interactive +\\d+ +\\|( +[\\d.-]+){5} +\\|( +[\\d.-]+){5}$`));
    assert.match(b ?? '', /^ +batch +\d+ +\|( +[\d.-]+){5} +\|( +[\d.-]+){5}$/);
    assert.match(u ?? '', /^ +upstream +\| served [\d.]+\/s, ([\d.]+% useful|-) +\| served [\d.]+\/s, ([\d.]+% useful|-)$/);
  });

  // What the demo is for, measured: in the overload, bare lets interactive requests wait until
  // their clients give up; Sluice serves them first and refuses batch at once.
  const over = (r: typeof bare) => r.phases[1]!.lanes;
  assert.ok(over(sluice).interactive.okPct > over(bare).interactive.okPct, `interactive ok: sluice ${over(sluice).interactive.okPct}% vs bare ${over(bare).interactive.okPct}%${seen}`);
  assert.ok(over(sluice).batch.refusedPct > 0 && over(bare).batch.refusedPct === 0, `only Sluice refuses (bare has no refusals to give)${seen}`);
  assert.ok(over(bare).interactive.gaveUpPct > over(sluice).interactive.gaveUpPct, `without Sluice more clients give up${seen}`);
  const verdict = formatVerdict(bare, sluice);
  assert.equal(verdict.length, SETUP.phases.length);
  assert.match(verdict[1] ?? '', /overload +interactive ok [\d.]+% with Sluice vs [\d.]+% without/);
});

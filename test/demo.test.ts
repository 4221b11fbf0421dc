/**
 * Tests for the demo building blocks: the capacity-limited upstream and the
 * open-loop load generator. Everything listens on 127.0.0.1:0 and is closed in
 * `finally` blocks so a failing assertion never leaves a server running.
 * Timing checks are deliberately loose (order-of-magnitude), since these run
 * on shared CI machines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { startCapacityUpstream } from '../src/demo/upstream.js';
import { runOpenLoop, formatSecondTable, formatSummary, type SecondStats } from '../src/demo/load.js';

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

    const table = formatSecondTable(result.seconds);
    assert.match(table, /^\s*t\s+stream\s+offered\s+ok\s+429\s+503\s+other/);
    assert.match(table, /interactive/);
    assert.match(table, /total/);
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

/**
 * The benchmark's own parts: the open-loop generator (against real servers
 * on 127.0.0.1:0), the report's analysis helpers and the SVG chart writer.
 * Speeds are never asserted here; `npm run bench` measures them.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { median, settleTime, spreadPct, steadyRate } from '../bench/analysis.js';
import { runLoad } from '../bench/loadgen.js';
import { lineChart } from '../bench/svg.js';
import { eventually, startSluice } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

test('loadgen sends exactly rate x duration arrivals on schedule and counts every 200', async () => {
  // Arrival k is due at k x 10 ms: k = 0..49 fall inside 500 ms.
  const r = await runLoad({ url: up.url, durationMs: 500, streams: [{ name: 'a', rate: 100, path: '/x' }], connections: 8, maxInFlight: 100, timeoutMs: 5000 });
  const a = r.streams['a']!;
  assert.equal(a.offered, 50);
  assert.equal(a.dropped, 0);
  assert.equal(a.ok, 50);
  assert.equal(a.latencyOk.count, 50);
  assert.equal(r.unfinished, 0);
  assert.equal(r.seconds.reduce((n, s) => n + s.streams['a']!.ok, 0), 50);
});

test('loadgen measures latency from the intended send time, so client-side queueing is not hidden', async () => {
  // One connection to a server that takes 50 ms per request: 20 arrivals in
  // 200 ms are answered one after another, the last about 1 s after it was
  // due. A generator timing from the actual send (or a closed loop) would
  // report ~50 ms for every request.
  const slow: Server = createServer((req, res) => {
    req.resume();
    setTimeout(() => res.end('ok'), 50);
  });
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
    const r = await runLoad({ url, durationMs: 200, streams: [{ name: 'a', rate: 100, path: '/' }], connections: 1, maxInFlight: 100, timeoutMs: 10_000 });
    const a = r.streams['a']!;
    assert.equal(a.ok, 20);
    assert.ok((a.latencyOk.max ?? 0) >= 750, `max latency ${a.latencyOk.max} ms`);
    assert.ok((a.latencyOk.p50 ?? 0) >= 300, `p50 ${a.latencyOk.p50} ms`);
  } finally {
    slow.closeAllConnections();
    await new Promise<void>((resolve) => slow.close(() => resolve()));
  }
});

test('loadgen drops arrivals beyond maxInFlight instead of queueing them, and keeps per-phase counts', async () => {
  const r = await runLoad({
    url: up.url,
    durationMs: 300,
    streams: [{ name: 'held', rate: 100, path: '/delay/400' }],
    connections: 2,
    maxInFlight: 2,
    timeoutMs: 5000,
    phasesMs: [150],
  });
  const h = r.streams['held']!;
  assert.equal(h.offered, 30);
  assert.equal(h.ok, 2);
  assert.equal(h.dropped, 28);
  assert.equal(h.phases.length, 2);
  assert.equal(h.phases[0]!.ok + h.phases[1]!.ok, 2);
  // Both sends happened at once, in the first phase.
  assert.equal(h.phases[0]!.ok, 2);
});

test("loadgen records Sluice's refusals by status:reason and flags refusals that break the contract", async () => {
  const s = await startSluice(`
log: { level: error }
lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
defaults:
  limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
routes:
  - name: held
    match: { pathPrefix: /hold }
    upstream: ${up.url}
  - name: other
    match: { pathPrefix: / }
    upstream: ${up.url}
    limit: { initial: 100, max: 100 }
`);
  try {
    const held = fetch(`${s.url}/hold/bench-1`).then((r) => r.text());
    await up.waitHolding(1);
    const r = await runLoad({
      url: s.url,
      durationMs: 200,
      streams: [
        { name: 'refused', rate: 50, path: '/hold/x' },
        { name: 'upstream503', rate: 50, path: '/status/503' },
      ],
      connections: 8,
      maxInFlight: 100,
      timeoutMs: 5000,
    });
    up.release('bench-1');
    await held;
    const refused = r.streams['refused']!;
    assert.deepEqual(refused.refused, { '503:queue_full': 10 });
    assert.equal(refused.badRefusals, 0);
    assert.equal(refused.latencyRefused.count, 10);
    // The upstream's own 503 (no Retry-After, no reason) passes through Sluice unchanged.
    const u = r.streams['upstream503']!;
    assert.deepEqual(u.refused, { '503:unknown': 10 });
    assert.equal(u.badRefusals, 10);
  } finally {
    await s.close();
  }
});

test('loadgen times requests out from their intended send time and aborts them', async () => {
  // /hold/... is never answered unless released.
  const r = await runLoad({ url: up.url, durationMs: 100, streams: [{ name: 'stuck', rate: 50, path: '/hold/never' }], connections: 8, maxInFlight: 100, timeoutMs: 150 });
  const s = r.streams['stuck']!;
  assert.equal(s.offered, 5);
  assert.deepEqual(s.errors, { TIMEOUT: 5 });
  assert.equal(s.ok, 0);
  assert.equal(r.unfinished, 0);
  // The aborted requests closed their connections: the upstream holds nothing.
  await eventually(() => up.holding() === 0, 'the upstream to see the aborted requests go');
});

test('loadgen refuses non-loopback targets', async () => {
  await assert.rejects(
    runLoad({ url: 'http://192.0.2.1', durationMs: 100, streams: [{ name: 'a', rate: 1, path: '/' }], connections: 1, maxInFlight: 1, timeoutMs: 100 }),
    /loopback/,
  );
});

test('analysis: median, spread, steady rate over whole seconds after the warm-up', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.equal(spreadPct([90, 100, 110]), 20);
  const seconds = [0, 1, 2, 3].map((t) => ({ t, streams: { a: { ok: t === 0 ? 1 : 10 * t, refused: 1, other: 0, p50: null, p99: null } } }));
  const result = { durationMs: 3500, seconds } as unknown as Parameters<typeof steadyRate>[0];
  // Seconds 1 and 2: second 0 is warm-up, second 3 is the partial last one.
  assert.equal(steadyRate(result, 'a', 'ok', 1), 15);
  assert.equal(steadyRate(result, 'a', 'answered', 1), 16);
});

test('analysis: the limit reaches the band of its final value, and settles once it stays there', () => {
  const trace = [
    ...[0, 1, 2, 3, 4].map((t) => ({ t, limit: 20 })),
    { t: 5, limit: 16 },
    { t: 6, limit: 12 },
    { t: 7, limit: 10 },
    { t: 8, limit: 13 }, // overshoot outside the band: not settled yet
    ...[9, 10, 11, 12, 13, 14].map((t) => ({ t, limit: 10 })),
  ];
  const s = settleTime(trace, 5, 15);
  assert.equal(s.finalLimit, 10);
  assert.equal(s.reachS, 2);
  assert.equal(s.settleS, 4);
  assert.equal(settleTime(trace, 0, 5).settleS, 0);
  // Still moving at the end of the phase: no settle time.
  const moving = [0, 1, 2, 3, 4, 5, 6, 7].map((t) => ({ t, limit: t % 2 ? 10 : 30 }));
  assert.equal(settleTime(moving, 0, 8).settleS, null);
  assert.equal(settleTime(moving, 0, 8).reachS, null); // swinging 10 <-> 30 around a median of 20 it never takes
});

test('svg chart: one path per series with data, markers, escaped text, both axes', () => {
  const svg = lineChart({
    title: 'limit <vs> latency & more',
    xLabel: 'seconds',
    leftLabel: 'requests',
    rightLabel: 'ms',
    series: [
      { name: 'limit', points: [[0, 10], [1, 12], [2, null], [3, 8]] },
      { name: 'p99', axis: 'right', points: [[0, 50], [3, 400]] },
      { name: 'empty', points: [] },
    ],
    markers: [{ x: 2, label: 'capacity halves' }],
  });
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  assert.match(svg, /limit &lt;vs&gt; latency &amp; more/);
  assert.equal((svg.match(/<path /g) ?? []).length, 2);
  // The null point breaks the limit line into two pieces: two M commands.
  const limitPath = /<path d="([^"]+)"/.exec(svg)?.[1] ?? '';
  assert.equal((limitPath.match(/M/g) ?? []).length, 2);
  assert.match(svg, /capacity halves/);
  assert.match(svg, /p99 \(right\)/);
  assert.doesNotMatch(svg, /NaN|undefined/);
});

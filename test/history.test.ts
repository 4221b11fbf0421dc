/**
 * The live page's server-side history (src/observability/history.ts): rates
 * and interval percentiles from cumulative totals, a bounded ring, and the
 * sampling timer on a manual clock. No sockets, no sleeping.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { History, bucketQuantile, sampleEvery, type RouteTotals, type RouteView, type Snapshot } from '../src/observability/history.js';

const BOUNDS = [0.001, 0.01, 0.1, 1];

function view(o: Partial<RouteView> = {}): RouteView {
  return {
    name: 'orders',
    upstream: 'http://127.0.0.1:3000',
    algorithm: 'gradient',
    limit: 10,
    inflight: 2,
    queued: 1,
    state: 'normal',
    completionsPerSecond: 40,
    backlogSeconds: 0.03,
    circuitBreaker: { state: 'closed', opens: 0, openRemainingMs: 0 },
    lanes: [{ name: 'interactive', inflight: 2, queued: 1, maxSlots: 10, oldestQueuedMs: 12.4 }],
    ...o,
  };
}

/** Totals of one lane `interactive`; histograms as per-bucket counts (4 bounds + overflow). */
function totals(o: { admitted?: number; refused?: Record<string, number>; wait?: number[]; latency?: number[]; errors?: Record<string, number>; fivexx?: number } = {}): RouteTotals {
  const refusals = o.refused ?? {};
  return {
    lanes: [
      {
        name: 'interactive',
        admitted: o.admitted ?? 0,
        refused: Object.values(refusals).reduce((a, b) => a + b, 0),
        refusals,
        queueWait: { bounds: BOUNDS, counts: o.wait ?? [0, 0, 0, 0, 0] },
        upstreamLatency: { bounds: BOUNDS, counts: o.latency ?? [0, 0, 0, 0, 0] },
      },
    ],
    upstreamLatency: { bounds: BOUNDS, counts: o.latency ?? [0, 0, 0, 0, 0] },
    upstreamErrors: o.errors ?? {},
    responses5xx: o.fivexx ?? 0,
  };
}

function snap(v: RouteView, t: RouteTotals | undefined, extra: Partial<Snapshot> = {}): Snapshot {
  return { ready: true, draining: false, notReady: null, routes: [{ view: v, totals: t }], ...extra };
}

const at = (s: number) => ({ mono: s * 1000, unix: 1_700_000_000_000 + s * 1000 });

test('bucketQuantile interpolates inside the bucket like histogram_quantile, and answers the top bound above it', () => {
  // 100 observations in (0.01, 0.1]: the median is halfway through that bucket.
  assert.ok(Math.abs(bucketQuantile(0.5, BOUNDS, [0, 0, 100, 0, 0]) - 0.055) < 1e-12);
  // 50 in the first bucket (from 0), 50 in the second: p50 is the first bucket's top.
  assert.equal(bucketQuantile(0.5, BOUNDS, [50, 50, 0, 0, 0]), 0.001);
  assert.equal(bucketQuantile(0.99, BOUNDS, [0, 0, 0, 0, 10]), 1);
  assert.ok(Number.isNaN(bucketQuantile(0.5, BOUNDS, [0, 0, 0, 0, 0])));
});

test('rates are the counters\' increase over the seconds between samples; the first sample has none', () => {
  const h = new History();
  const first = h.record(at(0), snap(view(), totals({ admitted: 100, refused: { queue_full: 10 }, errors: { refused: 0 } })));
  assert.equal(first.routes[0]?.admittedPerSecond, 0);
  assert.deepEqual(first.routes[0]?.refusedPerSecond, {});
  // Two seconds later (a late tick): divided by 2, not by 1.
  const r = h.record(at(2), snap(view(), totals({ admitted: 140, refused: { queue_full: 16, circuit_open: 0 }, errors: { refused: 3 }, fivexx: 4 }))).routes[0];
  assert.equal(r?.admittedPerSecond, 20);
  assert.deepEqual(r?.refusedPerSecond, { queue_full: 3 }, 'reasons with no refusal are left out');
  assert.equal(r?.lanes[0]?.refusedPerSecond, 3);
  assert.deepEqual(r?.upstreamErrorsPerSecond, { refused: 1.5 });
  assert.equal(r?.upstream5xxPerSecond, 2);
});

test('percentiles cover only what was observed since the previous sample; none observed is null', () => {
  const h = new History();
  h.record(at(0), snap(view(), totals({ wait: [1000, 0, 0, 0, 0], latency: [0, 0, 0, 1000, 0] })));
  // In the last second: 100 waits in (0.01, 0.1], 100 responses in (0.001, 0.01].
  const r = h.record(at(1), snap(view(), totals({ wait: [1000, 0, 100, 0, 0], latency: [0, 100, 0, 1000, 0] }))).routes[0];
  assert.deepEqual(r?.lanes[0]?.queueWaitMs, { p50: 55, p99: 99.1 });
  assert.deepEqual(r?.upstreamLatencyMs, { p50: 5.5, p99: 9.91 });
  const idle = h.record(at(2), snap(view(), totals({ wait: [1000, 0, 100, 0, 0], latency: [0, 100, 0, 1000, 0] }))).routes[0];
  assert.equal(idle?.lanes[0]?.queueWaitMs, null);
  assert.equal(idle?.upstreamLatencyMs, null);
});

test('upstream latency per lane: each lane\'s percentiles from its own responses, the route\'s from all of them', () => {
  const lane = (name: string, latency: number[]) => ({ name, admitted: 0, refused: 0, refusals: {}, queueWait: { bounds: BOUNDS, counts: [0, 0, 0, 0, 0] }, upstreamLatency: { bounds: BOUNDS, counts: latency } });
  const two = (fast: number[], slow: number[]): RouteTotals => ({
    lanes: [lane('interactive', fast), lane('batch', slow)],
    upstreamLatency: { bounds: BOUNDS, counts: fast.map((c, i) => c + (slow[i] as number)) },
    upstreamErrors: {},
    responses5xx: 0,
  });
  const v = view({ lanes: ['interactive', 'batch'].map((name) => ({ name, inflight: 0, queued: 0, maxSlots: 10, oldestQueuedMs: 0 })) });
  const h = new History();
  h.record(at(0), snap(v, two([0, 0, 0, 0, 0], [0, 0, 0, 0, 0])));
  // In the last second: interactive 100 responses in (0.001, 0.01], batch 100 in (0.1, 1]; the route has both.
  const r = h.record(at(1), snap(v, two([0, 100, 0, 0, 0], [0, 0, 0, 100, 0]))).routes[0];
  assert.deepEqual(r?.lanes.map((l) => [l.name, l.upstreamLatencyMs]), [
    ['interactive', { p50: 5.5, p99: 9.91 }],
    ['batch', { p50: 550, p99: 991 }],
  ]);
  assert.deepEqual(r?.upstreamLatencyMs, { p50: 10, p99: 982 });
  // A lane with no response in the interval has no latency (a gap, not a zero).
  const idle = h.record(at(2), snap(v, two([0, 150, 0, 0, 0], [0, 0, 0, 100, 0]))).routes[0];
  assert.deepEqual(idle?.lanes.map((l) => l.upstreamLatencyMs), [{ p50: 5.5, p99: 9.91 }, null]);
});

test('a sample keeps the state: breaker open, shed state, queues, open WebSockets, readiness and why', () => {
  const h = new History();
  const dead = view({ name: 'dead', circuitBreaker: { state: 'open', opens: 3, openRemainingMs: 4321.7 }, state: 'normal', backlogSeconds: null });
  const s = h.record(at(0), snap(dead, undefined, { ready: false, notReady: { reason: 'backlog', routes: [{ route: 'dead' }] } }));
  assert.deepEqual(s.routes[0]?.breaker, { state: 'open', opens: 3, openRemainingMs: 4322 });
  assert.equal(s.routes[0]?.backlogSeconds, null);
  assert.equal(s.routes[0]?.lanes[0]?.oldestQueuedMs, 12);
  assert.equal(s.ready, false);
  assert.deepEqual(s.notReady, { reason: 'backlog', routes: [{ route: 'dead' }] });
  assert.equal(s.t, 1_700_000_000_000);
  const noBreaker = h.record(at(1), snap(view({ circuitBreaker: null }), undefined));
  assert.equal(noBreaker.routes[0]?.breaker, null);
  assert.equal(noBreaker.routes[0]?.websockets, null);
  const chat = h.record(at(2), snap(view({ websocket: { open: 7, maxOpen: 1000 } }), undefined));
  assert.deepEqual(chat.routes[0]?.websockets, { open: 7, maxOpen: 1000 });
});

test('totals are copied: the metrics mutating their arrays afterwards does not change the next rates', () => {
  const h = new History();
  const live = totals({ wait: [0, 0, 0, 0, 0] });
  h.record(at(0), snap(view(), live));
  (live.lanes[0]?.queueWait.counts as number[])[2] = 50;
  const r = h.record(at(1), snap(view(), live)).routes[0];
  assert.deepEqual(r?.lanes[0]?.queueWaitMs, { p50: 55, p99: 99.1 });
});

test('a counter that went down (route re-created) counts from zero instead of a negative rate', () => {
  const h = new History();
  h.record(at(0), snap(view(), totals({ admitted: 500 })));
  assert.equal(h.record(at(1), snap(view(), totals({ admitted: 5 }))).routes[0]?.admittedPerSecond, 0);
});

test('the ring keeps the last `capacity` samples, oldest first; since(seq) returns only newer ones', () => {
  const h = new History(3);
  for (let i = 0; i < 5; i++) h.record(at(i), snap(view(), undefined));
  assert.deepEqual(
    h.since().map((s) => s.seq),
    [3, 4, 5],
  );
  assert.deepEqual(
    h.since(4).map((s) => s.seq),
    [5],
  );
  assert.deepEqual(h.since(5), []);
});

test('sampleEvery samples at once, then once per period, and stops when cancelled', () => {
  const clock = new ManualClock(0);
  const times: number[] = [];
  const timer = sampleEvery(clock, 1000, () => times.push(clock.now()));
  clock.advance(3500);
  assert.deepEqual(times, [0, 1000, 2000, 3000]);
  timer.cancel();
  clock.advance(5000);
  assert.equal(times.length, 4);
  assert.equal(clock.pendingTimers(), 0);
});

/**
 * The `little` limit (src/core/limit/little-limit.ts) against a scripted
 * FIFO upstream: C workers, service time S, so a request dispatched with n
 * in flight answers in S · max(1, n / C). One sample every 5 ms of sample
 * time, dispatched at the current limit (a saturated route) unless a test
 * says otherwise. No clock, no timers: time is in the samples.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../src/config/load.js';
import type { LimitConfig } from '../src/config/types.js';
import { createLimit } from '../src/core/limit/create.js';
import type { Limit } from '../src/core/limit/limit.js';
import { SampleWindow, type Window } from '../src/core/limit/window.js';

function limitConfig(limit: string): LimitConfig {
  const yaml = `defaults: { limit: ${limit} }\nroutes: [{ name: r, match: { pathPrefix: / }, upstream: http://127.0.0.1:1 }]\n`;
  return parseConfig(yaml, 'test.yaml').routes[0]!.limit;
}

interface Upstream {
  workers: number;
  serviceMs: number;
}

/** A limit driven by a FIFO upstream; `inflight` overrides the in-flight count at dispatch. */
function route(limit: string, up: Upstream) {
  const l: Limit = createLimit(limitConfig(limit));
  let t = 0;
  const run = (ms: number, inflight?: () => number): void => {
    for (const end = t + ms; t < end; t += 5) {
      const n = inflight?.() ?? l.current;
      const rtt = up.serviceMs * Math.max(1, n / up.workers);
      l.onSample({ startedAt: t - rtt, rttMs: rtt, inflight: n, dropped: false });
    }
  };
  return { limit: l, run, up };
}

function within(actual: number, lo: number, hi: number, what = 'limit'): void {
  assert.ok(actual >= lo && actual <= hi, `${what} ${actual}, expected ${lo}..${hi}`);
}

test('little is the default algorithm', () => {
  assert.equal(limitConfig('{}').algorithm, 'little');
});

test('little: from an initial limit 10x too high, the start probe halves until the RTT stops falling and finds the workers', () => {
  const r = route('{ initial: 160 }', { workers: 16, serviceMs: 40 });
  r.run(3000);
  within(r.limit.current, 16, 19);
  within(r.limit.rtt!.baselineMs!, 39, 41, 'baseline');
});

test('little: from an initial limit 10x too low, it grows to the workers while the RTT shows headroom', () => {
  const r = route('{ initial: 2 }', { workers: 16, serviceMs: 40 });
  r.run(3000);
  within(r.limit.current, 16, 19);
});

test('little: a slower upstream (service time x3, same workers) is not a queue: the limit falls, the probe raises the baseline and restores it', () => {
  const r = route('{ initial: 16 }', { workers: 16, serviceMs: 40 });
  r.run(3000);
  const before = r.limit.current;
  r.up.serviceMs = 120;
  r.run(4000);
  within(r.limit.current, 16, 19);
  assert.ok(r.limit.current >= before - 1, `limit ${r.limit.current} after the slowdown, ${before} before`);
  within(r.limit.rtt!.baselineMs!, 115, 125, 'baseline');
  r.up.serviceMs = 40;
  r.run(3000);
  within(r.limit.current, 16, 19);
  within(r.limit.rtt!.baselineMs!, 38, 42, 'baseline');
});

test('little: fewer workers is a queue: the limit follows them down and back up, the baseline stays', () => {
  const r = route('{ initial: 40 }', { workers: 40, serviceMs: 80 });
  r.run(3000);
  within(r.limit.current, 40, 45);
  r.up.workers = 10;
  r.run(3000);
  within(r.limit.current, 10, 12);
  within(r.limit.rtt!.baselineMs!, 78, 82, 'baseline');
  r.up.workers = 40;
  r.run(3000);
  within(r.limit.current, 40, 45);
});

test('little: holds while the route does not fill its limit, whatever the RTT says about headroom', () => {
  const r = route('{ initial: 16 }', { workers: 16, serviceMs: 40 });
  r.run(3000);
  let lo = Infinity;
  let hi = 0;
  for (let i = 0; i < 60; i++) {
    r.run(100, () => 5);
    lo = Math.min(lo, r.limit.current);
    hi = Math.max(hi, r.limit.current);
  }
  // No growth on the headroom a quiet route shows, no collapse either; the published
  // limit dithers by one request around its estimate (see little-limit.ts).
  within(lo, 15, 19, 'lowest limit');
  within(hi, 15, 19, 'highest limit');
  assert.ok(hi - lo <= 1, `limit ranged ${lo}..${hi}`);
});

test('little: windows with drops back off (10% per window)', () => {
  const l = createLimit(limitConfig('{ initial: 16 }'));
  let t = 0;
  const sample = (dropped: boolean): void => {
    t += 5;
    l.onSample({ startedAt: t - 40, rttMs: 40, inflight: l.current, dropped });
  };
  for (let i = 0; i < 600; i++) sample(false);
  const before = l.current;
  for (let i = 0; i < 60; i++) sample(i % 10 === 0);
  assert.ok(l.current < before * 0.9, `limit ${l.current} after drops, ${before} before`);
});

test("a window reports its samples' mean in-flight count and how precise its RTT is", () => {
  const w = new SampleWindow({ minSamples: 4, windowMs: 30, percentile: 0.5 });
  let c: Window | null = null;
  [10, 12, 14, 16].forEach((rtt, i) => (c = w.add({ startedAt: i * 10, rttMs: rtt, inflight: 2 + i, dropped: false }) ?? c));
  assert.ok(c !== null, 'the fourth sample closes the window');
  c = c as Window;
  assert.equal(c.meanInflight, 3.5);
  assert.ok(c.rttError > 0 && c.rttError < 0.3, `rttError ${c.rttError}`);
});

test('a window with a maxError stays open until its RTT is that precise (a noisy upstream gets longer windows)', () => {
  const noisy = new SampleWindow({ minSamples: 10, windowMs: 100, percentile: 0.5 }, 0.05);
  let samples = 0;
  for (let i = 0; ; i++) {
    samples++;
    const w = noisy.add({ startedAt: i * 10, rttMs: i % 2 === 0 ? 20 : 60, inflight: 1, dropped: false });
    if (w !== null) {
      assert.ok(w.rttError <= 0.05 || w.endMs - w.startMs >= 1000, `closed at error ${w.rttError}`);
      break;
    }
  }
  assert.ok(samples > 10, `closed after ${samples} samples`);
});

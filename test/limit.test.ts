/**
 * The limit algorithms with scripted samples: no clock, no timers. Each
 * helper call delivers one full window (10 samples spread over 100 ms of
 * sample time) with the given RTT, in-flight count and drops.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../src/config/load.js';
import type { LimitConfig } from '../src/config/types.js';
import { LogHistogram } from '../src/core/histogram.js';
import { createLimit } from '../src/core/limit/create.js';
import { Hysteresis } from '../src/core/limit/hysteresis.js';
import { FixedLimit, type Limit } from '../src/core/limit/limit.js';
import { ManualClock, seededRandom } from '../src/core/clock.js';
import { Limiter, type Permit } from '../src/core/limiter/limiter.js';
import { SampleWindow } from '../src/core/limit/window.js';

/** A route's limit config from YAML (flow mapping), over the documented defaults. */
function limitConfig(limit: string): LimitConfig {
  const yaml = `defaults: { limit: ${limit} }\nroutes: [{ name: r, match: { pathPrefix: / }, upstream: http://127.0.0.1:1 }]\n`;
  return parseConfig(yaml, 'test.yaml').routes[0]!.limit;
}

/** Without hysteresis, so each window's step is the algorithm's own. */
const RAW = 'window: { minSamples: 10, windowMs: 100 }, hysteresis: { increaseAfterWindows: 1, deadBand: 0 }';

interface WindowSpec {
  rttMs?: number;
  /** In-flight count at dispatch; default: the current limit (the upstream is using it). */
  inflight?: number;
  drops?: number;
}

function drive(limit: string) {
  const l: Limit = createLimit(limitConfig(limit));
  let t = 0;
  const window = (w: WindowSpec = {}) => {
    const rtt = w.rttMs ?? 10;
    const inflight = w.inflight ?? l.current;
    for (let i = 0; i < 10; i++) {
      const end = t + (i * 100) / 9;
      l.onSample({ startedAt: end - rtt, rttMs: rtt, inflight, dropped: i < (w.drops ?? 0) });
    }
    t += 100 + 100 / 9;
  };
  const windows = (n: number, w: WindowSpec = {}) => {
    for (let i = 0; i < n; i++) window(w);
  };
  return { limit: l, window, windows };
}

/** The published limit is floor(estimate) and RTTs pass a 1%-wide histogram: allow one step. */
function near(actual: number, expected: number, what = 'limit'): void {
  assert.ok(Math.abs(actual - expected) <= 1, `${what} ${actual}, expected about ${expected}`);
}

/** Latency algorithms start with a baseline probe at half the limit; this runs it at `rttMs`. */
function probed(limit: string, rttMs = 10) {
  const d = drive(limit);
  d.window({ rttMs });
  return d;
}

// ---------------------------------------------------------------- fixed

test('fixed: stays at initial whatever the samples say', () => {
  const d = drive('{ algorithm: fixed, initial: 7 }');
  d.windows(5, { rttMs: 500, drops: 10 });
  assert.equal(d.limit.current, 7);
  assert.equal(new FixedLimit(0).current, 1);
});

// ---------------------------------------------------------------- aimd

test('aimd: grows by `increase` per window while the limit is used', () => {
  const d = drive(`{ algorithm: aimd, initial: 10, aimd: { increase: 2 }, ${RAW} }`);
  d.windows(3);
  assert.equal(d.limit.current, 16);
});

test('aimd: a window with a drop multiplies by backoff', () => {
  const d = drive(`{ algorithm: aimd, initial: 20, aimd: { backoff: 0.5 }, ${RAW} }`);
  d.window({ drops: 1 });
  assert.equal(d.limit.current, 10);
});

test('aimd: rising latency alone does not move it (it listens to drops only)', () => {
  const d = drive(`{ algorithm: aimd, initial: 10, ${RAW} }`);
  d.window({ rttMs: 10 });
  d.window({ rttMs: 1000 });
  assert.equal(d.limit.current, 12);
});

test('aimd: holds while app-limited (max inflight < limit / 2)', () => {
  const d = drive(`{ algorithm: aimd, initial: 20, ${RAW} }`);
  d.windows(5, { inflight: 9 });
  assert.equal(d.limit.current, 20);
  d.window({ inflight: 10 });
  assert.equal(d.limit.current, 21);
});

test('aimd: clamps to [min, max]', () => {
  const d = drive(`{ algorithm: aimd, initial: 4, min: 3, max: 6, ${RAW} }`);
  d.windows(10);
  assert.equal(d.limit.current, 6);
  d.windows(10, { drops: 1 });
  assert.equal(d.limit.current, 3);
});

// ---------------------------------------------------------------- gradient

test('gradient: the first window probes the baseline at half the limit, then the limit returns', () => {
  const d = drive(`{ algorithm: gradient, initial: 20, ${RAW} }`);
  assert.equal(d.limit.current, 10);
  assert.deepEqual(d.limit.rtt, { recentMs: null, baselineMs: null });
  d.window({ rttMs: 40 });
  assert.equal(d.limit.current, 20);
  const base = d.limit.rtt!.baselineMs!;
  assert.ok(Math.abs(base - 40) < 0.4, `baseline ${base}`);
});

test('gradient: grows while RTT stays at the baseline (by smoothing * sqrt(L) per window)', () => {
  const d = probed(`{ algorithm: gradient, initial: 16, ${RAW} }`);
  d.window(); // 16 + 0.2 * 4 = 16.8
  d.window(); // 16.8 + 0.2 * 4.1 = 17.62
  assert.equal(d.limit.current, 17);
  d.windows(10);
  assert.ok(d.limit.current >= 26, `limit ${d.limit.current}`);
});

test('gradient: shrinks when RTT rises above tolerance * baseline, in proportion', () => {
  const d = probed(`{ algorithm: gradient, initial: 100, gradient: { queueAllowance: 0 }, ${RAW} }`);
  d.window({ rttMs: 12.5 }); // gradient 0.8: 0.8 * 100 + 0.2 * 80 = 96
  near(d.limit.current, 96);
  d.window({ rttMs: 100 }); // gradient clamped to 0.5: 0.8 * 96 + 0.2 * 48 = 86.4
  near(d.limit.current, 86);
});

test('gradient: tolerance lets RTT rise that much before shrinking', () => {
  const d = probed(`{ algorithm: gradient, initial: 100, gradient: { tolerance: 1.5, queueAllowance: 0 }, ${RAW} }`);
  d.windows(3, { rttMs: 14 });
  assert.equal(d.limit.current, 100);
  d.window({ rttMs: 30 }); // gradient 1.5 * 10 / 30 = 0.5
  assert.equal(d.limit.current, 90);
});

test('gradient: a window with a drop costs smoothing / 2 (10% by default)', () => {
  const d = probed(`{ algorithm: gradient, initial: 50, ${RAW} }`);
  d.window({ drops: 1 });
  assert.equal(d.limit.current, 45);
});

test('gradient: holds while app-limited, but may still shrink', () => {
  const d = probed(`{ algorithm: gradient, initial: 40, gradient: { queueAllowance: 0 }, ${RAW} }`);
  d.windows(5, { inflight: 19 });
  assert.equal(d.limit.current, 40);
  d.window({ inflight: 19, rttMs: 20 }); // gradient 0.5: 0.8 * 40 + 0.2 * 20 = 36
  assert.equal(d.limit.current, 36);
});

test('gradient: clamps to [min, max]', () => {
  const d = probed(`{ algorithm: gradient, initial: 10, min: 4, max: 12, ${RAW} }`);
  d.windows(20);
  assert.equal(d.limit.current, 12);
  d.windows(40, { rttMs: 1000 });
  assert.equal(d.limit.current, 4);
});

test('gradient: a faster window lowers the baseline at once; a slower one never raises it between probes', () => {
  const d = probed(`{ algorithm: gradient, initial: 20, ${RAW} }`, 40);
  d.window({ rttMs: 30 });
  assert.ok(Math.abs(d.limit.rtt!.baselineMs! - 30) < 0.3);
  d.windows(5, { rttMs: 300 });
  assert.ok(Math.abs(d.limit.rtt!.baselineMs! - 30) < 0.3);
  assert.ok(Math.abs(d.limit.rtt!.recentMs! - 300) < 3);
});

test('gradient: every longWindow windows a probe at half the limit re-measures the baseline, so a permanently slower upstream is followed', () => {
  const d = probed(`{ algorithm: gradient, initial: 40, min: 2, gradient: { longWindow: 60 }, ${RAW} }`);
  // The upstream becomes 3x slower for good: the limit falls to where gradient 0.5 + sqrt(L) balance (4).
  d.windows(58, { rttMs: 30 });
  const fallen = d.limit.current;
  assert.equal(fallen, 4);
  // The 60th window since the probe starts the next one: half the limit for one window.
  d.window({ rttMs: 30 });
  assert.equal(d.limit.current, 4);
  d.window({ rttMs: 30 });
  assert.equal(d.limit.current, 2, 'probing');
  d.window({ rttMs: 30 });
  assert.equal(d.limit.current, 4, 'restored after the probe');
  assert.ok(Math.abs(d.limit.rtt!.baselineMs! - 30) < 0.3, 'baseline re-measured');
  // With the new baseline, the limit grows back.
  d.windows(30, { rttMs: 30 });
  assert.ok(d.limit.current >= 20, `limit ${d.limit.current} recovered from ${fallen}`);
});

test('gradient: a probe counts only requests dispatched within the probe limit', () => {
  const d = drive(`{ algorithm: gradient, initial: 20, ${RAW} }`);
  // Requests dispatched before the probe (20 in flight) finish slowly: ignored.
  d.windows(3, { inflight: 20, rttMs: 80 });
  assert.equal(d.limit.current, 10, 'still probing');
  d.window({ inflight: 10, rttMs: 40 });
  assert.equal(d.limit.current, 20);
  assert.ok(Math.abs(d.limit.rtt!.baselineMs! - 40) < 0.4);
});

// ---------------------------------------------------------------- vegas

test('vegas: grows by max(1, log10 L) while the estimated queue is below alpha', () => {
  const d = probed(`{ algorithm: vegas, initial: 100, ${RAW} }`);
  d.window({ rttMs: 10.2 }); // queue = 100 * (1 - 10 / 10.2) ≈ 2 < 3: +2
  assert.equal(d.limit.current, 102);
});

test('vegas: holds with the queue between alpha and beta', () => {
  const d = probed(`{ algorithm: vegas, initial: 100, ${RAW} }`);
  d.windows(3, { rttMs: 10.5 }); // queue ≈ 4.8
  assert.equal(d.limit.current, 100);
});

test('vegas: shrinks halfway to beta when the queue is far above it, and by a step when slightly above', () => {
  const d = probed(`{ algorithm: vegas, initial: 40, ${RAW} }`);
  d.window({ rttMs: 20 }); // queue = 20, beta 6: 40 - (20 - 6) / 2 = 33
  assert.equal(d.limit.current, 33);
  d.window({ rttMs: 10 * (33 / 26) }); // queue = 7: 33 - max(log10 33, 0.5) = 31.48
  assert.equal(d.limit.current, 31);
});

test('vegas: a window with a drop takes 10% off', () => {
  const d = probed(`{ algorithm: vegas, initial: 50, ${RAW} }`);
  d.window({ drops: 3 });
  assert.equal(d.limit.current, 45);
});

test('vegas: the queue is estimated from the measured in-flight count, so an app-limited route does not shrink on noise', () => {
  const d = probed(`{ algorithm: vegas, initial: 100, ${RAW} }`);
  d.windows(3, { inflight: 20, rttMs: 11 }); // queue = 20 * (1 - 10/11) ≈ 1.8 (with L it would be 9)
  assert.equal(d.limit.current, 100);
});

test('vegas: holds while app-limited even with no queue at all', () => {
  const d = probed(`{ algorithm: vegas, initial: 100, ${RAW} }`);
  d.windows(5, { inflight: 30 });
  assert.equal(d.limit.current, 100);
});

test('vegas: clamps to [min, max]', () => {
  const d = probed(`{ algorithm: vegas, initial: 10, min: 8, max: 14, ${RAW} }`);
  d.windows(10);
  assert.equal(d.limit.current, 14);
  d.windows(20, { rttMs: 500 });
  assert.equal(d.limit.current, 8);
});

// ---------------------------------------------------------------- hysteresis (layer 1)

test('hysteresis: decreases apply at once, increases after K consecutive healthy windows', () => {
  const h = new Hysteresis({ increaseAfterWindows: 3, deadBand: 0 });
  assert.equal(h.next(20, 21, false), 20);
  assert.equal(h.next(20, 22, false), 20);
  assert.equal(h.next(20, 23.5, false), 23);
  // The count starts again after an increase.
  assert.equal(h.next(23, 25, false), 23);
  assert.equal(h.next(23, 18.7, false), 18);
});

test('hysteresis: a drop or a lower estimate breaks the run of healthy windows', () => {
  const h = new Hysteresis({ increaseAfterWindows: 2, deadBand: 0 });
  assert.equal(h.next(20, 22, false), 20);
  assert.equal(h.next(20, 22, true), 20);
  assert.equal(h.next(20, 22, false), 20);
  assert.equal(h.next(20, 22, false), 22);
});

test('hysteresis: changes inside the dead band are not applied, in either direction', () => {
  const h = new Hysteresis({ increaseAfterWindows: 1, deadBand: 0.1 });
  assert.equal(h.next(100, 109, false), 100);
  assert.equal(h.next(100, 91, false), 100);
  assert.equal(h.next(100, 110, false), 110);
  assert.equal(h.next(110, 98, false), 98);
});

test('hysteresis: small steps still add up through the estimate (aimd +1 at 100 with a 5% dead band)', () => {
  const d = drive('{ algorithm: aimd, initial: 100, window: { minSamples: 10, windowMs: 100 }, hysteresis: { increaseAfterWindows: 2, deadBand: 0.05 } }');
  const seen: number[] = [];
  for (let i = 0; i < 12; i++) {
    d.window();
    seen.push(d.limit.current);
  }
  // 110 would be less than 5% above 105: the next step published is 111.
  assert.deepEqual(seen, [100, 100, 100, 100, 105, 105, 105, 105, 105, 105, 111, 111]);
});

test('hysteresis: a latency signal flickering around the equilibrium moves the estimate but not the limit', () => {
  // queueAllowance 2.5: RTT 10 (the baseline) grows the estimate by 0.5, RTT 11.2 shrinks it by about 0.7.
  const flicker = (hysteresis: string) => {
    const d = probed(`{ algorithm: gradient, initial: 50, gradient: { queueAllowance: 2.5 }, window: { minSamples: 10, windowMs: 100 }${hysteresis} }`);
    const seen = new Set<number>();
    for (let i = 0; i < 40; i++) {
      d.window({ rttMs: i % 2 === 0 ? 10 : 11.2 });
      seen.add(d.limit.current);
    }
    return [...seen].sort();
  };
  assert.deepEqual(flicker(''), [50]);
  const raw = flicker(', hysteresis: { increaseAfterWindows: 1, deadBand: 0 }');
  assert.ok(raw.length >= 2, `without hysteresis the limit moves: ${raw.join(', ')}`);
});

// ---------------------------------------------------------------- windowing

test('a window closes on the sample that gives it both minSamples and windowMs', () => {
  const w = new SampleWindow({ minSamples: 3, windowMs: 100, percentile: 0.5 });
  const at = (end: number, rttMs = 10, dropped = false, inflight = 1) =>
    w.add({ startedAt: end - rttMs, rttMs, inflight, dropped });
  assert.equal(at(0), null);
  assert.equal(at(150), null); // 150 ms but only 2 samples
  const closed = at(160, 30, false, 7);
  assert.ok(closed);
  const { rttError, rttSpread, ...rest } = closed;
  assert.deepEqual({ ...rest, rttMs: Math.round(closed.rttMs) }, { startMs: 0, endMs: 160, samples: 3, rttMs: 10, maxInflight: 7, meanInflight: 3, drops: 0 });
  assert.ok(rttSpread > 1 && rttError > 0, `spread ${rttSpread}, error ${rttError}`);
  // Many samples, little time: still open until windowMs has passed.
  for (let t = 200; t < 299; t += 1) assert.equal(at(t), null);
  assert.ok(at(300));
});

test("a window's RTT is the percentile of its successful samples; drops are counted but do not count as latency", () => {
  const w = new SampleWindow({ minSamples: 5, windowMs: 1, percentile: 0.5 });
  w.add({ startedAt: 0, rttMs: 1, inflight: 1, dropped: true });
  w.add({ startedAt: 0, rttMs: 1, inflight: 1, dropped: true });
  w.add({ startedAt: 0, rttMs: 20, inflight: 1, dropped: false });
  w.add({ startedAt: 0, rttMs: 30, inflight: 1, dropped: false });
  const closed = w.add({ startedAt: 0, rttMs: 40, inflight: 1, dropped: false });
  assert.ok(closed);
  assert.equal(closed.drops, 2);
  assert.ok(Math.abs(closed.rttMs - 30) < 0.3, `p50 ${closed.rttMs}`);
});

test('histogram percentiles are within 1% of the exact value, and 0 for zero waits', () => {
  const h = new LogHistogram();
  for (let i = 1; i <= 1000; i++) h.record(i);
  for (const [p, exact] of [[0.5, 500], [0.9, 900], [0.99, 990], [1, 1000]] as const) {
    const got = h.percentile(p);
    assert.ok(Math.abs(got - exact) / exact < 0.01, `p${p * 100}: ${got}`);
  }
  h.reset();
  assert.ok(Number.isNaN(h.percentile(0.5)));
  for (let i = 0; i < 9; i++) h.record(0);
  h.record(250);
  assert.equal(h.percentile(0.9), 0);
  assert.ok(Math.abs(h.percentile(0.95) - 250) < 2.5);
});

// ---------------------------------------------------------------- in the limiter

test('in the limiter: when the start-up probe ends the limit doubles back and queued requests start at once', () => {
  const clock = new ManualClock(0);
  const limiter = new Limiter({
    lanes: [{ name: 'interactive', maxShare: 1, minShare: 0, queue: { maxLength: 100, maxWaitMs: 60_000, fair: true } }],
    limit: createLimit(limitConfig('{ algorithm: gradient, initial: 8, window: { minSamples: 10, windowMs: 100 } }')),
    clientMaxShare: 1,
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0.2 },
    clock,
    random: seededRandom(1),
  });
  const running: Permit[] = [];
  const ask = () => {
    const r = limiter.acquire(0, 'c', (later) => {
      if (later.kind === 'permit') running.push(later);
    });
    if (r.kind === 'permit') running.push(r);
  };
  assert.equal(limiter.limit, 4, 'probing at half of initial');
  for (let i = 0; i < 40; i++) ask();
  assert.equal(running.length, 4);
  // Rounds of 25 ms: the four running requests answer, four queued ones start.
  // The fifth round's first answer gives the probe window 100 ms and >= 10 samples.
  for (let round = 1; round <= 5; round++) {
    clock.advance(25);
    for (const p of running.splice(0, 4)) p.settle('success');
    if (round < 5) assert.equal(limiter.limit, 4, `still probing after round ${round}`);
  }
  assert.equal(limiter.limit, 8);
  const s = limiter.snapshot();
  assert.equal(s.inflight, 8, 'the queue drained into the new slots at once');
  assert.equal(s.queued, 40 - 20 - 8);
  assert.ok(s.rtt.baselineMs !== null && Math.abs(s.rtt.baselineMs - 25) < 0.2);
});

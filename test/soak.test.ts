import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trend, verdict, type Sample } from '../src/soak/report.js';

function series(values: number[]): Sample[] {
  return values.map((v, t) => ({ t, rss: v, heapUsed: v, external: 0, fds: v, connections: 0, inflight: 0, queued: 0, offered: 0, ok: 0, refused: 0 }));
}

test('soak trend: warm-up growth is ignored, a sawtooth is flat, a steady climb is not', () => {
  // 20 warm-up seconds climbing fast, then flat with a GC-like sawtooth of +-10%.
  const warm = Array.from({ length: 20 }, (_, i) => 50 + i * 5);
  const saw = Array.from({ length: 80 }, (_, i) => 150 * (i % 4 === 0 ? 1.1 : i % 4 === 2 ? 0.9 : 1));
  const flat = trend(series([...warm, ...saw]), (s) => s.rss);
  assert.ok(Math.abs(flat.growth) < 0.02, `growth ${flat.growth}`);
  assert.equal(flat.flat, true);
  assert.equal(flat.max, 165);

  // +0.1% per second over 80 s after warm-up: about 8%, a leak.
  const leak = trend(series(Array.from({ length: 100 }, (_, i) => 100 * (1 + 0.001 * i))), (s) => s.rss);
  assert.ok(leak.growth > 0.05 && leak.growth < 0.1, `growth ${leak.growth}`);
  assert.equal(leak.flat, false);
});

test('soak verdict: descriptors that follow open connections are load; others growing are a leak', () => {
  const base = series(Array.from({ length: 50 }, () => 100));
  // The load generator opens more connections over time: all fds grow, but each one is a connection.
  const load = verdict(base.map((s, i) => ({ ...s, fds: 100 + i * 2, connections: 80 + i * 2 })));
  assert.equal(load.fds.flat, false);
  assert.equal(load.otherFds.flat, true);
  assert.equal(load.flat, true);
  // Descriptors that are not connections pile up: a leak.
  const leak = verdict(base.map((s, i) => ({ ...s, fds: 100 + i * 2, connections: 80 })));
  assert.equal(leak.otherFds.flat, false);
  assert.equal(leak.flat, false);
  // Memory growing alone is enough to fail.
  assert.equal(verdict(base.map((s, i) => ({ ...s, rss: 100 + i, fds: 20 }))).flat, false);
});

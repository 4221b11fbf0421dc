import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trend, verdict, type Sample } from '../src/soak/report.js';

function series(values: number[]): Sample[] {
  return values.map((v, t) => ({ t, rss: v, heapUsed: v, fds: v, inflight: 0, queued: 0, offered: 0, ok: 0, refused: 0 }));
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

test('soak verdict: flat only when RSS, heap and fds all are', () => {
  const samples = series(Array.from({ length: 50 }, () => 100)).map((s, i) => ({ ...s, fds: 100 + i * 2 }));
  const v = verdict(samples);
  assert.equal(v.rss.flat, true);
  assert.equal(v.heapUsed.flat, true);
  assert.equal(v.fds.flat, false);
  assert.equal(v.flat, false);
});

/** The modelled upstream's service-time distributions (src/demo/service-time.ts), seeded. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom } from '../src/core/clock.js';
import { drawServiceTime, meanServiceTime, serviceTimeP99, type ServiceModel } from '../src/demo/service-time.js';

function draws(model: ServiceModel, n = 20_000): number[] {
  const random = seededRandom(7);
  return Array.from({ length: n }, () => drawServiceTime(model, 40, random)).sort((a, b) => a - b);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const cov = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length) / m;
};
const p99 = (xs: number[]) => xs[Math.ceil(0.99 * xs.length) - 1]!;
const close = (actual: number, expected: number, tolerance: number, what: string) =>
  assert.ok(Math.abs(actual / expected - 1) <= tolerance, `${what} ${actual.toFixed(2)}, expected ${expected.toFixed(2)}`);

test('jitter: ±10% around the service time', () => {
  const xs = draws('jitter');
  assert.ok(xs[0]! >= 36 && xs[xs.length - 1]! <= 44);
  close(mean(xs), meanServiceTime('jitter', 40), 0.01, 'mean');
  close(p99(xs), serviceTimeP99('jitter', 40), 0.01, 'p99');
});

test('lognormal: mean the service time, coefficient of variation 0.5', () => {
  const xs = draws('lognormal');
  close(mean(xs), meanServiceTime('lognormal', 40), 0.02, 'mean');
  close(cov(xs), 0.5, 0.05, 'CoV');
  close(p99(xs), serviceTimeP99('lognormal', 40), 0.05, 'p99');
});

test('bimodal: 90% at the service time, 10% ten times slower', () => {
  const xs = draws('bimodal');
  const slow = xs.filter((x) => x > 200).length / xs.length;
  close(slow, 0.1, 0.05, 'slow share');
  close(mean(xs), meanServiceTime('bimodal', 40), 0.03, 'mean');
  close(p99(xs), serviceTimeP99('bimodal', 40), 0.02, 'p99');
});

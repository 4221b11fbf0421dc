/**
 * Service-time distributions of the modelled upstream: the real demo
 * upstream (./upstream.ts) and the deterministic simulation draw from the
 * same functions, so a scenario means the same thing in both.
 *
 * `baseMs` is the scenario's "service time":
 * - `jitter`:    baseMs · U(0.9, 1.1)  — a steady service (the demo's default);
 * - `lognormal`: lognormal with mean baseMs and coefficient of variation 0.5
 *                (σ² = ln(1 + 0.5²), μ = ln(baseMs) − σ²/2), drawn by Box-Muller;
 * - `bimodal`:   90% baseMs · U(0.9, 1.1), 10% ten times that (a cache miss,
 *                a slow dependency): mean 1.9 · baseMs.
 * Randomness is passed in (the simulation seeds it; the demo uses Math.random).
 */
export const SERVICE_MODELS = ['jitter', 'lognormal', 'bimodal'] as const;
export type ServiceModel = (typeof SERVICE_MODELS)[number];

const LOGNORMAL_COV = 0.5;
const SIGMA = Math.sqrt(Math.log(1 + LOGNORMAL_COV ** 2));
const SLOW_SHARE = 0.1;
const SLOW_FACTOR = 10;
/** The standard normal's 99th percentile. */
const Z99 = 2.3263;

export function isServiceModel(s: unknown): s is ServiceModel {
  return typeof s === 'string' && (SERVICE_MODELS as readonly string[]).includes(s);
}

/** One service time in ms. `random` returns [0, 1). */
export function drawServiceTime(model: ServiceModel, baseMs: number, random: () => number): number {
  switch (model) {
    case 'jitter':
      return baseMs * (0.9 + 0.2 * random());
    case 'lognormal': {
      const u = 1 - random(); // (0, 1]: log(u) is finite
      const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
      return baseMs * Math.exp(SIGMA * z - (SIGMA * SIGMA) / 2);
    }
    case 'bimodal': {
      const slow = random() < SLOW_SHARE ? SLOW_FACTOR : 1;
      return slow * baseMs * (0.9 + 0.2 * random());
    }
  }
}

/** The mean service time: what capacity is made of (workers / mean). */
export function meanServiceTime(model: ServiceModel, baseMs: number): number {
  return model === 'bimodal' ? baseMs * (1 - SLOW_SHARE + SLOW_SHARE * SLOW_FACTOR) : baseMs;
}

/** The 99th percentile of the service time: the p99 a request has with no queueing at all. */
export function serviceTimeP99(model: ServiceModel, baseMs: number): number {
  switch (model) {
    case 'jitter':
      return baseMs * 1.098;
    case 'lognormal':
      return baseMs * Math.exp(SIGMA * Z99 - (SIGMA * SIGMA) / 2);
    case 'bimodal':
      // The top 1% of all requests is the top tenth of the slow ones: 10 · U(0.9, 1.1) at 0.9.
      return SLOW_FACTOR * baseMs * 1.08;
  }
}

/**
 * Deterministic virtual-time simulation: the real Limiter with the real
 * adaptive limits, in front of a modelled upstream whose capacity changes.
 *
 * The upstream: C workers, service time S (±10%, seeded), a FIFO in front of
 * the workers holding at most C/4 requests (beyond that it answers 503 at
 * once, as a server with a bounded accept queue does). Latency therefore
 * grows with queueing, up to 1.25·S, and then the upstream drops.
 *
 * Load: open-loop Poisson arrivals at 3x the initial capacity, one lane.
 * Timeline: C = 40 for 10 s, C = 20 for 10 s, C = 40 for 10 s (S = 50 ms).
 *
 * The modelled optimum is C + √C: enough in flight to keep every worker busy
 * plus a square-root safety queue (square-root staffing) that absorbs the
 * service-time jitter: 46.3 at C = 40, 24.5 at C = 20.
 *
 * Checked for every adaptive algorithm, with its default parameters:
 * - after each capacity change the limit settles: it is within ±20% of the
 *   optimum from some point no later than 5 s after the change until the end
 *   of the phase;
 * - in steady state (the last 5 s of each phase) the limit's coefficient of
 *   variation is at most 10% and goodput (successful responses) is at least
 *   90% of capacity.
 * The table of results is printed as test diagnostics.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { parseConfig } from '../src/config/load.js';
import type { LimitConfig } from '../src/config/types.js';
import { ManualClock, seededRandom, type Random } from '../src/core/clock.js';
import { createLimit } from '../src/core/limit/create.js';
import { Limiter, type Permit } from '../src/core/limiter/limiter.js';

const SERVICE_MS = 50;
const PHASES = [
  { workers: 40, ms: 10_000 },
  { workers: 20, ms: 10_000 },
  { workers: 40, ms: 10_000 },
] as const;
const ARRIVALS_PER_SECOND = (3 * PHASES[0].workers * 1000) / SERVICE_MS;
const SAMPLE_EVERY_MS = 10;
const SETTLE_WITHIN_MS = 5000;
const STEADY_MS = 5000;

const optimum = (workers: number) => workers + Math.sqrt(workers);

/** The route's limit config as a user gets it: the documented defaults plus `limit` (YAML flow mapping). */
function limitConfig(limit: string): LimitConfig {
  const cfg = parseConfig(`defaults: { limit: ${limit} }\nroutes: [{ name: r, match: { pathPrefix: / }, upstream: http://127.0.0.1:1 }]\n`, 'sim.yaml');
  return cfg.routes[0]!.limit;
}

/** C workers behind a bounded FIFO; settles each permit when its response would arrive. */
class ModelUpstream {
  workers: number = PHASES[0].workers;
  private busy = 0;
  private readonly queue: { permit: Permit; sentAt: number }[] = [];
  private head = 0;
  /** Completion time and RTT of every successful response. */
  readonly successes: { at: number; rttMs: number }[] = [];
  drops = 0;

  constructor(
    private readonly clock: ManualClock,
    private readonly random: Random,
    /** The FIFO holds at most workers * queueShare requests. */
    private readonly queueShare: number,
  ) {}

  send(permit: Permit): void {
    const sentAt = this.clock.now();
    if (this.busy < this.workers && this.head === this.queue.length) {
      this.serve(permit, sentAt);
    } else if (this.queue.length - this.head < Math.floor(this.workers * this.queueShare)) {
      this.queue.push({ permit, sentAt });
    } else {
      this.drops++;
      this.clock.setTimer(() => permit.settle('dropped', this.clock.now() - sentAt), 1);
    }
  }

  private serve(permit: Permit, sentAt: number): void {
    this.busy++;
    this.clock.setTimer(() => {
      this.busy--;
      this.next();
      const rttMs = this.clock.now() - sentAt;
      this.successes.push({ at: this.clock.now(), rttMs });
      permit.settle('success', rttMs);
    }, SERVICE_MS * (0.9 + 0.2 * this.random()));
  }

  /** Starts queued work on free workers (also after the worker count grows). */
  next(): void {
    while (this.busy < this.workers && this.head < this.queue.length) {
      const job = this.queue[this.head++]!;
      this.serve(job.permit, job.sentAt);
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }
}

interface PhaseResult {
  readonly workers: number;
  readonly optimum: number;
  /** ms after the phase began until the limit stayed within ±20% of the optimum; Infinity if it never did. */
  readonly settleMs: number;
  readonly meanLimit: number;
  readonly cov: number;
  /** Successful responses per second in steady state, as a share of capacity. */
  readonly goodput: number;
  /** Mean RTT of successful responses in steady state, over the service time. */
  readonly latency: number;
}

interface RunResult {
  readonly phases: PhaseResult[];
  /** Upstream 503s over the run (each one a failed request for some client). */
  readonly upstream503: number;
}

function simulate(limit: LimitConfig, upstreamQueueShare = 0.25, seed = 1): RunResult {
  const clock = new ManualClock(0);
  const random = seededRandom(seed);
  const limiter = new Limiter({
    lanes: [{ name: 'interactive', maxShare: 1, minShare: 0, queue: { maxLength: 50, maxWaitMs: 500, fair: true } }],
    limit: createLimit(limit),
    clientMaxShare: 1,
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0.2 },
    clock,
    random,
    overload: { enterMs: 100, exitMs: 20, cooldownMs: 5000, windowMs: limit.window.windowMs },
  });
  const upstream = new ModelUpstream(clock, random, upstreamQueueShare);
  const send = (r: Permit | { kind: 'refused' }) => {
    if (r.kind === 'permit') upstream.send(r);
  };
  const end = PHASES.reduce((t, p) => t + p.ms, 0);
  const arrive = () => {
    const r = limiter.acquire(0, 'sim', send);
    if (r.kind === 'permit') upstream.send(r);
    const gap = (-Math.log(1 - random()) * 1000) / ARRIVALS_PER_SECOND;
    if (clock.now() + gap < end) clock.setTimer(arrive, gap);
  };
  clock.setTimer(arrive, 0);

  const limits: number[] = [];
  const sample = () => {
    limits.push(limiter.limit);
    if (clock.now() + SAMPLE_EVERY_MS < end) clock.setTimer(sample, SAMPLE_EVERY_MS);
  };
  clock.setTimer(sample, 0);

  let t0 = 0;
  for (const p of PHASES) {
    clock.setTimer(() => {
      upstream.workers = p.workers;
      upstream.next();
    }, t0 - clock.now());
    clock.advance(t0 + p.ms - clock.now());
    t0 += p.ms;
  }
  clock.advance(2000); // let the last requests finish

  const results: PhaseResult[] = [];
  t0 = 0;
  for (const p of PHASES) {
    const opt = optimum(p.workers);
    const inPhase = limits.slice(t0 / SAMPLE_EVERY_MS, (t0 + p.ms) / SAMPLE_EVERY_MS);
    let lastOut = -1;
    inPhase.forEach((l, i) => {
      if (Math.abs(l - opt) > 0.2 * opt) lastOut = i;
    });
    const settleMs = lastOut === inPhase.length - 1 ? Infinity : (lastOut + 1) * SAMPLE_EVERY_MS;
    const steady = inPhase.slice((p.ms - STEADY_MS) / SAMPLE_EVERY_MS);
    const mean = steady.reduce((a, b) => a + b, 0) / steady.length;
    const sd = Math.sqrt(steady.reduce((a, b) => a + (b - mean) ** 2, 0) / steady.length);
    const from = t0 + p.ms - STEADY_MS;
    const ok = upstream.successes.filter((x) => x.at >= from && x.at < t0 + p.ms);
    const capacity = ((p.workers * 1000) / SERVICE_MS) * (STEADY_MS / 1000);
    const latency = ok.reduce((a, x) => a + x.rttMs, 0) / ok.length / SERVICE_MS;
    results.push({ workers: p.workers, optimum: opt, settleMs, meanLimit: mean, cov: sd / mean, goodput: ok.length / capacity, latency });
    t0 += p.ms;
  }
  const s = limiter.snapshot();
  assert.equal(s.inflight, 0, 'every permit settled');
  assert.equal(s.queued, 0, 'the queue drained');
  return { phases: results, upstream503: upstream.drops };
}

const fmtMs = (ms: number) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(2)} s` : 'never');
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function report(t: TestContext, name: string, run: RunResult): void {
  const r = run.phases;
  const cells = [
    name.padEnd(30),
    fmtMs(r[1]!.settleMs).padStart(7),
    fmtMs(r[2]!.settleMs).padStart(7),
    pct(Math.max(...r.map((p) => p.cov))).padStart(5),
    pct(Math.min(...r.map((p) => p.goodput))).padStart(7),
    `${Math.max(...r.map((p) => p.latency)).toFixed(2)}x`.padStart(6),
    String(run.upstream503).padStart(5),
    r.map((p) => `${p.meanLimit.toFixed(1)}/${p.optimum.toFixed(1)}`).join(' ').padStart(29),
    fmtMs(r[0]!.settleMs).padStart(7),
  ];
  t.diagnostic(cells.join(' | '));
}

const ALGORITHMS = ['aimd', 'gradient', 'vegas'] as const;

test('simulation: every adaptive algorithm settles after capacity halves and doubles, with low oscillation and full goodput', (t) => {
  t.diagnostic('settle = time until the limit stays within ±20% of C + sqrt(C) after capacity halved / doubled;');
  t.diagnostic('CoV (worst phase) and goodput (worst phase) over the last 5 s of each phase; RTT = mean RTT / service time (worst phase);');
  t.diagnostic('503 = upstream 503s over the run; limit = steady mean / optimum per phase (C = 40, 20, 40); start = settle from initial 20.');
  t.diagnostic(
    'algorithm, defaults               | halved | doubled |  CoV  | goodput |  RTT  |  503  |   limit: mean/optimum x3     | start',
  );
  const problems: string[] = [];
  for (const algorithm of ALGORITHMS) {
    const run = simulate(limitConfig(`{ algorithm: ${algorithm}, initial: 20 }`));
    report(t, algorithm, run);
    for (const [i, p] of run.phases.entries()) {
      const what = `${algorithm}, phase ${i + 1} (C = ${p.workers})`;
      if (i > 0 && !(p.settleMs <= SETTLE_WITHIN_MS)) problems.push(`${what}: settled after ${fmtMs(p.settleMs)}`);
      if (!(p.cov <= 0.1)) problems.push(`${what}: CoV ${pct(p.cov)}`);
      if (!(p.goodput >= 0.9)) problems.push(`${what}: goodput ${pct(p.goodput)}`);
    }
  }
  // For comparison only (not checked): the previous defaults, and an upstream that never drops.
  t.diagnostic('for comparison, not checked:');
  report(t, 'gradient, tolerance 1.5', simulate(limitConfig('{ algorithm: gradient, initial: 20, gradient: { tolerance: 1.5 } }')));
  report(t, 'gradient, windowMs 1000', simulate(limitConfig('{ algorithm: gradient, initial: 20, window: { windowMs: 1000 } }')));
  for (const algorithm of ALGORITHMS) {
    report(t, `${algorithm}, upstream queue 2C`, simulate(limitConfig(`{ algorithm: ${algorithm}, initial: 20 }`), 2));
  }
  assert.deepEqual(problems, []);
});

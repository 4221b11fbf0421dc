/**
 * Deterministic virtual-time simulation of one scenario of bench/scenarios.ts:
 * the real Limiter with the real limits (built from the scenario's YAML
 * policy, as a user's config would be), one or two instances in front of
 * one modelled upstream, on a ManualClock with a seeded random. No sleeping.
 *
 * The upstream: `workers` workers behind an unbounded FIFO (never drops);
 * each request's service time is drawn when its service starts, from the
 * phase's distribution (src/demo/service-time.ts, shared with the demo
 * upstream). A shrinking worker count lets running requests finish.
 * Clients: open-loop Poisson arrivals per stream; a client waits for its
 * answer however long it takes (a refusal is an answer).
 *
 * The run yields per-request records, upstream completions and a trace of
 * every instance's limit; bench/judge.ts turns them into the scenario table.
 */
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { FixedLimit } from '../../src/core/limit/limit.js';
import { createLimit } from '../../src/core/limit/create.js';
import { ManualClock, seededRandom, type Random } from '../../src/core/clock.js';
import { Limiter, type LimiterPolicy, type Permit } from '../../src/core/limiter/limiter.js';
import type { Refusal } from '../../src/core/limiter/refusal.js';
import { drawServiceTime } from '../../src/demo/service-time.js';
import {
  activeInstances,
  adaptiveLimit,
  durationMs,
  phaseAt,
  phaseSettings,
  phaseStarts,
  scenarioPolicy,
  toldTheTruth,
  type LaneName,
  type LimitChoice,
  type Scenario,
  type UpstreamSettings,
} from '../../bench/scenarios.js';
import type { RequestRecord, RunData } from '../../bench/judge.js';

const TRACE_EVERY_MS = 50;

function configOf(limit: LimitChoice): Config {
  return parseConfig(scenarioPolicy('http://127.0.0.1:1', limit), 'scenario.yaml');
}

function policyOf(cfg: Config): LimiterPolicy {
  const route = cfg.routes[0]!;
  return {
    lanes: route.lanes,
    clientMaxShare: cfg.clients.maxShare,
    retryAfter: cfg.retryAfter,
    overload: { ...route.overload, windowMs: route.limit.window.windowMs },
  };
}

interface Job {
  readonly permit: Permit;
  readonly sentAt: number;
  readonly done: (at: number) => void;
}

/** Workers behind an unbounded FIFO, shared by every instance. */
class ModelUpstream {
  private busy = 0;
  private queue: Job[] = [];
  private head = 0;

  constructor(
    private readonly clock: ManualClock,
    private readonly random: Random,
    public settings: UpstreamSettings,
  ) {}

  send(job: Job): void {
    if (this.busy < this.settings.workers && this.head === this.queue.length) this.serve(job);
    else this.queue.push(job);
  }

  /** Starts queued work on free workers (also after the worker count grows). */
  next(): void {
    while (this.busy < this.settings.workers && this.head < this.queue.length) this.serve(this.queue[this.head++]!);
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  private serve(job: Job): void {
    this.busy++;
    const ms = drawServiceTime(this.settings.model, this.settings.serviceMs, this.random);
    this.clock.setTimer(() => {
      this.busy--;
      const now = this.clock.now();
      job.permit.settle('success', now - job.sentAt);
      job.done(now);
      this.next();
    }, ms);
  }
}

export type Controller = { kind: 'adaptive'; algorithm: string | null } | { kind: 'truth' };

/** Runs one scenario with one controller; deterministic for a given seed. */
export function simulate(s: Scenario, controller: Controller, seed = 1): RunData {
  const clock = new ManualClock(0);
  const random = seededRandom(seed);
  const upstream = new ModelUpstream(clock, random, s.upstream);
  const limitAt = (t: number): LimitChoice =>
    controller.kind === 'truth' ? toldTheTruth(s, t) : adaptiveLimit(s, controller.algorithm);
  const limiters: Limiter[] = [];
  for (let i = 0; i < s.instances; i++) {
    const cfg = configOf(limitAt(0));
    const limit = controller.kind === 'truth' ? new FixedLimit(cfg.routes[0]!.limit.initial) : createLimit(cfg.routes[0]!.limit);
    limiters.push(new Limiter({ ...policyOf(cfg), limit, clock, random }));
  }
  const laneIndex: Record<LaneName, number> = { interactive: 0, batch: 1 };
  const records: RequestRecord[] = [];
  const completions: { at: number; instance: number }[] = [];
  const end = durationMs(s);

  for (const stream of s.streams) {
    const limiter = limiters[stream.instance]!;
    const arrive = (): void => {
      const at = clock.now();
      const rec: RequestRecord = { instance: stream.instance, lane: stream.lane, at, ms: -1, ok: false };
      records.push(rec);
      const started = (p: Permit): void => {
        upstream.send({
          permit: p,
          sentAt: clock.now(),
          done: (t) => {
            rec.ms = t - at;
            rec.ok = true;
            completions.push({ at: t, instance: stream.instance });
          },
        });
      };
      const answered = (r: Permit | Refusal): void => {
        if (r.kind === 'permit') started(r);
        else rec.ms = clock.now() - at;
      };
      const r = limiter.acquire(laneIndex[stream.lane], 'sim', answered);
      if (r.kind === 'permit') started(r);
      else if (r.kind === 'refused') rec.ms = 0;
      const gap = (-Math.log(1 - random()) * 1000) / stream.rate;
      if (clock.now() + gap < stream.toMs) clock.setTimer(arrive, gap);
    };
    clock.setTimer(arrive, stream.fromMs);
  }

  // Changes: the upstream at each phase start; the comparator's limit whenever the optimum may move.
  const settings = phaseSettings(s);
  const changes = new Set<number>([...phaseStarts(s), ...s.streams.flatMap((x) => [x.fromMs, x.toMs])]);
  for (const at of [...changes].filter((t) => t < end)) {
    clock.setTimer(() => {
      upstream.settings = settings[phaseAt(s, at)]!;
      upstream.next();
      if (controller.kind !== 'truth') return;
      limiters.forEach((l) => {
        const cfg = configOf(limitAt(at));
        l.reconfigure(policyOf(cfg), new FixedLimit(cfg.routes[0]!.limit.initial));
      });
    }, at);
  }

  const trace: RunData['trace'] = [];
  const sample = (): void => {
    const t = clock.now();
    trace.push({ t, limits: limiters.map((l) => l.limit), active: activeInstances(s, t) });
    if (t + TRACE_EVERY_MS < end) clock.setTimer(sample, TRACE_EVERY_MS);
  };
  clock.setTimer(sample, 0);

  clock.advance(end);
  clock.advance(60_000); // every request still in the system gets its answer
  for (const l of limiters) {
    const snap = l.snapshot();
    if (snap.inflight !== 0 || snap.queued !== 0) throw new Error(`instance left ${snap.inflight} in flight, ${snap.queued} queued`);
  }
  return { records, completions, trace };
}

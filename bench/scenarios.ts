/**
 * The adaptive-control scenarios of issue 10, as data. The deterministic
 * simulation (test/simulation.test.ts through test/helpers/sim.ts) and
 * `npm run bench` (bench/control.ts, real processes) both run exactly these
 * definitions, and ./judge.ts grades both against the same goal.
 *
 * The upstream in every scenario: `workers` workers behind an unbounded FIFO
 * (it never drops, like most real servers), service times drawn from
 * src/demo/service-time.ts. A phase may change the workers, the service time
 * or its distribution when it begins. Load: open-loop Poisson streams per
 * instance and lane, each active from `fromMs` to `toMs`. Interactive is
 * offered at about half of the smallest capacity a scenario goes through
 * (at 75%, the comparator's own interactive p99 is 3x the service time:
 * requests queue for slots among themselves, whatever the controller).
 *
 * Every scenario runs twice: with the controller under test, and with the
 * comparator "told the truth": the same lanes, `algorithm: fixed`, the limit
 * set to the upstream's true worker count (shared evenly between the
 * instances that are running), reconfigured at every change.
 */
import { meanServiceTime, serviceTimeP99, type ServiceModel } from '../src/demo/service-time.js';

export interface UpstreamSettings {
  readonly workers: number;
  readonly serviceMs: number;
  readonly model: ServiceModel;
}

export interface Phase {
  readonly name: string;
  readonly ms: number;
  /** Applied to the upstream when the phase begins. */
  readonly set?: Partial<UpstreamSettings>;
}

export type LaneName = 'interactive' | 'batch';

export interface Stream {
  readonly instance: number;
  readonly lane: LaneName;
  /** Arrivals per second (Poisson). */
  readonly rate: number;
  readonly fromMs: number;
  readonly toMs: number;
}

export interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly upstream: UpstreamSettings;
  readonly phases: readonly Phase[];
  /** How many Sluice instances share the upstream (1 or 2). */
  readonly instances: number;
  readonly streams: readonly Stream[];
  /** The adaptive limit's initial value (default: the starting worker count) and window length. */
  readonly initial?: number;
  readonly windowMs?: number;
}

const BASE: UpstreamSettings = { workers: 16, serviceMs: 40, model: 'jitter' };

/** Both lanes of one instance over [fromMs, toMs). */
function load(instance: number, interactive: number, batch: number, fromMs: number, toMs: number): Stream[] {
  const out: Stream[] = [];
  if (interactive > 0) out.push({ instance, lane: 'interactive', rate: interactive, fromMs, toMs });
  if (batch > 0) out.push({ instance, lane: 'batch', rate: batch, fromMs, toMs });
  return out;
}

export const SCENARIOS: readonly Scenario[] = [
  {
    id: 'slower',
    title: '1. Service time x3 and back (same workers)',
    upstream: BASE,
    phases: [
      { name: 'normal', ms: 10_000 },
      { name: 'slow x3', ms: 10_000, set: { serviceMs: 120 } },
      { name: 'normal again', ms: 10_000, set: { serviceMs: 40 } },
    ],
    instances: 1,
    streams: load(0, 65, 800, 0, 30_000),
  },
  {
    id: 'pause',
    title: '2. Service time x5 for 5 s (a GC pause, a slow dependency)',
    upstream: BASE,
    phases: [
      { name: 'normal', ms: 10_000 },
      { name: 'slow x5', ms: 5_000, set: { serviceMs: 200 } },
      { name: 'normal again', ms: 10_000, set: { serviceMs: 40 } },
    ],
    instances: 1,
    streams: load(0, 40, 800, 0, 25_000),
  },
  {
    id: 'workers',
    title: '3a. Workers /4 and back x4 (100 ms windows)',
    upstream: { workers: 40, serviceMs: 80, model: 'jitter' },
    phases: [
      { name: '40 workers', ms: 10_000 },
      { name: '10 workers', ms: 10_000, set: { workers: 10 } },
      { name: '40 again', ms: 10_000, set: { workers: 40 } },
    ],
    instances: 1,
    streams: load(0, 60, 1000, 0, 30_000),
  },
  {
    id: 'workers-1s',
    title: '3b. Workers /4 and back x4 (1 s windows)',
    upstream: { workers: 40, serviceMs: 80, model: 'jitter' },
    phases: [
      { name: '40 workers', ms: 20_000 },
      { name: '10 workers', ms: 20_000, set: { workers: 10 } },
      { name: '40 again', ms: 20_000, set: { workers: 40 } },
    ],
    instances: 1,
    streams: load(0, 60, 1000, 0, 60_000),
    windowMs: 1000,
  },
  {
    id: 'initial-high',
    title: '4a. Initial limit 10x too high',
    upstream: BASE,
    phases: [{ name: 'from 160', ms: 15_000 }],
    instances: 1,
    streams: load(0, 100, 800, 0, 15_000),
    initial: 160,
  },
  {
    id: 'initial-low',
    title: '4b. Initial limit 10x too low',
    upstream: BASE,
    phases: [{ name: 'from 2', ms: 15_000 }],
    instances: 1,
    streams: load(0, 100, 800, 0, 15_000),
    initial: 2,
  },
  {
    id: 'two-instances',
    title: '5. Two Sluice instances in front of one upstream (the second joins at 10 s)',
    upstream: BASE,
    phases: [
      { name: 'A alone', ms: 10_000 },
      { name: 'A and B', ms: 15_000 },
    ],
    instances: 2,
    streams: [...load(0, 50, 600, 0, 25_000), ...load(1, 50, 600, 10_000, 25_000)],
  },
  {
    id: 'lognormal',
    title: '6a. Noisy service times (lognormal, CoV 0.5)',
    upstream: { ...BASE, model: 'lognormal' },
    phases: [{ name: 'lognormal', ms: 15_000 }],
    instances: 1,
    streams: load(0, 100, 800, 0, 15_000),
  },
  {
    id: 'bimodal',
    title: '6b. Bimodal service times (90% fast, 10% 10x slower)',
    upstream: { ...BASE, model: 'bimodal' },
    phases: [{ name: 'bimodal', ms: 15_000 }],
    instances: 1,
    streams: load(0, 50, 800, 0, 15_000),
  },
  {
    id: 'batch-flood',
    title: '7. Interactive at 0.3x capacity under a batch flood at 10x',
    upstream: { workers: 16, serviceMs: 80, model: 'jitter' },
    phases: [
      { name: 'unloaded', ms: 10_000 },
      { name: 'batch flood', ms: 10_000 },
    ],
    instances: 1,
    streams: [...load(0, 60, 0, 0, 20_000), ...load(0, 0, 2000, 10_000, 20_000)],
  },
];

/** The upstream's settings during each phase. */
export function phaseSettings(s: Scenario): UpstreamSettings[] {
  let cur = s.upstream;
  return s.phases.map((p) => (cur = { ...cur, ...p.set }));
}

/** Start of each phase (ms). */
export function phaseStarts(s: Scenario): number[] {
  let t = 0;
  return s.phases.map((p) => {
    const at = t;
    t += p.ms;
    return at;
  });
}

export function durationMs(s: Scenario): number {
  return s.phases.reduce((t, p) => t + p.ms, 0);
}

/** Requests per second the upstream can serve with these settings. */
export function capacity(u: UpstreamSettings): number {
  return (u.workers * 1000) / meanServiceTime(u.model, u.serviceMs);
}

/** The p99 service time: what a request takes with no queueing at all. */
export function serviceP99(u: UpstreamSettings): number {
  return serviceTimeP99(u.model, u.serviceMs);
}

/** Instances with load at time t. */
export function activeInstances(s: Scenario, t: number): number[] {
  const out = new Set<number>();
  for (const x of s.streams) if (x.fromMs <= t && t < x.toMs) out.add(x.instance);
  return [...out].sort((a, b) => a - b);
}

/** The index of the phase running at time t. */
export function phaseAt(s: Scenario, t: number): number {
  const starts = phaseStarts(s);
  let i = 0;
  while (i + 1 < starts.length && starts[i + 1]! <= t) i++;
  return i;
}

/**
 * The optimum limit of one instance at time t: the worker count, shared
 * evenly by the instances with load (the comparator's limit). Enough in
 * flight to keep every worker busy, nothing queued at the upstream.
 */
export function optimumLimit(s: Scenario, t: number): number {
  const workers = phaseSettings(s)[phaseAt(s, t)]!.workers;
  return Math.max(1, Math.round(workers / Math.max(1, activeInstances(s, t).length)));
}

/** The window length the scenario's limit uses (the config default: 100 ms). */
export function windowOf(s: Scenario): number {
  return s.windowMs ?? 100;
}

/** How long after a change a phase is judged from: 2 s with 100 ms windows, otherwise 10 windows. */
export function settleMs(s: Scenario): number {
  const w = windowOf(s);
  return w <= 100 ? 2000 : 10 * w;
}

/** Scales every time in a scenario (bench --quick runs them short). */
export function scaled(s: Scenario, f: number): Scenario {
  return {
    ...s,
    phases: s.phases.map((p) => ({ ...p, ms: Math.round(p.ms * f) })),
    streams: s.streams.map((x) => ({ ...x, fromMs: Math.round(x.fromMs * f), toMs: Math.round(x.toMs * f) })),
  };
}

export interface LimitChoice {
  /** `fixed` for the comparator, else the algorithm under test (null: the config schema's default). */
  readonly algorithm: string | null;
  readonly initial: number;
  readonly windowMs: number;
}

/** The controller under test for one instance of a scenario. */
export function adaptiveLimit(s: Scenario, algorithm: string | null): LimitChoice {
  return { algorithm, initial: s.initial ?? Math.max(1, Math.round(s.upstream.workers / s.instances)), windowMs: windowOf(s) };
}

/** The comparator's fixed limit at time t (the same for every instance). */
export function toldTheTruth(s: Scenario, t: number): LimitChoice {
  return { algorithm: 'fixed', initial: optimumLimit(s, t), windowMs: windowOf(s) };
}

/**
 * The policy both controllers run under (same lanes): interactive first;
 * batch may use the whole limit (a freed slot goes to interactive first, so
 * interactive waits at most one slot's turnover) and always gets 10% of it.
 */
export function scenarioPolicy(upstreamUrl: string, limit: LimitChoice): string {
  const algorithm = limit.algorithm === null ? '' : `algorithm: ${limit.algorithm}, `;
  return `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { level: info }
lanes:
  - name: interactive
    queue: { maxLength: 50, maxWaitMs: 500 }
  - name: batch
    minShare: 0.1
    queue: { maxLength: 100, maxWaitMs: 2000 }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
clients:
  key: { header: x-api-key }
  maxShare: 1
retryAfter: { minSeconds: 1, maxSeconds: 10, jitter: 0.2 }
defaults:
  limit: { ${algorithm}initial: ${limit.initial}, min: 1, max: 1000, window: { windowMs: ${limit.windowMs} } }
  timeouts: { connectMs: 1000, headersMs: 30000, bodyMs: 30000 }
routes:
  - name: scenario
    match: { pathPrefix: / }
    upstream: ${upstreamUrl}
`;
}

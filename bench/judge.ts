/**
 * Grades a scenario run (./scenarios.ts) against issue 10's goal, the same
 * way for the deterministic simulation and for `npm run bench`: both reduce
 * their raw data to one PhaseMeasure per phase, over the phase's judged
 * interval (from settleMs after its start, i.e. after the change, to its
 * end), and `judge` compares the controller with the comparator told the
 * truth, phase by phase.
 *
 * The goal, per phase:
 * - interactive success >= 99.9% whenever interactive is offered <= 80% of capacity;
 * - interactive p99 <= 1.2x the comparator's and <= 2.5x the p99 service time
 *   (the p99 a request has with no queueing at all: 1.1x the service time for
 *   the steady service, the slow mode's for the bimodal one);
 * - useful upstream work (responses delivered) >= 95% of capacity, or of the
 *   offered load when that is lower;
 * - the limit (summed over the instances with load) within ±20% of the
 *   optimum (the worker count) and staying there, when the offered load
 *   saturates the upstream (below that the limit is not what limits), and
 *   its coefficient of variation <= 10%. "Staying there" is read as every
 *   1-second mean of the limit (a settling band on the limit's level): a
 *   one-window probe dip or a one-request step that the next window takes
 *   back is what the CoV bounds. The table also shows the raw minimum and
 *   maximum of every sample, which such steps can take out of the band;
 * - two instances: neither delivers below 40% of the total;
 * - batch flood: interactive p99 <= 2x its p99 in the unloaded phase.
 */
import {
  capacity,
  optimumLimit,
  phaseSettings,
  phaseStarts,
  serviceP99,
  settleMs,
  type LaneName,
  type Scenario,
} from './scenarios.js';

export interface RequestRecord {
  readonly instance: number;
  readonly lane: LaneName;
  /** Arrival time (ms since the scenario's start). */
  readonly at: number;
  /** Arrival to answer (ms); -1 while unanswered. */
  ms: number;
  /** Answered 200 (else refused). */
  ok: boolean;
}

export interface TracePoint {
  readonly t: number;
  /** Every instance's limit. */
  readonly limits: readonly number[];
  /** Instances with load at t. */
  readonly active: readonly number[];
}

/** What the simulation collects in one run. */
export interface RunData {
  readonly records: RequestRecord[];
  /** Upstream responses delivered, by completion time. */
  readonly completions: { readonly at: number; readonly instance: number }[];
  readonly trace: TracePoint[];
}

export interface LaneMeasure {
  /** Requests arrived in the interval. */
  readonly offered: number;
  readonly ok: number;
  /** p99 latency of the 200s, ms; null without any. */
  readonly p99: number | null;
}

export interface PhaseMeasure {
  readonly name: string;
  readonly fromMs: number;
  readonly toMs: number;
  readonly interactive: LaneMeasure;
  readonly batch: LaneMeasure;
  /** Responses delivered per second, per instance. */
  readonly usefulPerSecond: readonly number[];
  /** The summed limit of the instances with load, and the optimum for it, over the interval. */
  readonly limit: LimitMeasure;
}

export interface LimitMeasure {
  readonly mean: number;
  readonly cov: number;
  /** Lowest and highest sample. */
  readonly min: number;
  readonly max: number;
  /** Lowest and highest 1-second mean. */
  readonly minSecond: number;
  readonly maxSecond: number;
  readonly optimum: number;
}

const SECOND_MS = 1000;

/** Judged interval of each phase: [start + settle, end). */
export function judgedIntervals(s: Scenario): { name: string; fromMs: number; toMs: number }[] {
  const starts = phaseStarts(s);
  return s.phases.map((p, i) => ({ name: p.name, fromMs: starts[i]! + Math.min(settleMs(s), p.ms / 2), toMs: starts[i]! + p.ms }));
}

function p99(xs: number[]): number | null {
  if (xs.length === 0) return null;
  xs.sort((a, b) => a - b);
  return xs[Math.min(xs.length - 1, Math.ceil(0.99 * xs.length) - 1)]!;
}

function lane(records: readonly RequestRecord[], name: LaneName): LaneMeasure {
  const mine = records.filter((r) => r.lane === name);
  const ok = mine.filter((r) => r.ok);
  return { offered: mine.length, ok: ok.length, p99: p99(ok.map((r) => r.ms)) };
}

/** Mean, CoV, extremes and 1-second-mean extremes of the summed limit over trace points in [from, to). */
export function limitMeasure(s: Scenario, points: readonly TracePoint[], from: number, to: number): LimitMeasure {
  const inside = points.filter((p) => p.t >= from && p.t < to);
  const sums = inside.map((p) => p.active.reduce((n, i) => n + (p.limits[i] ?? 0), 0));
  const mean = sums.reduce((a, b) => a + b, 0) / Math.max(1, sums.length);
  const sd = Math.sqrt(sums.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, sums.length));
  const seconds = new Map<number, number[]>();
  inside.forEach((p, i) => {
    const k = Math.floor((p.t - from) / SECOND_MS);
    seconds.set(k, [...(seconds.get(k) ?? []), sums[i]!]);
  });
  const means = [...seconds.values()].map((xs) => xs.reduce((a, b) => a + b, 0) / xs.length);
  const mid = (from + to) / 2;
  const active = Math.max(1, points.find((p) => p.t >= mid)?.active.length ?? 1);
  return {
    mean,
    cov: mean > 0 ? sd / mean : 0,
    min: Math.min(...sums),
    max: Math.max(...sums),
    minSecond: Math.min(...means),
    maxSecond: Math.max(...means),
    optimum: optimumLimit(s, mid) * active,
  };
}

/** The simulation's raw data, per judged interval. */
export function measureRun(s: Scenario, run: RunData): PhaseMeasure[] {
  return judgedIntervals(s).map(({ name, fromMs, toMs }) => {
    const inside = run.records.filter((r) => r.at >= fromMs && r.at < toMs);
    const seconds = (toMs - fromMs) / 1000;
    const useful = Array.from({ length: s.instances }, (_, i) => run.completions.filter((c) => c.instance === i && c.at >= fromMs && c.at < toMs).length / seconds);
    return { name, fromMs, toMs, interactive: lane(inside, 'interactive'), batch: lane(inside, 'batch'), usefulPerSecond: useful, limit: limitMeasure(s, run.trace, fromMs, toMs) };
  });
}

export interface Verdict {
  readonly phase: string;
  readonly goal: string;
  readonly measured: string;
  readonly met: boolean;
}

const pct = (x: number, d = 1): string => `${(x * 100).toFixed(d)}%`;
const ms = (x: number | null): string => (x === null ? '-' : `${x.toFixed(0)} ms`);

/** Offered requests per second in the interval, by lane. */
function offeredRate(m: PhaseMeasure, l: LaneName): number {
  return m[l].offered / ((m.toMs - m.fromMs) / 1000);
}

/** Every goal that applies to each phase, with what the controller achieved. */
export function judge(s: Scenario, ours: readonly PhaseMeasure[], truth: readonly PhaseMeasure[]): Verdict[] {
  const out: Verdict[] = [];
  const settings = phaseSettings(s);
  ours.forEach((m, i) => {
    const u = settings[i]!;
    const cap = capacity(u);
    const t = truth[i]!;
    const add = (goal: string, measured: string, met: boolean): void => void out.push({ phase: m.name, goal, measured, met });
    const inter = offeredRate(m, 'interactive');
    const total = inter + offeredRate(m, 'batch');
    if (inter <= 0.8 * cap && m.interactive.offered > 0) {
      const ok = m.interactive.ok / m.interactive.offered;
      add('interactive success >= 99.9%', pct(ok, 2), ok >= 0.999);
    }
    if (m.interactive.p99 !== null && t.interactive.p99 !== null) {
      add('interactive p99 <= 1.2x told the truth', `${ms(m.interactive.p99)} vs ${ms(t.interactive.p99)}`, m.interactive.p99 <= 1.2 * t.interactive.p99);
      const bound = 2.5 * serviceP99(u);
      add('interactive p99 <= 2.5x p99 service time', `${ms(m.interactive.p99)} vs ${ms(bound)}`, m.interactive.p99 <= bound);
    }
    const useful = m.usefulPerSecond.reduce((a, b) => a + b, 0);
    const want = Math.min(cap, total);
    add('useful work >= 95% of capacity (or offered)', `${useful.toFixed(0)}/s of ${want.toFixed(0)}/s (${pct(useful / want)})`, useful >= 0.95 * want);
    const l = m.limit;
    if (total >= cap) {
      add('limit within ±20% of optimum (1 s means)', `${l.minSecond.toFixed(1)}-${l.maxSecond.toFixed(1)} for ${l.optimum}`, l.minSecond >= 0.8 * l.optimum && l.maxSecond <= 1.2 * l.optimum);
    }
    add('limit CoV <= 10%', pct(l.cov), l.cov <= 0.1);
    const live = m.usefulPerSecond.filter((x) => x > 0);
    if (live.length >= 2) {
      const least = Math.min(...live) / useful;
      add('each instance >= 40% of the total', `${m.usefulPerSecond.map((x) => pct(x / useful, 0)).join(' / ')}`, least >= 0.4);
    }
  });
  if (s.id === 'batch-flood' && ours.length === 2) {
    const [unloaded, flood] = ours as [PhaseMeasure, PhaseMeasure];
    if (unloaded.interactive.p99 !== null && flood.interactive.p99 !== null) {
      const r = flood.interactive.p99 / unloaded.interactive.p99;
      out.push({ phase: flood.name, goal: 'interactive p99 <= 2x unloaded', measured: `${r.toFixed(2)}x`, met: r <= 2 });
    }
  }
  return out;
}

const cell = (a: string, b: string): string => `${a} / ${b}`;

/** One markdown table row per phase: controller / told the truth, side by side. */
export function scenarioRows(s: Scenario, ours: readonly PhaseMeasure[], truth: readonly PhaseMeasure[], verdicts: readonly Verdict[]): string[][] {
  const settings = phaseSettings(s);
  return ours.map((m, i) => {
    const t = truth[i]!;
    const u = settings[i]!;
    const cap = capacity(u);
    const useful = (x: PhaseMeasure): string => pct(x.usefulPerSecond.reduce((a, b) => a + b, 0) / cap, 0);
    const success = (x: PhaseMeasure): string => (x.interactive.offered ? pct(x.interactive.ok / x.interactive.offered, 2) : '-');
    const missed = verdicts.filter((v) => v.phase === m.name && !v.met).map((v) => v.goal);
    return [
      m.name,
      `${u.workers} x ${u.serviceMs} ms ${u.model}`,
      cell(`${m.limit.mean.toFixed(1)} (${m.limit.minSecond.toFixed(1)}-${m.limit.maxSecond.toFixed(1)}; ${m.limit.min}-${m.limit.max})`, String(t.limit.optimum)),
      pct(m.limit.cov),
      cell(useful(m), useful(t)),
      cell(success(m), success(t)),
      cell(ms(m.interactive.p99), ms(t.interactive.p99)),
      missed.length === 0 ? 'met' : `**missed: ${missed.join('; ')}**`,
    ];
  });
}

export const SCENARIO_HEADER = [
  'phase (judged part)',
  'upstream',
  'limit: mean (1 s means min-max; samples min-max) / optimum',
  'limit CoV',
  'useful work / capacity',
  'interactive success',
  'interactive p99',
  'goal',
];

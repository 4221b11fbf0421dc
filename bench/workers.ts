/**
 * Scenario 8 (`--only workers`): what `workers: 2` costs against `workers: 1`
 * (one process, no cluster), with wrk and the fast upstream as in scenario 0.
 * CPU is the whole instance's: the primary, its workers, and any worker that
 * exited (bench/processes.ts treeCpuSeconds), divided by the answers.
 *
 *   same core, keep-alive   both instances pinned to the proxy core (a
 *                           worker inherits its primary's affinity), wrk with
 *                           64 keep-alive connections: the per-request cost of
 *                           running as workers (the primary only accepts the
 *                           64 connections and hands them over)
 *   ... control: two independent workers: 1
 *                           two one-process instances on the core, each with
 *                           its own wrk and half the connections: what two
 *                           event loops sharing a core cost without a cluster
 *   same core, new connection per request
 *                           `Connection: close` on every request: each one is
 *                           a connection the primary accepts and hands over,
 *                           the worst case for the hand-off
 *   ... NODE_CLUSTER_SCHED_POLICY=none
 *                           the same, with node:cluster's other policy: the
 *                           workers accept from the shared socket themselves
 *   floating, keep-alive    unpinned instances (wrk and the upstream stay on
 *                           their core): throughput where another core can
 *                           be used; on a 2-core machine shared with the load
 *                           generator there is little to gain
 *
 * Rounds alternate the order (A B, B A, ...) after a discarded warm-up run
 * each, and each round's ratio pairs that round's two runs.
 *
 * Target (issue 14): CPU per request with workers: 2 <= 1.1x workers: 1.
 */
import { median } from './analysis.js';
import { admitAllPolicy, fmt, rotatingRounds, table, writeConfig, type BenchContext, type ScenarioOutput } from './common.js';
import { wrk } from './cost.js';
import { startFastUpstream, startSluice, treeCpuSeconds, urlOf, type Proc } from './processes.js';

const PATH = '/api/items/42?view=full';
const TARGET_RATIO = 1.1;

/** A Sluice instance of the scenario. */
interface Spec {
  readonly name: string;
  readonly workers: number;
  readonly pinned: boolean;
  readonly env?: Readonly<Record<string, string>>;
  /** Independent instances, each loaded by its own wrk with its part of the connections (the control). */
  readonly copies?: number;
}

const SPECS: readonly Spec[] = [
  { name: 'w1', workers: 1, pinned: true },
  { name: '2 x w1', workers: 1, pinned: true, copies: 2 },
  { name: 'w2', workers: 2, pinned: true },
  { name: 'w2-kernel', workers: 2, pinned: true, env: { NODE_CLUSTER_SCHED_POLICY: 'none' } },
  { name: 'w1-floating', workers: 1, pinned: false },
  { name: 'w2-floating', workers: 2, pinned: false },
];

interface Mode {
  readonly name: string;
  readonly connections: number;
  readonly headers: readonly string[];
  /** The pair compared: the baseline (workers: 1), then the other (by Spec name). */
  readonly pair: readonly [string, string];
}

const CLOSE = ['Connection: close'];
const MODES: readonly Mode[] = [
  { name: 'same core, keep-alive', connections: 64, headers: [], pair: ['w1', 'w2'] },
  // Control: two event loops on one core without a cluster, each with half the connections.
  { name: 'same core, keep-alive, control: two independent workers: 1', connections: 64, headers: [], pair: ['w1', '2 x w1'] },
  { name: 'same core, new connection per request', connections: 16, headers: CLOSE, pair: ['w1', 'w2'] },
  { name: 'same core, new connection per request, NODE_CLUSTER_SCHED_POLICY=none', connections: 16, headers: CLOSE, pair: ['w1', 'w2-kernel'] },
  { name: 'floating, keep-alive', connections: 64, headers: [], pair: ['w1-floating', 'w2-floating'] },
];

interface Instance {
  readonly spec: Spec;
  readonly procs: readonly Proc[];
}

interface Row {
  readonly round: number;
  readonly mode: string;
  readonly instance: string;
  readonly rps: number;
  readonly cpuUsPerReq: number;
  /** The top-level processes' own CPU per answer: the primary's with workers: 2, all of it with workers: 1. */
  readonly primaryUsPerReq: number;
  readonly cpuPct: number;
  readonly errors: number;
}

const sumOf = (procs: readonly Proc[], f: (p: Proc) => number): number => procs.reduce((n, p) => n + f(p), 0);

async function measure(ctx: BenchContext, mode: Mode, inst: Instance, round: number, durationS: number): Promise<Row> {
  const tree0 = sumOf(inst.procs, (p) => treeCpuSeconds(p.pid));
  const own0 = sumOf(inst.procs, (p) => p.cpuSeconds());
  const conns = Math.ceil(mode.connections / inst.procs.length);
  const runs = await Promise.all(inst.procs.map((p) => wrk(`${urlOf(p)}${PATH}`, conns, durationS, ctx.placement.loadgen, mode.headers)));
  const tree = sumOf(inst.procs, (p) => treeCpuSeconds(p.pid)) - tree0;
  const own = sumOf(inst.procs, (p) => p.cpuSeconds()) - own0;
  const wall = Math.max(...runs.map((w) => w.durationUs)) / 1e6;
  const ok = runs.reduce((n, w) => n + w.requests - w.status, 0);
  const errors = runs.reduce((n, w) => n + w.connectErrors + w.readErrors + w.writeErrors + w.timeouts + w.status, 0);
  return {
    round,
    mode: mode.name,
    instance: inst.spec.name,
    rps: ok / wall,
    cpuUsPerReq: ok > 0 ? (tree / ok) * 1e6 : Number.NaN,
    primaryUsPerReq: ok > 0 ? (own / ok) * 1e6 : Number.NaN,
    cpuPct: (tree / wall) * 100,
    errors,
  };
}

/** Per round of `mode`: f(the other) / f(the baseline). */
function ratios(rows: readonly Row[], mode: Mode, f: (r: Row) => number): number[] {
  const out: number[] = [];
  const [base, other] = mode.pair;
  for (const r of rows) {
    if (r.mode !== mode.name || r.instance !== other) continue;
    const one = rows.find((x) => x.mode === mode.name && x.round === r.round && x.instance === base);
    if (one !== undefined) out.push(f(r) / f(one));
  }
  return out;
}

function report(ctx: BenchContext, rows: readonly Row[], durationS: number): ScenarioOutput {
  const list = (xs: number[]) => xs.map((x) => fmt(x, 3)).join(', ');
  const med = (mode: Mode, instance: string, f: (r: Row) => number) => median(rows.filter((r) => r.mode === mode.name && r.instance === instance).map(f));
  const summary = MODES.map((m) => {
    const cpu = ratios(rows, m, (r) => r.cpuUsPerReq);
    const tput = ratios(rows, m, (r) => r.rps);
    const [base, other] = m.pair;
    return [
      `${m.name}: ${other} / ${base}`,
      fmt(med(m, base, (r) => r.cpuUsPerReq), 1),
      fmt(med(m, other, (r) => r.cpuUsPerReq), 1),
      fmt(med(m, other, (r) => r.primaryUsPerReq), 1),
      `${fmt(median(cpu), 3)} (${list(cpu)})`,
      `${fmt(median(tput), 3)} (${list(tput)})`,
    ];
  });
  const keep = ratios(rows, MODES[0]!, (r) => r.cpuUsPerReq);
  return {
    id: 'workers',
    title: '8. workers: 2 against workers: 1 (wrk): CPU per request of the whole instance, throughput',
    markdown: [
      `wrk, one thread on CPU ${ctx.placement.loadgen ?? 'any'} with the fast upstream, ${durationS} s per run; "same core": the instances on CPU ${ctx.placement.proxy ?? 'any'} (workers inherit the primary's affinity); "floating": unpinned. CPU = user + system time of the primary and all its workers (/proc), over the answers wrk counted (2xx). "2 x w1": two independent one-process instances, each with half the connections (its own wrk): two event loops on the core, no cluster.`,
      '',
      table(
        ['round', 'mode', 'instance', 'answers/s', 'CPU %', 'CPU µs/answer', 'top-level process µs/answer', 'errors'],
        rows.map((r) => [r.round, r.mode, r.instance, Math.round(r.rps), fmt(r.cpuPct, 0), fmt(r.cpuUsPerReq, 1), fmt(r.primaryUsPerReq, 1), r.errors]),
      ),
      '',
      'Medians, and per round the ratio of the two (the second / the first):',
      '',
      table(['mode: compared', 'first µs/answer', 'second µs/answer', 'second: top-level process µs/answer', 'CPU ratio (per round)', 'throughput ratio (per round)'], summary),
    ].join('\n'),
    json: { rows },
    targets: [
      {
        target: `workers: 2 CPU per request <= ${TARGET_RATIO}x workers: 1 (keep-alive, same core)`,
        measured: `${fmt(median(keep), 3)}x (per round ${list(keep)})`,
        met: ctx.quick ? null : median(keep) <= TARGET_RATIO,
      },
    ],
  };
}

async function startInstances(ctx: BenchContext, up: string, procs: Proc[]): Promise<Map<string, Instance>> {
  const out = new Map<string, Instance>();
  for (const spec of SPECS) {
    const file = writeConfig(ctx, `workers-${spec.name.replace(/\W+/g, '')}`, `workers: ${spec.workers}\nshutdown: { readinessGraceMs: 0, drainTimeoutMs: 2000 }\n${admitAllPolicy(up)}`);
    const mine: Proc[] = [];
    for (let i = 0; i < (spec.copies ?? 1); i++) mine.push(await startSluice(spec.pinned ? ctx.placement.proxy : null, file, undefined, spec.env));
    procs.push(...mine);
    out.set(spec.name, { spec, procs: mine });
  }
  return out;
}

export async function workersScenario(ctx: BenchContext): Promise<ScenarioOutput> {
  const rounds = ctx.quick ? 1 : 5;
  const durationS = ctx.quick ? 1 : 4;
  // Each worker sees half of the warm-up load: it gets longer than in scenario 0.
  const warmupS = ctx.quick ? 1 : 8;
  const procs: Proc[] = [];
  try {
    const upstream = await startFastUpstream(ctx.placement.upstream);
    procs.push(upstream);
    const instances = await startInstances(ctx, urlOf(upstream), procs);
    ctx.log('8. workers: CPU per request and throughput, workers: 1 vs 2');
    const rows: Row[] = [];
    for (const mode of MODES) {
      const pair = mode.pair.map((name) => instances.get(name) as Instance);
      for (const inst of pair) await measure(ctx, mode, inst, 0, warmupS);
      const modeRows = await rotatingRounds(rounds, pair, async (inst, round) => {
        const r = await measure(ctx, mode, inst, round, durationS);
        ctx.log(`  ${mode.name}, round ${round}, ${inst.spec.name}: ${Math.round(r.rps)} answers/s, ${fmt(r.cpuUsPerReq, 1)} µs/answer (primary ${fmt(r.primaryUsPerReq, 1)})`);
        return r;
      });
      rows.push(...modeRows);
    }
    return report(ctx, rows, durationS);
  } finally {
    await Promise.all(procs.map((x) => x.stop()));
  }
}

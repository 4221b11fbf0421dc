/**
 * Issue 10's scenarios (./scenarios.ts, the definitions the deterministic
 * simulation runs) against real processes: the capacity-modelled upstream
 * (src/demo/upstream.ts) as its own process, one or two Sluice CLIs, one
 * open-loop generator process per instance and time span (./loadgen.ts).
 * Each scenario runs twice, with the default controller and with the
 * comparator told the truth (`fixed` at the true worker count, reloaded
 * through /admin/reload at every change); ./judge.ts grades both, phase by
 * phase, the same way as the simulation.
 *
 * Upstream changes are POSTed to its /_control at each phase start; every
 * instance's /admin/state is polled every TRACE_MS for the limit trace.
 * From the generators: per judged interval (phase boundaries given as
 * `phasesMs`, by intended send time) offered, ok and p99 per lane (with two
 * instances the p99 is the higher of the two), and useful work from the
 * per-second 200s (by completion time).
 */
import { writeFileSync } from 'node:fs';
import { judge, judgedIntervals, limitMeasure, scenarioRows, SCENARIO_HEADER, type LaneMeasure, type PhaseMeasure, type TracePoint } from './judge.js';
import type { LoadResult, StreamSpec } from './loadgen.js';
import { getJson, postJson, table, writeChart, writeConfig, type BenchContext, type ScenarioOutput } from './common.js';
import { runLoadgen, startProc, startSluice, urlOf, type Proc } from './processes.js';
import {
  activeInstances,
  adaptiveLimit,
  durationMs,
  optimumLimit,
  phaseSettings,
  phaseStarts,
  scaled,
  SCENARIOS,
  scenarioPolicy,
  toldTheTruth,
  type LaneName,
  type LimitChoice,
  type Scenario,
  type UpstreamSettings,
} from './scenarios.js';
import { lineChart, type Series } from './svg.js';
import { fileURLToPath } from 'node:url';

const TRACE_MS = 100;
const PROCS = fileURLToPath(new URL('./procs/', import.meta.url));
/** --quick: these scenarios, at this fraction of their length. */
const QUICK = { ids: ['slower', 'two-instances'], scale: 0.2 } as const;

type Controller = 'default' | 'truth';

function startUpstream(u: UpstreamSettings): Promise<Proc> {
  const args = [`${PROCS}upstream.js`, '--mode', 'capacity', '--workers', String(u.workers), '--service-ms', String(u.serviceMs), '--model', u.model];
  return startProc('upstream', args, null, (m) => typeof m['url'] === 'string');
}

/** One generator run: the streams of one instance over one span. */
interface Group {
  readonly instance: number;
  readonly fromMs: number;
  readonly toMs: number;
  readonly streams: StreamSpec[];
}

function groupsOf(s: Scenario): Group[] {
  const groups = new Map<string, Group>();
  for (const x of s.streams) {
    const key = `${x.instance}:${x.fromMs}:${x.toMs}`;
    const g = groups.get(key) ?? { instance: x.instance, fromMs: x.fromMs, toMs: x.toMs, streams: [] };
    g.streams.push({ name: x.lane, rate: x.rate, path: x.lane === 'batch' ? '/api/export' : '/api/page', headers: x.lane === 'batch' ? { 'x-priority': 'batch' } : {} });
    groups.set(key, g);
  }
  return [...groups.values()];
}

/** Phase boundaries for a group's generator: every judged interval's ends, relative to the group's start. */
function boundariesOf(s: Scenario, g: Group): number[] {
  const cuts = judgedIntervals(s).flatMap((j) => [j.fromMs, j.toMs]);
  return [...new Set(cuts.map((c) => c - g.fromMs).filter((c) => c > 0 && c < g.toMs - g.fromMs))].sort((a, b) => a - b);
}

interface Run {
  readonly results: { group: Group; result: LoadResult }[];
  readonly trace: TracePoint[];
  /** Epoch ms of the scenario's time zero. */
  readonly t0: number;
}

/** The change times at which the comparator's limit is told the truth again. */
function changeTimes(s: Scenario): number[] {
  return [...new Set([...phaseStarts(s), ...s.streams.map((x) => x.fromMs)])].filter((t) => t > 0).sort((a, b) => a - b);
}

async function runOnce(ctx: BenchContext, s: Scenario, controller: Controller): Promise<Run> {
  const upstream = await startUpstream(s.upstream);
  const sluices: Proc[] = [];
  const files: string[] = [];
  const limitAt = (t: number): LimitChoice => (controller === 'truth' ? toldTheTruth(s, t) : adaptiveLimit(s, ctx.algorithm));
  try {
    for (let i = 0; i < s.instances; i++) {
      const file = writeConfig(ctx, `${s.id}-${controller}-${i}`, scenarioPolicy(urlOf(upstream), limitAt(0)));
      files.push(file);
      sluices.push(await startSluice(null, file));
    }
    return await drive(ctx, s, controller, upstream, sluices, files, limitAt);
  } finally {
    await Promise.all([...sluices, upstream].map((p) => p.stop()));
  }
}

async function drive(
  ctx: BenchContext,
  s: Scenario,
  controller: Controller,
  upstream: Proc,
  sluices: Proc[],
  files: string[],
  limitAt: (t: number) => LimitChoice,
): Promise<Run> {
  const trace: TracePoint[] = [];
  const timers: NodeJS.Timeout[] = [];
  const actions: Promise<unknown>[] = [];
  let t0 = Number.NaN;
  let tracing = true;
  const at = (ms: number, fn: () => Promise<unknown>) =>
    timers.push(setTimeout(() => actions.push(fn().catch((err: unknown) => ctx.log(`  ${s.id}: action at ${ms} ms failed: ${String(err)}`))), Math.max(0, t0 + ms - Date.now())));
  const settings = phaseSettings(s);
  const schedule = (): void => {
    phaseStarts(s).forEach((ms, i) => {
      if (ms > 0) at(ms, () => postJson(`${urlOf(upstream)}/_control`, { workers: settings[i]!.workers, serviceTimeMs: settings[i]!.serviceMs, serviceModel: settings[i]!.model }));
    });
    if (controller === 'truth') {
      for (const ms of changeTimes(s)) {
        at(ms, async () => {
          for (const [i, sl] of sluices.entries()) {
            writeFileSync(files[i]!, scenarioPolicy(urlOf(upstream), limitAt(ms)));
            await postJson(`${String(sl.ready['admin'])}/admin/reload`, {});
          }
        });
      }
    }
  };
  const poll = (async () => {
    while (tracing) {
      const started = Date.now();
      if (!Number.isNaN(t0)) {
        try {
          const limits = await Promise.all(sluices.map(async (sl) => (await getJson<{ routes: { limit: number }[] }>(`${String(sl.ready['admin'])}/admin/state`)).routes[0]!.limit));
          const t = started - t0;
          trace.push({ t, limits, active: activeInstances(s, t) });
        } catch {
          // A missed sample is a gap in the trace, not a failed benchmark.
        }
      }
      await new Promise((r) => setTimeout(r, Math.max(0, TRACE_MS - (Date.now() - started))));
    }
  })();
  const groups = groupsOf(s);
  const spec = (g: Group) => ({
    url: urlOf(sluices[g.instance]!),
    durationMs: g.toMs - g.fromMs,
    streams: g.streams,
    connections: 1024,
    maxInFlight: 8192,
    timeoutMs: 15_000,
    phasesMs: boundariesOf(s, g),
  });
  const results: { group: Group; result: LoadResult }[] = [];
  const runs: Promise<void>[] = [];
  const launch = (g: Group, onStart?: (epochMs: number) => void): void =>
    void runs.push(runLoadgen(spec(g), null, onStart).then((result) => void results.push({ group: g, result })));
  // The scenario's time zero is the first generator's t0; the others start from it.
  let later: (() => void) | null = () => {
    for (const g of groups.filter((x) => x.fromMs > 0)) {
      runs.push(new Promise<void>((resolve, reject) => timers.push(setTimeout(() => runLoadgen(spec(g), null).then((result) => void results.push({ group: g, result })).then(resolve, reject), Math.max(0, t0 + g.fromMs - Date.now())))));
    }
  };
  for (const g of groups.filter((x) => x.fromMs === 0)) {
    launch(g, (epochMs) => {
      if (later === null) return;
      t0 = epochMs;
      schedule();
      const start = later;
      later = null;
      start();
    });
  }
  try {
    // Runs scheduled later are pushed while waiting: wait until no more appear.
    for (let seen = -1; seen !== runs.length; ) {
      seen = runs.length;
      await Promise.all(runs);
    }
  } finally {
    tracing = false;
    await poll;
    for (const t of timers) clearTimeout(t);
    await Promise.all(actions);
  }
  return { results, trace, t0 };
}

/** The run's generators and trace, per judged interval (see the header). */
function measure(s: Scenario, run: Run): PhaseMeasure[] {
  return judgedIntervals(s).map(({ name, fromMs, toMs }) => {
    const lane = (l: LaneName): LaneMeasure => {
      let offered = 0;
      let ok = 0;
      let p99: number | null = null;
      for (const { group, result } of run.results) {
        const from = fromMs - group.fromMs;
        if (from < 0 || from >= group.toMs - group.fromMs) continue;
        const index = boundariesOf(s, group).filter((b) => b <= from).length;
        const phase = result.streams[l]?.phases[index];
        if (phase === undefined) continue;
        offered += phase.ok + phase.refused + phase.other;
        ok += phase.ok;
        if (phase.latencyOk.p99 !== null) p99 = Math.max(p99 ?? 0, phase.latencyOk.p99);
      }
      return { offered, ok, p99 };
    };
    const seconds = (toMs - fromMs) / 1000;
    const useful = Array.from({ length: s.instances }, (_, i) => {
      let n = 0;
      for (const { group, result } of run.results) {
        if (group.instance !== i) continue;
        // Seconds are counted from this generator's own start.
        const offset = (result.startedAtEpochMs - run.t0) / 1000;
        for (const sec of result.seconds) {
          const t = sec.t + offset;
          if (t >= fromMs / 1000 && t < toMs / 1000) for (const st of Object.values(sec.streams)) n += st.ok;
        }
      }
      return n / seconds;
    });
    return { name, fromMs, toMs, interactive: lane('interactive'), batch: lane('batch'), usefulPerSecond: useful, limit: limitMeasure(s, run.trace, fromMs, toMs) };
  });
}

/** The summed limit of the instances with load over time (while there is load). */
function limitSeries(s: Scenario, run: Run): [number, number][] {
  return run.trace.filter((p) => p.t < durationMs(s)).map((p) => [p.t / 1000, p.active.reduce((n, i) => n + (p.limits[i] ?? 0), 0)]);
}

function optimumSeries(s: Scenario): [number, number][] {
  const end = durationMs(s);
  const out: [number, number][] = [];
  for (let t = 0; t <= end; t += 100) out.push([t / 1000, optimumLimit(s, t) * Math.max(1, activeInstances(s, t).length)]);
  return out;
}

function chart(ctx: BenchContext, s: Scenario, ours: Run, truth: Run): string {
  const series: Series[] = [
    { name: `limit: ${ctx.algorithm ?? 'default (little)'}`, points: limitSeries(s, ours) },
    { name: 'limit: told the truth', points: limitSeries(s, truth) },
    { name: 'optimum (worker count)', dashed: true, points: optimumSeries(s) },
  ];
  return writeChart(
    ctx,
    `adaptive-${s.id}`,
    lineChart({
      title: `${s.title}: limit (summed over instances) and optimum`,
      xLabel: 'seconds',
      leftLabel: 'requests in flight',
      series,
      markers: phaseStarts(s)
        .slice(1)
        .map((ms, i) => ({ x: ms / 1000, label: s.phases[i + 1]!.name })),
    }),
  );
}

/** `ids`: only these scenarios (default: all; --quick: QUICK.ids, shortened). */
export async function adaptiveScenarios(ctx: BenchContext, ids?: readonly string[]): Promise<ScenarioOutput> {
  const chosen = ids ?? (ctx.quick ? QUICK.ids : null);
  for (const id of chosen ?? []) if (!SCENARIOS.some((s) => s.id === id)) throw new Error(`--scenarios: unknown "${id}" (one of ${SCENARIOS.map((s) => s.id).join(', ')})`);
  const list = SCENARIOS.filter((s) => chosen === null || chosen.includes(s.id)).map((s) => (ctx.quick ? scaled(s, QUICK.scale) : s));
  const sections: string[] = [];
  const json: Record<string, unknown> = {};
  let checked = 0;
  const missed: string[] = [];
  for (const s of list) {
    ctx.log(`adaptive: ${s.title} (${durationMs(s) / 1000} s x 2)`);
    const oursRun = await runOnce(ctx, s, 'default');
    const truthRun = await runOnce(ctx, s, 'truth');
    const ours = measure(s, oursRun);
    const truth = measure(s, truthRun);
    const verdicts = judge(s, ours, truth);
    checked += verdicts.length;
    for (const v of verdicts) if (!v.met) missed.push(`${s.id} | ${v.phase} | ${v.goal}: ${v.measured}`);
    json[s.id] = { ours, truth, verdicts, trace: { ours: oursRun.trace, truth: truthRun.trace } };
    sections.push(
      `#### ${s.title}`,
      '',
      table(SCENARIO_HEADER, scenarioRows(s, ours, truth, verdicts)),
      '',
      `![${s.id}](${chart(ctx, s, oursRun, truthRun)})`,
      '',
    );
  }
  const label = ctx.algorithm ?? 'the default (little)';
  return {
    id: 'adaptive',
    title: 'Adaptive control scenarios (issue 10): the controller vs a limit told the truth',
    markdown: [
      `The scenarios of \`bench/scenarios.ts\` (the same definitions the simulation in \`test/simulation.test.ts\` runs; here ${list.map((s) => s.id).join(', ')}${ctx.quick ? `, --quick: at ${QUICK.scale}x their length` : ''}), each with ${label} and with \`fixed\` at the true worker count (reloaded at every change), against real processes. Cells: controller / told the truth; judged from 2 s after each change (10 windows with 1 s windows); with two instances the interactive p99 is the higher of the two.`,
      '',
      `Goal checks missed: ${missed.length} of ${checked}${missed.length ? `:\n\n${missed.map((m) => `- ${m}`).join('\n')}` : ''}`,
      '',
      ...sections,
    ].join('\n'),
    json,
    targets: [
      {
        target: `issue 10 goal, every scenario and phase (${label} vs told the truth)`,
        measured: `${checked - missed.length} of ${checked} checks met`,
        met: ctx.quick ? null : missed.length === 0,
      },
    ],
  };
}

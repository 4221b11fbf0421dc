/**
 * Scenarios 3-5: how well Sluice controls a capacity-limited upstream (the
 * demo's N workers x service time, FIFO behind them). The route's limit
 * algorithm is the config schema's default unless --algorithm names one, so
 * these scenarios follow the project's default as it changes.
 *
 * While the generator runs, /admin/state (limit, in-flight, queues), the
 * upstream's own in-flight and queue and Sluice's RSS are sampled every
 * TRACE_MS; charts plot them against interactive latency per second.
 */
import type { LoadResult, StreamSpec } from './loadgen.js';
import { median, settleTime, steadyRate, sumValues } from './analysis.js';
import {
  controlPolicy,
  fmt,
  getJson,
  postJson,
  routeState,
  startTrace,
  table,
  writeChart,
  writeConfig,
  type BenchContext,
  type ScenarioOutput,
  type TraceSample,
} from './common.js';
import { runLoadgen, startCapacityUpstream, startSluice, urlOf, type Placement, type Proc } from './processes.js';
import { lineChart, type Series } from './svg.js';

const WORKERS = 10;
const SERVICE_MS = 50;
const CAPACITY = (WORKERS * 1000) / SERVICE_MS; // 200 req/s
const TRACE_MS = 200;

function streams(interactiveRate: number, batchRate: number): StreamSpec[] {
  const out: StreamSpec[] = [{ name: 'interactive', rate: interactiveRate, path: '/api/page' }];
  if (batchRate > 0) out.push({ name: 'batch', rate: batchRate, path: '/api/export', headers: { 'x-priority': 'batch' } });
  return out;
}

interface Run {
  readonly result: LoadResult;
  readonly trace: TraceSample[];
  /** CPU use during the run, % of one core: is any process the bottleneck? */
  readonly cpuPct: { readonly sluice: number; readonly upstream: number; readonly loadgen: number };
}

/** Runs one load with tracing; `at` schedules actions (e.g. a capacity change) at seconds since the generator's t0. */
async function tracedRun(
  ctx: BenchContext,
  sluice: Proc,
  upstream: Proc,
  spec: { durationMs: number; streams: StreamSpec[]; phasesMs?: number[] },
  at: { s: number; run: () => Promise<unknown> }[] = [],
): Promise<Run> {
  let t0 = Date.now();
  const timers: NodeJS.Timeout[] = [];
  const trace = startTrace(sluice, urlOf(upstream), TRACE_MS, () => t0);
  const sluiceCpu0 = sluice.cpuSeconds();
  const upstreamCpu0 = upstream.cpuSeconds();
  const actions: Promise<unknown>[] = [];
  const result = await runLoadgen(
    { url: String(sluice.ready['proxy']), connections: 1024, maxInFlight: 8192, timeoutMs: 15_000, ...spec },
    ctx.placement.loadgen,
    (epochMs) => {
      t0 = epochMs;
      for (const a of at) {
        timers.push(
          setTimeout(() => {
            actions.push(a.run().catch((err: unknown) => ctx.log(`  action at ${a.s} s failed: ${String(err)}`)));
          }, Math.max(0, epochMs + a.s * 1000 - Date.now())),
        );
      }
    },
  );
  for (const t of timers) clearTimeout(t);
  await Promise.all(actions);
  const wall = result.elapsedMs / 1000;
  const cpuPct = {
    sluice: ((sluice.cpuSeconds() - sluiceCpu0) / wall) * 100,
    upstream: ((upstream.cpuSeconds() - upstreamCpu0) / wall) * 100,
    loadgen: (result.cpuSeconds / wall) * 100,
  };
  return { result, trace: await trace.stop(), cpuPct };
}

const CPU_HEADER = 'CPU % sluice / upstream / loadgen';
function cpuCell(r: Run): string {
  return `${fmt(r.cpuPct.sluice, 0)} / ${fmt(r.cpuPct.upstream, 0)} / ${fmt(r.cpuPct.loadgen, 0)}`;
}

function secondsSeries(r: LoadResult, stream: string, k: 'p99' | 'p50' | 'ok', offset = 0): [number, number | null][] {
  return r.seconds.map((s) => [s.t + 0.5 + offset, s.streams[stream]?.[k] ?? null]);
}

function traceSeries(trace: readonly TraceSample[], f: (s: TraceSample) => number, offset = 0): [number, number][] {
  return trace.map((s) => [s.t + offset, f(s)]);
}

function refusedTable(r: LoadResult): string {
  const rows: (string | number)[][] = [];
  for (const [name, s] of Object.entries(r.streams)) {
    const reasons = Object.entries(s.refused)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    const other = { ...s.other, ...s.errors };
    rows.push([
      name,
      s.offered,
      s.ok,
      sumValues(s.refused),
      reasons || '-',
      Object.keys(other).length ? Object.entries(other).map(([k, v]) => `${k} ${v}`).join(', ') : '0',
      s.badRefusals,
      fmt(s.latencyOk.p50),
      fmt(s.latencyOk.p99),
    ]);
  }
  return table(['lane', 'offered', 'ok', 'refused', 'refusals by status:reason', 'other/errors', 'refusals breaking the contract', 'p50 ok ms', 'p99 ok ms'], rows);
}

async function algorithmInForce(sluice: Proc): Promise<string> {
  return (await routeState(String(sluice.ready['admin']))).algorithm;
}

// ---------------------------------------------------------------------------
// 3. overload goodput

async function overload(ctx: BenchContext, sluice: Proc, upstream: Proc): Promise<ScenarioOutput> {
  const factors = [2, 5, 10];
  const levelMs = ctx.quick ? 3_000 : 12_000;
  const skip = ctx.quick ? 1 : 3;
  const upUrl = urlOf(upstream);
  const levels: { factor: number; run: Run; goodput: number; upstreamRate: number; offset: number }[] = [];
  let offset = 0;
  for (const f of factors) {
    ctx.log(`3. overload: ${f}x capacity (${f * CAPACITY} req/s, 30% interactive, 70% batch) for ${levelMs / 1000} s`);
    const before = (await getJson<{ stats: { served: number } }>(`${upUrl}/_control`)).stats.served;
    const started = Date.now();
    const run = await tracedRun(ctx, sluice, upstream, { durationMs: levelMs, streams: streams(0.3 * f * CAPACITY, 0.7 * f * CAPACITY) });
    const served = (await getJson<{ stats: { served: number } }>(`${upUrl}/_control`)).stats.served - before;
    const okRate = steadyRate(run.result, 'interactive', 'ok', skip) + steadyRate(run.result, 'batch', 'ok', skip);
    levels.push({ factor: f, run, goodput: okRate / CAPACITY, upstreamRate: served / ((Date.now() - started) / 1000), offset });
    offset += run.result.elapsedMs / 1000 + 1;
    await new Promise((r) => setTimeout(r, 1_000)); // queues drain between levels
  }
  const rssAll = levels.flatMap((l) => l.run.trace.map((s) => s.rssMb));
  const ten = levels[levels.length - 1]!.run.trace.filter((s) => s.t >= 0 && s.t <= levelMs / 1000);
  const quarter = Math.max(1, Math.floor(ten.length / 4));
  const rssEarly = median(ten.slice(0, quarter).map((s) => s.rssMb));
  const rssLate = median(ten.slice(-quarter).map((s) => s.rssMb));
  const rssGrowthPct = ((rssLate - rssEarly) / rssEarly) * 100;

  const chart = writeChart(
    ctx,
    'overload',
    lineChart({
      title: `Overload 2x / 5x / 10x of ${CAPACITY} req/s: limit, in-flight, RSS and interactive p99`,
      xLabel: 'seconds (levels back to back)',
      leftLabel: 'requests / MB',
      rightLabel: 'interactive p99 ms',
      series: [
        { name: 'limit', points: levels.flatMap((l) => traceSeries(l.run.trace, (s) => s.limit, l.offset)) },
        { name: 'in flight', points: levels.flatMap((l) => traceSeries(l.run.trace, (s) => s.inflight, l.offset)) },
        { name: 'upstream queue', points: levels.flatMap((l) => traceSeries(l.run.trace, (s) => s.upstreamQueued, l.offset)) },
        { name: 'sluice RSS MB', points: levels.flatMap((l) => traceSeries(l.run.trace, (s) => s.rssMb, l.offset)) },
        { name: 'interactive p99', axis: 'right', points: levels.flatMap((l) => secondsSeries(l.run.result, 'interactive', 'p99', l.offset)) },
      ],
      markers: levels.map((l) => ({ x: l.offset, label: `${l.factor}x` })),
    }),
  );

  const rows = levels.map((l) => {
    const i = l.run.result.streams['interactive']!;
    const b = l.run.result.streams['batch']!;
    const rss = l.run.trace.map((s) => s.rssMb);
    return [
      `${l.factor}x`,
      l.factor * CAPACITY,
      `**${fmt(l.goodput * 100)}%**`,
      fmt(l.upstreamRate, 0),
      `${fmt(i.latencyOk.p50)} / ${fmt(i.latencyOk.p99)}`,
      `${fmt(b.latencyOk.p50)} / ${fmt(b.latencyOk.p99)}`,
      `${fmt(Math.min(...rss), 0)}-${fmt(Math.max(...rss), 0)}`,
      `${fmt(median(l.run.trace.map((s) => s.limit)), 0)}`,
      cpuCell(l.run),
    ];
  });
  const worst = Math.min(...levels.map((l) => l.goodput));
  return {
    id: 'overload',
    title: '3. Overload goodput',
    markdown: [
      `Capacity-modelled upstream: ${WORKERS} workers x ${SERVICE_MS} ms = ${CAPACITY} req/s. Offered open loop at 2x, 5x, 10x for ${levelMs / 1000} s each (30% interactive, 70% batch with \`x-priority: batch\`); goodput = 200s per second over the steady part (from second ${skip}) / capacity.`,
      '',
      table(['offered', 'req/s', 'goodput', 'upstream served/s', 'interactive p50 / p99 ms', 'batch p50 / p99 ms', 'sluice RSS MB', 'median limit', CPU_HEADER], rows),
      '',
      ...levels.flatMap((l) => [`Refusals at ${l.factor}x:`, '', refusedTable(l.run.result), '']),
      `- RSS during 10x: first quarter median ${fmt(rssEarly)} MB, last quarter ${fmt(rssLate)} MB (${fmt(rssGrowthPct)}%); whole scenario ${fmt(Math.min(...rssAll), 0)}-${fmt(Math.max(...rssAll), 0)} MB`,
      '',
      `![overload](${chart})`,
    ].join('\n'),
    json: {
      capacity: CAPACITY,
      levels: levels.map((l) => ({ factor: l.factor, goodput: l.goodput, upstreamRate: l.upstreamRate, result: l.run.result, trace: l.run.trace })),
      rssEarly,
      rssLate,
    },
    targets: [
      {
        target: 'goodput >= 95% of capacity at 2x/5x/10x',
        measured: levels.map((l) => `${l.factor}x ${fmt(l.goodput * 100)}%`).join(', '),
        met: ctx.quick ? null : worst >= 0.95,
      },
      {
        target: 'RSS flat under 10x overload',
        measured: `${fmt(rssEarly)} -> ${fmt(rssLate)} MB (${fmt(rssGrowthPct)}%) over the 10x level`,
        met: ctx.quick ? null : rssGrowthPct < 10,
      },
    ],
  };
}

// ---------------------------------------------------------------------------
// 4. batch flood

async function batchFlood(ctx: BenchContext, sluice: Proc, upstream: Proc): Promise<ScenarioOutput> {
  const baseMs = ctx.quick ? 3_000 : 10_000;
  const floodMs = ctx.quick ? 3_000 : 12_000;
  ctx.log(`4. batch flood: interactive ${0.3 * CAPACITY} req/s alone for ${baseMs / 1000} s, then with batch at ${10 * CAPACITY} req/s for ${floodMs / 1000} s`);
  const base = await tracedRun(ctx, sluice, upstream, { durationMs: baseMs, streams: streams(0.3 * CAPACITY, 0) });
  const flood = await tracedRun(ctx, sluice, upstream, { durationMs: floodMs, streams: streams(0.3 * CAPACITY, 10 * CAPACITY) });
  const bi = base.result.streams['interactive']!;
  const fi = flood.result.streams['interactive']!;
  const fb = flood.result.streams['batch']!;
  const success = fi.ok / Math.max(1, fi.offered);
  const p99Ratio = (fi.latencyOk.p99 ?? Number.NaN) / (bi.latencyOk.p99 ?? Number.NaN);
  const off = base.result.elapsedMs / 1000 + 0.5;
  const chart = writeChart(
    ctx,
    'batch-flood',
    lineChart({
      title: `Batch flood: interactive ${0.3 * CAPACITY} req/s, batch ${10 * CAPACITY} req/s from the marker`,
      xLabel: 'seconds',
      leftLabel: 'requests',
      rightLabel: 'interactive p99 ms',
      series: [
        { name: 'limit', points: [...traceSeries(base.trace, (s) => s.limit), ...traceSeries(flood.trace, (s) => s.limit, off)] },
        { name: 'interactive in flight', points: [...traceSeries(base.trace, (s) => s.lanes['interactive']?.inflight ?? 0), ...traceSeries(flood.trace, (s) => s.lanes['interactive']?.inflight ?? 0, off)] },
        { name: 'batch in flight', points: [...traceSeries(base.trace, (s) => s.lanes['batch']?.inflight ?? 0), ...traceSeries(flood.trace, (s) => s.lanes['batch']?.inflight ?? 0, off)] },
        { name: 'interactive p99', axis: 'right', points: [...secondsSeries(base.result, 'interactive', 'p99'), ...secondsSeries(flood.result, 'interactive', 'p99', off)] },
      ],
      markers: [{ x: off, label: 'batch flood starts' }],
    }),
  );
  return {
    id: 'batch-flood',
    title: '4. Batch flood',
    markdown: [
      `Same upstream (${CAPACITY} req/s). Interactive at 0.3x capacity alone for ${baseMs / 1000} s (unloaded baseline), then with batch flooding at 10x for ${floodMs / 1000} s.`,
      '',
      table(
        ['phase', 'interactive offered', 'interactive ok', 'success', 'p50 ms', 'p99 ms', 'p99.9 ms', 'batch ok/s', CPU_HEADER],
        [
          ['unloaded', bi.offered, bi.ok, `${fmt((bi.ok / Math.max(1, bi.offered)) * 100, 2)}%`, fmt(bi.latencyOk.p50), fmt(bi.latencyOk.p99), fmt(bi.latencyOk.p999), '-', cpuCell(base)],
          ['batch flood', fi.offered, fi.ok, `**${fmt(success * 100, 2)}%**`, fmt(fi.latencyOk.p50), `**${fmt(fi.latencyOk.p99)}**`, fmt(fi.latencyOk.p999), fmt(fb.ok / (floodMs / 1000), 0), cpuCell(flood)],
        ],
      ),
      '',
      `- interactive p99 under the flood / unloaded: **${fmt(p99Ratio, 2)}x**`,
      '',
      refusedTable(flood.result),
      '',
      `![batch flood](${chart})`,
    ].join('\n'),
    json: { baseline: base, flood, interactiveSuccess: success, p99Ratio },
    targets: [
      {
        target: 'batch flood: interactive success rate (no number set by the issue; reported)',
        measured: `${fmt(success * 100, 2)}%, p99 ${fmt(fi.latencyOk.p99)} ms vs ${fmt(bi.latencyOk.p99)} ms unloaded (${fmt(p99Ratio, 2)}x)`,
        met: null,
      },
    ],
  };
}

// ---------------------------------------------------------------------------
// 5. capacity change

async function capacityChange(ctx: BenchContext, sluice: Proc, upstream: Proc): Promise<ScenarioOutput> {
  const phaseS = ctx.quick ? 3 : 20;
  const upUrl = urlOf(upstream);
  const interactive = 0.3 * CAPACITY;
  const batch = 1.2 * CAPACITY;
  ctx.log(`5. capacity change: ${WORKERS} -> ${WORKERS / 2} workers at ${phaseS} s, back at ${2 * phaseS} s; interactive ${interactive} + batch ${batch} req/s`);
  await postJson(`${upUrl}/_control`, { workers: WORKERS, serviceTimeMs: SERVICE_MS });
  const run = await tracedRun(
    ctx,
    sluice,
    upstream,
    { durationMs: 3 * phaseS * 1000, streams: streams(interactive, batch), phasesMs: [phaseS * 1000, 2 * phaseS * 1000] },
    [
      { s: phaseS, run: () => postJson(`${upUrl}/_control`, { workers: WORKERS / 2 }) },
      { s: 2 * phaseS, run: () => postJson(`${upUrl}/_control`, { workers: WORKERS }) },
    ],
  );
  const limits = run.trace.map((s) => s.limit);
  const constant = limits.every((l) => l === limits[0]);
  const settles = [settleTime(run.trace, 0, phaseS), settleTime(run.trace, phaseS, 2 * phaseS), settleTime(run.trace, 2 * phaseS, 3 * phaseS)];
  const ip = run.result.streams['interactive']!.phases;
  const bp = run.result.streams['batch']!.phases;
  const names = [`full (${WORKERS} workers)`, `halved (${WORKERS / 2} workers)`, `restored (${WORKERS} workers)`];
  const chart = writeChart(
    ctx,
    'capacity-change',
    lineChart({
      title: `Capacity change: ${CAPACITY} -> ${CAPACITY / 2} -> ${CAPACITY} req/s; limit vs in-flight vs latency`,
      xLabel: 'seconds',
      leftLabel: 'requests',
      rightLabel: 'interactive p99 ms',
      series: [
        { name: 'limit', points: traceSeries(run.trace, (s) => s.limit) },
        { name: 'sluice in flight', points: traceSeries(run.trace, (s) => s.inflight) },
        { name: 'upstream workers', dashed: true, points: [[0, WORKERS], [phaseS, WORKERS], [phaseS, WORKERS / 2], [2 * phaseS, WORKERS / 2], [2 * phaseS, WORKERS], [3 * phaseS, WORKERS]] },
        { name: 'upstream queue', points: traceSeries(run.trace, (s) => s.upstreamQueued) },
        { name: 'interactive p99', axis: 'right', points: secondsSeries(run.result, 'interactive', 'p99') },
      ],
      markers: [
        { x: phaseS, label: 'capacity halves' },
        { x: 2 * phaseS, label: 'capacity restored' },
      ],
    }),
  );
  const rows = names.map((name, i) => {
    const st = settles[i]!;
    const a = ip[i]!;
    const b = bp[i]!;
    return [
      name,
      i === 0 ? '-' : constant ? 'n/a (limit constant)' : `${st.reachS === null ? 'never' : `${fmt(st.reachS)} s`} / ${st.settleS === null ? 'did not settle' : `${fmt(st.settleS)} s`}`,
      fmt(st.finalLimit, 0),
      `${a.ok} / ${a.ok + a.refused + a.other}`,
      `${fmt(a.latencyOk.p50)} / **${fmt(a.latencyOk.p99)}**`,
      `${b.ok} / ${b.ok + b.refused + b.other}`,
      fmt(b.latencyOk.p99),
    ];
  });
  return {
    id: 'capacity-change',
    title: '5. Capacity change',
    markdown: [
      `The upstream drops from ${WORKERS} to ${WORKERS / 2} workers at t=${phaseS} s and gets them back at t=${2 * phaseS} s (through its control endpoint, timed from the generator's start). Load throughout: interactive ${interactive} req/s + batch ${batch} req/s (1.5x full capacity). After each change: the time until the limit first comes within max(1, 10%) of its value at the end of the phase (reaches), and until it stays there to the end of the phase (settles).`,
      '',
      table(['phase', 'limit reaches / settles', 'limit at end', 'interactive ok / sent', 'interactive p50 / p99 ms', 'batch ok / sent', 'batch p99 ms'], rows),
      '',
      constant ? `- the limit stayed at ${limits[0]} throughout: algorithm \`${await algorithmInForce(sluice)}\` does not adapt.` : `- limit range over the run: ${Math.min(...limits)}-${Math.max(...limits)}`,
      '',
      `![capacity change](${chart})`,
    ].join('\n'),
    json: { phaseS, run, settles },
    targets: [],
  };
}

export async function controlScenarios(ctx: BenchContext): Promise<{ outputs: ScenarioOutput[]; algorithm: string }> {
  // Unpinned: none of these processes needs a whole core (a few thousand
  // requests per second, mostly refused), and on a machine shared with other
  // work a pinned process cannot move off a busy core. In one pair of runs
  // while other jobs ran, pinning cut goodput at 10x from 91% to 36% and
  // interactive success under the batch flood from 100% to 62%.
  const p: Placement = { proxy: null, loadgen: null, upstream: null };
  const c: BenchContext = { ...ctx, placement: p };
  const upstream = await startCapacityUpstream(p.upstream, WORKERS, SERVICE_MS);
  const procs: Proc[] = [upstream];
  const fresh = async (name: string): Promise<Proc> => {
    const s = await startSluice(p.proxy, writeConfig(c, name, controlPolicy(urlOf(upstream), WORKERS, c.algorithm)));
    procs.push(s);
    return s;
  };
  try {
    // A fresh Sluice per scenario: no limit state carried over from the previous one.
    const s3 = await fresh('overload');
    const algorithm = await algorithmInForce(s3);
    const outputs: ScenarioOutput[] = [await overload(c, s3, upstream)];
    await s3.stop();
    const s4 = await fresh('batch-flood');
    outputs.push(await batchFlood(c, s4, upstream));
    await s4.stop();
    const s5 = await fresh('capacity-change');
    outputs.push(await capacityChange(c, s5, upstream));
    return { outputs, algorithm };
  } finally {
    await Promise.all(procs.map((x) => x.stop()));
  }
}

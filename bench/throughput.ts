/**
 * Scenarios 1 and 2: what Sluice costs per request, against a bare
 * @fastify/http-proxy in front of the same fast upstream, in the same run.
 *
 * Both proxies run at once, pinned to the same core, and take turns (ABBA
 * order across rounds, so a drift in the machine's background load hits both
 * alike). Throughput is measured at saturation: the open-loop generator
 * offers far more than either can take, with a fixed number of requests
 * outstanding. Each proxy's CPU time per answered request is read from /proc
 * as well: it stays meaningful when the generator, not the proxy, is the
 * bottleneck (as it may be for cheap refusals).
 */
import { Agent, request } from 'undici';
import type { LoadResult, LoadSpec } from './loadgen.js';
import { median, spreadPct, steadyRate, sumValues } from './analysis.js';
import {
  admitAllPolicy,
  fmt,
  refuseAllPolicy,
  routeState,
  table,
  writeConfig,
  type BenchContext,
  type ScenarioOutput,
  type TargetRow,
} from './common.js';
import { runLoadgen, startBareProxy, startFastUpstream, startSluice, urlOf, type Proc } from './processes.js';

const SATURATION_RATE = 50_000; // offered req/s: far above what one proxy core can answer
const SATURATION_CONCURRENCY = 64;
/** A proxy below this CPU share during a saturation run was not the bottleneck. */
const SATURATED_CPU_PCT = 85;

interface Measurement {
  readonly target: string;
  readonly round: number;
  /** Answers per second (steady part). */
  readonly rps: number;
  /** Answers of the expected kind (200 forwarded, or 503 refused) over all answers. */
  readonly expectedShare: number;
  readonly proxyCpuPct: number;
  readonly proxyCpuUsPerReq: number;
  readonly loadgenCpuPct: number;
  readonly upstreamCpuPct: number;
  readonly unexpected: Record<string, number>;
}

interface Target {
  readonly name: string;
  readonly proc: Proc;
  readonly url: string;
  /** 'ok' when it forwards, 'refused' when it refuses. */
  readonly expect: 'ok' | 'refused';
}

async function saturate(ctx: BenchContext, t: Target, upstream: Proc, round: number, durationMs: number): Promise<Measurement> {
  const spec: LoadSpec = {
    url: t.url,
    durationMs,
    streams: [{ name: 'load', rate: SATURATION_RATE, path: '/api/items/42?view=full' }],
    connections: SATURATION_CONCURRENCY,
    maxInFlight: SATURATION_CONCURRENCY,
    timeoutMs: 10_000,
  };
  const c0 = t.proc.cpuSeconds();
  const u0 = upstream.cpuSeconds();
  const r = await runLoadgen(spec, ctx.placement.loadgen);
  const wall = r.elapsedMs / 1000;
  const cpu = t.proc.cpuSeconds() - c0;
  const s = r.streams['load']!;
  const refused = sumValues(s.refused);
  const answered = s.ok + refused + sumValues(s.other) + sumValues(s.errors);
  const expected = t.expect === 'ok' ? s.ok : (s.refused['503:queue_full'] ?? 0);
  const unexpected: Record<string, number> = { ...s.other, ...s.errors };
  if (t.expect === 'ok') Object.assign(unexpected, s.refused);
  else if (s.ok > 0) unexpected['200'] = s.ok;
  return {
    target: t.name,
    round,
    rps: steadyRate(r, 'load', 'answered', 1),
    expectedShare: answered > 0 ? expected / answered : 0,
    proxyCpuPct: (cpu / wall) * 100,
    proxyCpuUsPerReq: answered > 0 ? (cpu / answered) * 1e6 : Number.NaN,
    loadgenCpuPct: (r.cpuSeconds / wall) * 100,
    upstreamCpuPct: ((upstream.cpuSeconds() - u0) / wall) * 100,
    unexpected,
  };
}

/** Alternates the two targets for `rounds` rounds (ABBA), after one discarded warm-up run each. */
async function alternate(ctx: BenchContext, a: Target, b: Target, upstream: Proc, rounds: number, durationMs: number, warmupMs: number): Promise<Measurement[]> {
  await saturate(ctx, a, upstream, -1, warmupMs);
  await saturate(ctx, b, upstream, -1, warmupMs);
  const out: Measurement[] = [];
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? [a, b] : [b, a];
    for (const t of order) {
      const m = await saturate(ctx, t, upstream, i + 1, durationMs);
      ctx.log(`  round ${i + 1} ${t.name}: ${Math.round(m.rps)} req/s, proxy CPU ${Math.round(m.proxyCpuPct)}%, ${fmt(m.proxyCpuUsPerReq, 0)} µs/req`);
      out.push(m);
    }
  }
  return out;
}

function measurementTable(ms: readonly Measurement[]): string {
  return table(
    ['round', 'target', 'answers/s', 'expected answers', 'proxy CPU %', 'proxy CPU µs/answer', 'loadgen CPU %', 'upstream CPU %'],
    ms.map((m) => [
      m.round,
      m.target,
      Math.round(m.rps),
      `${fmt(m.expectedShare * 100, 2)}%`,
      fmt(m.proxyCpuPct, 0),
      fmt(m.proxyCpuUsPerReq, 0),
      fmt(m.loadgenCpuPct, 0),
      fmt(m.upstreamCpuPct, 0),
    ]),
  );
}

/** Per-round ratios a/b, pairing the i-th measurement of each. */
function ratios(ms: readonly Measurement[], a: string, b: string, f: (m: Measurement) => number): number[] {
  const as = ms.filter((m) => m.target === a);
  const bs = ms.filter((m) => m.target === b);
  return as.map((m, i) => f(m) / f(bs[i] as Measurement));
}

/**
 * CPU per request with both proxies loaded AT THE SAME TIME, at the same
 * fixed rate, by two generators: whatever else the machine is doing hits
 * both alike, so their ratio is far steadier than that of runs taken one
 * after the other on a shared machine. Returns one ratio a/b per round.
 */
async function pairedCpu(ctx: BenchContext, a: Target, b: Target, rate: number, rounds: number, durationMs: number): Promise<{ a: number[]; b: number[]; ratios: number[] }> {
  const spec = (url: string): LoadSpec => ({
    url,
    durationMs,
    streams: [{ name: 'load', rate, path: '/api/items/42?view=full' }],
    connections: 64,
    maxInFlight: 4096,
    timeoutMs: 10_000,
  });
  const out = { a: [] as number[], b: [] as number[], ratios: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    const a0 = a.proc.cpuSeconds();
    const b0 = b.proc.cpuSeconds();
    const [ra, rb] = await Promise.all([runLoadgen(spec(a.url), ctx.placement.loadgen), runLoadgen(spec(b.url), ctx.placement.loadgen)]);
    const ua = ((a.proc.cpuSeconds() - a0) / Math.max(1, ra.streams['load']!.ok)) * 1e6;
    const ub = ((b.proc.cpuSeconds() - b0) / Math.max(1, rb.streams['load']!.ok)) * 1e6;
    out.a.push(ua);
    out.b.push(ub);
    out.ratios.push(ua / ub);
  }
  return out;
}

interface LatencyRow {
  readonly target: string;
  readonly round: number;
  readonly p50: number | null;
  readonly p99: number | null;
  readonly p999: number | null;
  readonly ok: number;
  readonly offered: number;
}

function latencyRow(target: string, round: number, r: LoadResult): LatencyRow {
  const s = r.streams['load']!;
  return { target, round, p50: s.latencyOk.p50, p99: s.latencyOk.p99, p999: s.latencyOk.p999, ok: s.ok, offered: s.offered };
}

interface Durations {
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly latencyRounds: number;
  readonly latencyMs: number;
  readonly pairedRounds: number;
  readonly pairedMs: number;
}

/** 1. overhead: saturation throughput, then latency at a fixed rate. */
async function overhead(ctx: BenchContext, bareT: Target, sluiceT: Target, upstream: Proc, d: Durations): Promise<ScenarioOutput> {
  const { rounds, durationMs, warmupMs, latencyRounds, latencyMs } = d;
  const p = ctx.placement;
  ctx.log('1. overhead: saturation, bare @fastify/http-proxy vs sluice (admitting everything)');
  const sat = await alternate(ctx, bareT, sluiceT, upstream, rounds, durationMs, warmupMs);
  const bareRps = sat.filter((m) => m.target === 'bare').map((m) => m.rps);
  const sluiceRps = sat.filter((m) => m.target === 'sluice').map((m) => m.rps);
  const tputRatios = ratios(sat, 'sluice', 'bare', (m) => m.rps);
  const cpuRatios = ratios(sat, 'bare', 'sluice', (m) => m.proxyCpuUsPerReq);
  const latencyRate = Math.max(100, Math.round(0.5 * Math.min(median(bareRps), median(sluiceRps))));
  ctx.log(`1. overhead: latency at ${latencyRate} req/s (half the lower saturation throughput)`);
  const lat: LatencyRow[] = [];
  for (let i = 0; i < latencyRounds; i++) {
    for (const t of i % 2 === 0 ? [bareT, sluiceT] : [sluiceT, bareT]) {
      const r = await runLoadgen(
        {
          url: t.url,
          durationMs: latencyMs,
          streams: [{ name: 'load', rate: latencyRate, path: '/api/items/42?view=full' }],
          connections: 256,
          maxInFlight: 4096,
          timeoutMs: 10_000,
        },
        p.loadgen,
      );
      lat.push(latencyRow(t.name, i + 1, r));
    }
  }
  const pairedRate = Math.max(100, Math.round(0.25 * Math.min(median(bareRps), median(sluiceRps))));
  ctx.log(`1. overhead: CPU per request, both proxies at ${pairedRate} req/s at the same time`);
  const paired = await pairedCpu(ctx, sluiceT, bareT, pairedRate, d.pairedRounds, d.pairedMs);
  const pairedRatio = median(paired.ratios);
  const latOf = (target: string, k: 'p50' | 'p99'): number => median(lat.filter((l) => l.target === target).map((l) => l[k] ?? Number.NaN));
  const addedP50 = latOf('sluice', 'p50') - latOf('bare', 'p50');
  const addedP99 = latOf('sluice', 'p99') - latOf('bare', 'p99');
  const tputRatio = median(tputRatios);
  const sluiceSaturated = sat.filter((m) => m.target === 'sluice').every((m) => m.proxyCpuPct >= SATURATED_CPU_PCT);

  const overheadTargets: TargetRow[] = [
    {
      target: 'admitted-path throughput >= 1.0x bare @fastify/http-proxy',
      measured: sluiceSaturated
        ? `${fmt(tputRatio, 3)}x (saturation, median of ${tputRatios.length} alternating rounds; CPU per request at equal load: sluice/bare ${fmt(pairedRatio, 3)})`
        : `${fmt(1 / pairedRatio, 3)}x (from CPU per request at equal load, both at once: sluice/bare ${fmt(pairedRatio, 3)}; the saturation runs, ${fmt(tputRatio, 3)}x, were not CPU-bound on the proxy)`,
      met: ctx.quick ? null : (sluiceSaturated ? tputRatio : 1 / pairedRatio) >= 1.0,
    },
  ];
  return {
    id: 'overhead',
    title: '1. Overhead: sluice admitting everything vs bare @fastify/http-proxy',
    markdown: [
      `Fast upstream (answers at once, 11-byte JSON). Saturation: open loop offering ${SATURATION_RATE} req/s with ${SATURATION_CONCURRENCY} requests outstanding, ${durationMs / 1000} s per run (first second dropped as warm-up), ${rounds} round(s), ABBA order, after a ${warmupMs / 1000} s warm-up run each.`,
      '',
      measurementTable(sat),
      '',
      `- throughput: bare median ${Math.round(median(bareRps))} req/s (spread ${fmt(spreadPct(bareRps), 0)}%), sluice median ${Math.round(median(sluiceRps))} req/s (spread ${fmt(spreadPct(sluiceRps), 0)}%)`,
      `- **sluice / bare throughput: ${fmt(tputRatio, 3)}x** (per round: ${tputRatios.map((x) => fmt(x, 3)).join(', ')})`,
      `- proxy CPU per request, bare / sluice: ${fmt(median(cpuRatios), 3)} (per round: ${cpuRatios.map((x) => fmt(x, 3)).join(', ')}; > 1 means sluice is cheaper)`,
      sluiceSaturated ? '- sluice was CPU-bound in every round: the throughput numbers are its own.' : `- note: sluice was below ${SATURATED_CPU_PCT}% CPU in some round: the generator or upstream core limited that round.`,
      '',
      `Latency at ${latencyRate} req/s open loop (half the lower saturation throughput), ${latencyMs / 1000} s per run, from the intended send time (ms):`,
      '',
      table(
        ['round', 'target', 'p50', 'p99', 'p99.9', 'ok / offered'],
        lat.map((l) => [l.round, l.target, fmt(l.p50, 2), fmt(l.p99, 2), fmt(l.p999, 2), `${l.ok} / ${l.offered}`]),
      ),
      '',
      `- **added by sluice: p50 ${fmt(addedP50, 2)} ms, p99 ${fmt(addedP99, 2)} ms** (medians over rounds)`,
      '',
      `CPU per request with both proxies loaded at the same time, ${pairedRate} req/s each, ${d.pairedMs / 1000} s per round (the steadiest comparison on a shared machine: background load hits both alike):`,
      '',
      table(
        ['round', 'sluice µs/req', 'bare µs/req', 'sluice / bare'],
        paired.ratios.map((r, i) => [i + 1, fmt(paired.a[i], 0), fmt(paired.b[i], 0), fmt(r, 3)]),
      ),
      '',
      `- **sluice / bare CPU per request: ${fmt(pairedRatio, 3)}** (median; spread ${fmt(spreadPct(paired.ratios), 0)}%): sluice needs ${fmt((pairedRatio - 1) * 100, 1)}% more CPU per forwarded request, so where the proxy's core is the bottleneck its throughput is about ${fmt(1 / pairedRatio, 2)}x the bare proxy's`,
    ].join('\n'),
    json: { saturation: sat, latencyRate, latency: lat, pairedRate, paired, pairedRatio, throughputRatio: tputRatio, cpuRatio: median(cpuRatios), addedP50Ms: addedP50, addedP99Ms: addedP99 },
    targets: overheadTargets,
  };
}

export async function throughputScenarios(ctx: BenchContext, which: { overhead: boolean; refusal: boolean }): Promise<ScenarioOutput[]> {
  const rounds = ctx.quick ? 1 : 3;
  const durationMs = ctx.quick ? 2_000 : 4_000;
  const warmupMs = ctx.quick ? 1_000 : 2_000;
  const latencyRounds = ctx.quick ? 1 : 2;
  const latencyMs = ctx.quick ? 2_000 : 4_000;
  const pairedRounds = ctx.quick ? 1 : 5;
  const pairedMs = ctx.quick ? 2_000 : 3_000;
  const p = ctx.placement;

  const upstream = await startFastUpstream(p.upstream);
  const procs: Proc[] = [upstream];
  const holdAgent = new Agent({ headersTimeout: 0, bodyTimeout: 0 });
  const hold = new AbortController();
  try {
    const up = urlOf(upstream);
    const bare = await startBareProxy(p.proxy, up);
    procs.push(bare);
    const sluice = await startSluice(p.proxy, writeConfig(ctx, 'overhead', admitAllPolicy(up)));
    procs.push(sluice);
    const bareT: Target = { name: 'bare', proc: bare, url: urlOf(bare), expect: 'ok' };
    const sluiceT: Target = { name: 'sluice', proc: sluice, url: String(sluice.ready['proxy']), expect: 'ok' };

    const outputs: ScenarioOutput[] = [];
    if (which.overhead) outputs.push(await overhead(ctx, bareT, sluiceT, upstream, { rounds, durationMs, warmupMs, latencyRounds, latencyMs, pairedRounds, pairedMs }));
    if (!which.refusal) return outputs;

    // ---- 2. refusal cost: sluice answering 503 queue_full vs bare forwarding.
    ctx.log('2. refusal cost: sluice refusing (limit reached) vs bare forwarding');
    await sluice.stop();
    const refusing = await startSluice(p.proxy, writeConfig(ctx, 'refusal', refuseAllPolicy(up)));
    procs.push(refusing);
    const refuseUrl = String(refusing.ready['proxy']);
    // One request that the upstream never answers holds the route's only slot.
    const held = request(`${refuseUrl}/hang`, { dispatcher: holdAgent, signal: hold.signal }).catch(() => undefined);
    const deadline = Date.now() + 5_000;
    while ((await routeState(String(refusing.ready['admin']))).inflight < 1) {
      if (Date.now() > deadline) throw new Error('refusal scenario: the /hang request never took the slot');
      await new Promise((r) => setTimeout(r, 20));
    }
    const refT: Target = { name: 'sluice-refusing', proc: refusing, url: refuseUrl, expect: 'refused' };
    const ref = await alternate(ctx, bareT, refT, upstream, rounds, durationMs, warmupMs);
    hold.abort();
    await held;
    const refRatios = ratios(ref, 'sluice-refusing', 'bare', (m) => m.rps);
    const refCpuRatios = ratios(ref, 'bare', 'sluice-refusing', (m) => m.proxyCpuUsPerReq);
    const refRatio = median(refRatios);
    const refCpuRatio = median(refCpuRatios);
    const refSaturated = ref.filter((m) => m.target === 'sluice-refusing').every((m) => m.proxyCpuPct >= SATURATED_CPU_PCT);
    const judged = refSaturated ? refRatio : refCpuRatio;
    outputs.push({
      id: 'refusal',
      title: '2. Refusal cost: sluice answering 503 (limit reached) vs bare forwarding',
      markdown: [
        'A route with limit 1 held by one request the upstream never answers, and no queue: every other request is refused at once with 503 `queue_full` (Retry-After, JSON body). Same saturation load as in 1, alternating with the bare proxy forwarding to the fast upstream.',
        '',
        measurementTable(ref),
        '',
        `- **refusals/s over bare forwards/s: ${fmt(refRatio, 2)}x** (per round: ${refRatios.map((x) => fmt(x, 2)).join(', ')})`,
        `- CPU per answer, bare forward / sluice refusal: **${fmt(refCpuRatio, 2)}x** (per round: ${refCpuRatios.map((x) => fmt(x, 2)).join(', ')})`,
        refSaturated
          ? '- sluice was CPU-bound while refusing: the throughput ratio is its own.'
          : `- sluice stayed below ${SATURATED_CPU_PCT}% CPU while refusing: the load generator (one Node process, see its CPU %) could not send refusable requests fast enough, so the throughput ratio understates it; the CPU-per-answer ratio is the refusal path's capacity relative to forwarding, and is what the target is judged on.`,
      ].join('\n'),
      json: { rounds: ref, throughputRatio: refRatio, cpuRatio: refCpuRatio, sluiceCpuBound: refSaturated },
      targets: [
        {
          target: 'refusal throughput >= 5x bare forwarding',
          measured: `${fmt(judged, 2)}x ${refSaturated ? '(throughput ratio)' : `(CPU-normalised; raw throughput ratio ${fmt(refRatio, 2)}x, generator-bound)`}`,
          met: ctx.quick ? null : judged >= 5,
        },
      ],
    });
    return outputs;
  } finally {
    hold.abort();
    await Promise.all(procs.map((x) => x.stop()));
    await holdAgent.close();
  }
}

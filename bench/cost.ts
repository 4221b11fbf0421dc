/**
 * Scenario 0, cost: CPU time of the proxy process per request, measured with
 * wrk (a C load generator: it can saturate a Node proxy where one Node
 * generator cannot, so the cheap refusal path is measured at saturation too).
 *
 * The proxies run at once, each alone on the proxy core when pinned (only
 * the one under load does any work): bare @fastify/http-proxy forwarding,
 * Sluice admitting everything (forwarding), Sluice refusing everything (limit
 * 1 held by a request the upstream never answers, no queue: 503 queue_full),
 * and with --baseline the same two for another build (before/after in one
 * run).
 * wrk and the fast upstream share the other core. Rounds rotate the order
 * (ABC, CBA, ...) after a discarded warm-up run each; per round the ratios
 * pair that round's runs, so drift in the machine's load hits all alike.
 *
 * Then the unloaded latency: one connection per proxy and one request at a
 * time, bare and Sluice admitting interleaved in shuffled order within each
 * run (procs/sequential.ts), so the machine's noise hits both alike: the p99
 * Sluice adds.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { median, spreadPct } from './analysis.js';
import { admitAllPolicy, fmt, refuseAllPolicy, rotatingRounds, routeState, table, withAccessLog, writeConfig, type BenchContext, type ScenarioOutput } from './common.js';
import { ROOT, startBareProxy, startFastUpstream, startSluice, urlOf, type Proc } from './processes.js';

const PATH = '/api/items/42?view=full';
const CONNECTIONS = 64;

/** What bench/wrk-report.lua prints. */
export interface WrkSummary {
  readonly requests: number;
  readonly durationUs: number;
  readonly connectErrors: number;
  readonly readErrors: number;
  readonly writeErrors: number;
  /** Answers outside 2xx/3xx. */
  readonly status: number;
  readonly timeouts: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly maxUs: number;
}

/** wrk for `durationS` with `connections` (one thread), pinned to `cpu`; `headers` are added to every request. */
export function wrk(url: string, connections: number, durationS: number, cpu: number | null, headers: readonly string[] = []): Promise<WrkSummary> {
  const args = ['-t1', `-c${connections}`, `-d${durationS}s`, '--timeout', '10s', ...headers.flatMap((h) => ['-H', h]), '-s', `${ROOT}bench/wrk-report.lua`, url];
  const [cmd, argv] = cpu === null ? ['wrk', args] : ['taskset', ['-c', String(cpu), 'wrk', ...args]];
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { encoding: 'utf8', timeout: (durationS + 30) * 1000 }, (err, stdout, stderr) => {
      const line = stdout.split('\n').find((l) => l.startsWith('{"requests"'));
      if (err !== null || line === undefined) {
        reject(new Error(`wrk failed (is it installed? apt-get install wrk): ${err?.message ?? ''} ${stderr.slice(-500)}`));
        return;
      }
      resolve(JSON.parse(line) as WrkSummary);
    });
  });
}

interface Target {
  /** bare, sluice, sluice-refusing, baseline, baseline-refusing */
  readonly name: string;
  readonly proc: Proc;
  readonly url: string;
  /** Forwarded 200s expected, or refusals (non-2xx) only. */
  readonly expect: 'ok' | 'refused';
}

interface CostRow {
  readonly round: number;
  readonly target: string;
  readonly rps: number;
  readonly cpuPct: number;
  readonly cpuUsPerReq: number;
  /** Answers of the expected kind / all answers. */
  readonly expectedShare: number;
  readonly errors: number;
}

async function measure(ctx: BenchContext, t: Target, round: number, durationS: number): Promise<CostRow> {
  const c0 = t.proc.cpuSeconds();
  const w = await wrk(`${t.url}${PATH}`, CONNECTIONS, durationS, ctx.placement.loadgen);
  const cpu = t.proc.cpuSeconds() - c0;
  const wall = w.durationUs / 1e6;
  const expected = t.expect === 'ok' ? w.requests - w.status : w.status;
  return {
    round,
    target: t.name,
    rps: w.requests / wall,
    cpuPct: (cpu / wall) * 100,
    cpuUsPerReq: w.requests > 0 ? (cpu / w.requests) * 1e6 : Number.NaN,
    expectedShare: w.requests > 0 ? expected / w.requests : 0,
    errors: w.connectErrors + w.readErrors + w.writeErrors + w.timeouts,
  };
}

/** Per round: the ratio f(a) / f(b) of that round's two runs. */
function perRound(rows: readonly CostRow[], a: string, b: string, f: (r: CostRow) => number): number[] {
  const out: number[] = [];
  for (const r of rows) {
    if (r.target !== a) continue;
    const other = rows.find((x) => x.round === r.round && x.target === b);
    if (other !== undefined) out.push(f(r) / f(other));
  }
  return out;
}

interface LatencyRow {
  readonly round: number;
  readonly target: string;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const SEQUENTIAL = fileURLToPath(new URL('./procs/sequential.js', import.meta.url));

/** One run of procs/sequential.ts: the targets interleaved, one request at a time. */
function sequential(urls: readonly string[], durationMs: number, cpu: number | null): Promise<Record<string, { requests: number; p50Ms: number; p99Ms: number }>> {
  const args = [SEQUENTIAL, JSON.stringify({ urls, durationMs })];
  const [cmd, argv] = cpu === null ? [process.execPath, args] : ['taskset', ['-c', String(cpu), process.execPath, ...args]];
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { encoding: 'utf8', timeout: durationMs + 60_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`sequential client failed: ${err.message} ${stderr.slice(-500)}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '{}'));
    });
  });
}

async function unloaded(ctx: BenchContext, targets: readonly Target[], rounds: number, durationS: number): Promise<LatencyRow[]> {
  const rows: LatencyRow[] = [];
  for (let i = 0; i < rounds; i++) {
    const r = await sequential(targets.map((t) => `${t.url}${PATH}`), durationS * 1000, ctx.placement.loadgen);
    for (const t of targets) {
      const x = r[`${t.url}${PATH}`]!;
      rows.push({ round: i + 1, target: t.name, requests: x.requests, p50Ms: x.p50Ms, p99Ms: x.p99Ms });
      ctx.log(`  unloaded round ${i + 1} ${t.name}: p50 ${fmt(x.p50Ms, 3)} ms, p99 ${fmt(x.p99Ms, 3)} ms`);
    }
  }
  return rows;
}

/** Holds the refusing route's only slot with a request the upstream never answers. */
export async function holdSlot(refusing: Proc, agent: Agent, signal: AbortSignal): Promise<{ readonly held: Promise<unknown> }> {
  const held = request(`${urlOf(refusing)}/hang`, { dispatcher: agent, signal }).catch(() => undefined);
  const deadline = Date.now() + 5_000;
  while ((await routeState(String(refusing.ready['admin']))).inflight < 1) {
    if (Date.now() > deadline) throw new Error('cost scenario: the /hang request never took the slot');
    await new Promise((r) => setTimeout(r, 20));
  }
  // Wrapped: an async function returning the promise itself would wait for it.
  return { held };
}

/** Per round: `name`'s percentile minus bare's, from the same interleaved run. */
function perRoundLat(lat: readonly LatencyRow[], name: string, k: 'p50Ms' | 'p99Ms'): number[] {
  const out: number[] = [];
  for (const s of lat) {
    const b = s.target === name ? lat.find((x) => x.round === s.round && x.target === 'bare') : undefined;
    if (b !== undefined) out.push(s[k] - b[k]);
  }
  return out;
}

/** One Sluice build's numbers against bare, from the same rounds. */
function variantSummary(rows: readonly CostRow[], lat: readonly LatencyRow[], name: string) {
  const us = (t: string) => median(rows.filter((r) => r.target === t).map((r) => r.cpuUsPerReq));
  return {
    name,
    forwardUs: us(name),
    refusalUs: us(`${name}-refusing`),
    refusalX: perRound(rows, 'bare', `${name}-refusing`, (r) => r.cpuUsPerReq),
    admittedX: perRound(rows, 'bare', name, (r) => r.cpuUsPerReq),
    tputX: perRound(rows, name, 'bare', (r) => r.rps),
    addedP50: perRoundLat(lat, name, 'p50Ms'),
    addedP99: perRoundLat(lat, name, 'p99Ms'),
  };
}

function summaryLines(v: ReturnType<typeof variantSummary>, bareUs: number): string[] {
  const x = (xs: number[], d: number) => `${fmt(median(xs), d)}x (per round: ${xs.map((y) => fmt(y, d)).join(', ')})`;
  return [
    `- **${v.name}**: CPU µs per answer (medians): bare forward ${fmt(bareUs, 1)}, ${v.name} forward ${fmt(v.forwardUs, 1)}, ${v.name} refusal ${fmt(v.refusalUs, 1)}`,
    `  - refusal cost: a bare forward costs **${x(v.refusalX, 2)}** a refusal`,
    `  - admitted: bare / ${v.name} CPU per forward **${x(v.admittedX, 3)}** (> 1: cheaper than bare); throughput ${v.name} / bare ${fmt(median(v.tputX), 3)}x`,
    `  - added unloaded latency: p50 ${fmt(median(v.addedP50), 3)} ms, **p99 ${fmt(median(v.addedP99), 3)} ms** (median of the per-round differences; p99 per round: ${v.addedP99.map((y) => fmt(y, 3)).join(', ')})`,
  ];
}

function report(ctx: BenchContext, rows: readonly CostRow[], lat: readonly LatencyRow[], names: readonly string[], durationS: number, latencyS: number): ScenarioOutput {
  const bareUs = median(rows.filter((r) => r.target === 'bare').map((r) => r.cpuUsPerReq));
  const vs = names.map((n) => variantSummary(rows, lat, n));
  const v = vs[0]!;
  const base = vs[1];
  const rounds = Math.max(0, ...rows.map((r) => r.round));
  const versus = base === undefined ? [] : [
    `- ${v.name} / baseline CPU per answer: forward ${fmt(median(perRound(rows, v.name, base.name, (r) => r.cpuUsPerReq)), 3)}, refusal ${fmt(median(perRound(rows, `${v.name}-refusing`, `${base.name}-refusing`, (r) => r.cpuUsPerReq)), 3)} (< 1: this build is cheaper; baseline: \`${ctx.baseline}\`)`,
  ];
  return {
    id: 'cost',
    title: '0. Cost per request (wrk): bare forward, Sluice forwarding, Sluice refusing',
    markdown: [
      `wrk, ${CONNECTIONS} connections, one thread, ${durationS} s per run, ${rounds} round(s) in rotating order after a warm-up run each; fast upstream (11-byte JSON). CPU = user + system time of the proxy process (/proc) over the run, divided by the answers wrk counted. Refusing: limit 1 held by a request the upstream never answers, no queue (503 queue_full).`,
      '',
      table(
        ['round', 'target', 'answers/s', 'proxy CPU %', 'proxy CPU µs/answer', 'expected answers', 'socket errors'],
        rows.map((r) => [r.round, r.target, Math.round(r.rps), fmt(r.cpuPct, 0), fmt(r.cpuUsPerReq, 1), `${fmt(r.expectedShare * 100, 2)}%`, r.errors]),
      ),
      '',
      `Unloaded latency: one connection per proxy, one request at a time, all proxies interleaved in shuffled order (procs/sequential.ts), ${latencyS} s per round, from the send to the last byte (ms):`,
      '',
      table(
        ['round', 'target', 'requests', 'p50', 'p99'],
        lat.map((l) => [l.round, l.target, l.requests, fmt(l.p50Ms, 3), fmt(l.p99Ms, 3)]),
      ),
      '',
      ...vs.flatMap((x) => summaryLines(x, bareUs)),
      ...versus,
    ].join('\n'),
    json: { rows, latency: lat, variants: vs },
    targets: [
      {
        target: 'refusal >= 5x cheaper than a bare forward (CPU per request; stretch 10x)',
        measured: `${fmt(median(v.refusalX), 2)}x (${fmt(v.refusalUs, 1)} vs ${fmt(bareUs, 1)} µs)${base ? `; baseline ${fmt(median(base.refusalX), 2)}x` : ''}`,
        met: ctx.quick ? null : median(v.refusalX) >= 5,
      },
      {
        target: 'admitted >= 1.0x bare @fastify/http-proxy (CPU per forward)',
        measured: `${fmt(median(v.admittedX), 3)}x (${fmt(v.forwardUs, 1)} vs ${fmt(bareUs, 1)} µs)${base ? `; baseline ${fmt(median(base.admittedX), 3)}x` : ''}`,
        met: ctx.quick ? null : median(v.admittedX) >= 1.0,
      },
      {
        target: 'unloaded added p99 (one connection, sequential) <= 0.3 ms',
        measured: `${fmt(median(v.addedP99), 3)} ms (p50 ${fmt(median(v.addedP50), 3)} ms)${base ? `; baseline ${fmt(median(base.addedP99), 3)} ms` : ''}`,
        met: ctx.quick ? null : median(v.addedP99) <= 0.3,
      },
    ],
  };
}

/** A Sluice build admitting everything and one refusing everything (its only slot held). */
async function startVariant(ctx: BenchContext, name: string, cli: string | undefined, up: string, procs: Proc[], agent: Agent, signal: AbortSignal) {
  const p = ctx.placement;
  const policy = (yaml: string) => (ctx.accessLog && cli === undefined ? withAccessLog(yaml) : yaml);
  const admitting = await startSluice(p.proxy, writeConfig(ctx, `cost-${name}-admit`, policy(admitAllPolicy(up))), cli);
  procs.push(admitting);
  const refusing = await startSluice(p.proxy, writeConfig(ctx, `cost-${name}-refuse`, policy(refuseAllPolicy(up))), cli);
  procs.push(refusing);
  const { held } = await holdSlot(refusing, agent, signal);
  const targets: Target[] = [
    { name, proc: admitting, url: urlOf(admitting), expect: 'ok' },
    { name: `${name}-refusing`, proc: refusing, url: urlOf(refusing), expect: 'refused' },
  ];
  return { targets, held };
}

export async function costScenario(ctx: BenchContext): Promise<ScenarioOutput> {
  const rounds = ctx.quick ? 1 : 5;
  const durationS = ctx.quick ? 1 : 4;
  const warmupS = ctx.quick ? 1 : 2;
  const latencyRounds = ctx.quick ? 1 : 5;
  const latencyS = ctx.quick ? 1 : 4;
  const p = ctx.placement;
  const procs: Proc[] = [];
  const agent = new Agent({ headersTimeout: 0, bodyTimeout: 0 });
  const hold = new AbortController();
  try {
    const upstream = await startFastUpstream(p.upstream);
    procs.push(upstream);
    const up = urlOf(upstream);
    const bare = await startBareProxy(p.proxy, up);
    procs.push(bare);
    const variants = [await startVariant(ctx, 'sluice', undefined, up, procs, agent, hold.signal)];
    if (ctx.baseline !== null) variants.push(await startVariant(ctx, 'baseline', ctx.baseline, up, procs, agent, hold.signal));
    const targets: Target[] = [{ name: 'bare', proc: bare, url: urlOf(bare), expect: 'ok' }, ...variants.flatMap((v) => v.targets)];
    ctx.log(`0. cost: CPU per request with wrk (${targets.map((t) => t.name).join(', ')})`);
    for (const t of targets) await measure(ctx, t, 0, warmupS);
    const rows = await rotatingRounds(rounds, targets, async (t, round) => {
      const r = await measure(ctx, t, round, durationS);
      ctx.log(`  round ${round} ${t.name}: ${Math.round(r.rps)} answers/s, proxy CPU ${Math.round(r.cpuPct)}%, ${fmt(r.cpuUsPerReq, 1)} µs/answer`);
      return r;
    });
    hold.abort();
    await Promise.all(variants.map((v) => v.held));
    const forwarding = targets.filter((t) => t.expect === 'ok');
    const lat = await unloaded(ctx, forwarding, latencyRounds, latencyS);
    return report(ctx, rows, lat, forwarding.slice(1).map((t) => t.name), durationS, latencyS);
  } finally {
    hold.abort();
    await Promise.all(procs.map((x) => x.stop()));
    await agent.close();
  }
}

/**
 * Scenario 7 (`--only quota`): what the cluster-wide client quota in Redis
 * (clients.rate.store) costs, against a real redis-server on loopback.
 *
 * a. In process: the shared store (core/rate/rate-store.ts over
 *    ratestore/redis.ts) asked for distinct clients (never over their limit,
 *    so every check is a round trip): CPU time per check with 64 checks in
 *    flight (pipelined: node-redis writes a tick's commands together), and
 *    the latency of a check, one at a time (the loopback round trip) and
 *    with 64 in flight. The local bucket is the baseline.
 * b. Through the proxy: two Sluice processes that differ only in where the
 *    rate lives (local buckets vs Redis), each in front of its own fast
 *    upstream, loaded at the same time at the same fixed rate by 16 clients
 *    (so the machine's background load hits both alike): CPU per answer
 *    and p50/p99 latency of each, per round.
 *
 * Targets (issue 14): the Redis quota check adds <= 30 µs CPU per request
 * (pipelined) and <= 1 ms p99 latency on loopback.
 */
import { median } from './analysis.js';
import { fmt, table, writeConfig, type BenchContext, type ScenarioOutput, type TargetRow } from './common.js';
import { runLoadgen, startFastUpstream, startSluice, urlOf, type Proc } from './processes.js';
import { startRedis, type TestRedis } from './redis-server.js';
import { systemClock } from '../src/core/clock.js';
import { LocalRate, SharedRate, type RateStore } from '../src/core/rate/rate-store.js';
import { RedisRate } from '../src/ratestore/redis.js';

const CPU_TARGET_US = 30;
const P99_TARGET_MS = 1;
// Far above any load here: every check is allowed, none is answered from the over-limit cache.
const PER_SECOND = 1e9;

function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

interface ChecksResult {
  readonly checks: number;
  readonly cpuUsPerCheck: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** `concurrency` checks in flight for `durationMs`, each for a new client key. */
async function checks(store: RateStore, concurrency: number, durationMs: number): Promise<ChecksResult> {
  const lat: number[] = [];
  let seq = 0;
  const end = performance.now() + durationMs;
  const cpu0 = process.cpuUsage();
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const r = store.take(`client-${seq++}`);
      if (r.kind === 'pending') await r.verdict;
      lat.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const cpu = process.cpuUsage(cpu0);
  lat.sort((a, b) => a - b);
  return { checks: lat.length, cpuUsPerCheck: (cpu.user + cpu.system) / lat.length, p50Ms: pct(lat, 0.5), p99Ms: pct(lat, 0.99) };
}

interface InProcess {
  readonly local: ChecksResult;
  readonly pipelined: ChecksResult;
  readonly sequential: ChecksResult;
}

async function inProcess(ctx: BenchContext, redis: TestRedis): Promise<InProcess> {
  const ms = ctx.quick ? 500 : 3000;
  const remote = new RedisRate({ url: redis.url, prefix: 'bench:', perSecond: PER_SECOND, burst: 10 });
  remote.start();
  const shared = new SharedRate({ perSecond: PER_SECOND, burst: 10, instances: 1, timeoutMs: 1000, remote, clock: systemClock, random: Math.random });
  const until = Date.now() + 10_000;
  while (!remote.ready && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  if (!remote.ready) throw new Error('bench quota: could not connect to redis-server');
  try {
    await checks(shared, 64, ms / 3);
    const local = await checks(new LocalRate(PER_SECOND, 10, systemClock), 64, ms);
    const pipelined = await checks(shared, 64, ms);
    const sequential = await checks(shared, 1, ms);
    const errors = shared.stats().errors;
    if (errors.timeout + errors.error + errors.unavailable > 0) throw new Error(`bench quota: the store failed during the run: ${JSON.stringify(errors)}`);
    for (const [name, r] of [['local bucket', local], ['redis, 64 in flight', pipelined], ['redis, 1 at a time', sequential]] as const) {
      ctx.log(`  ${name}: ${r.checks} checks, ${fmt(r.cpuUsPerCheck, 2)} µs CPU each, p50 ${fmt(r.p50Ms, 3)} ms, p99 ${fmt(r.p99Ms, 3)} ms`);
    }
    return { local, pipelined, sequential };
  } finally {
    await remote.close();
  }
}

function proxyPolicy(upstream: string, redisUrl: string | null): string {
  const store = redisUrl === null ? '' : `\n    store: { redis: { url: ${redisUrl}, timeoutMs: 20, prefix: "bench-proxy:" } }`;
  return `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { level: info }
clients:
  key: { header: x-api-key }
  rate:
    perSecond: ${PER_SECOND}
    burst: 1000${store}
defaults:
  limit: { algorithm: fixed, initial: 10000, min: 1, max: 10000 }
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: ${upstream}
`;
}

interface ProxyRow {
  readonly target: 'local' | 'redis';
  readonly round: number;
  readonly ok: number;
  readonly other: number;
  readonly cpuUsPerAnswer: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

async function proxyRound(ctx: BenchContext, target: ProxyRow['target'], sluice: Proc, round: number, durationMs: number, rate: number): Promise<ProxyRow> {
  const streams = Array.from({ length: 16 }, (_, i) => ({ name: `c${i}`, rate: rate / 16, path: '/api/items/42', headers: { 'x-api-key': `tenant-${i}` } }));
  const c0 = sluice.cpuSeconds();
  const r = await runLoadgen({ url: urlOf(sluice), durationMs, streams, connections: 32, maxInFlight: 512, timeoutMs: 10_000 }, ctx.placement.loadgen);
  const cpu = sluice.cpuSeconds() - c0;
  let ok = 0;
  let other = 0;
  for (const s of Object.values(r.streams)) {
    ok += s.ok;
    other += Object.values(s.refused).reduce((a, b) => a + b, 0) + Object.values(s.other).reduce((a, b) => a + b, 0) + Object.values(s.errors).reduce((a, b) => a + b, 0);
  }
  // Latency of the whole load: the generator's streams are one client each; take the worst stream's percentiles.
  const p50 = Math.max(...Object.values(r.streams).map((s) => s.latencyOk.p50 ?? 0));
  const p99 = Math.max(...Object.values(r.streams).map((s) => s.latencyOk.p99 ?? 0));
  return { target, round, ok, other, cpuUsPerAnswer: ok + other > 0 ? (cpu / (ok + other)) * 1e6 : Number.NaN, p50Ms: p50, p99Ms: p99 };
}

async function throughProxy(ctx: BenchContext, redis: TestRedis): Promise<ProxyRow[]> {
  const p = ctx.placement;
  const procs: Proc[] = [];
  try {
    const [upLocal, upRedis] = await Promise.all([startFastUpstream(p.upstream), startFastUpstream(p.upstream)]);
    procs.push(upLocal, upRedis);
    const local = await startSluice(p.proxy, writeConfig(ctx, 'quota-local', proxyPolicy(urlOf(upLocal), null)));
    procs.push(local);
    const shared = await startSluice(p.proxy, writeConfig(ctx, 'quota-redis', proxyPolicy(urlOf(upRedis), redis.url)));
    procs.push(shared);
    const rounds = ctx.quick ? 2 : 6;
    const durationMs = ctx.quick ? 1500 : 5000;
    const rate = ctx.quick ? 300 : 500;
    await Promise.all([proxyRound(ctx, 'local', local, 0, 1000, rate), proxyRound(ctx, 'redis', shared, 0, 1000, rate)]);
    const rows: ProxyRow[] = [];
    for (let i = 1; i <= rounds; i++) {
      const pair = await Promise.all([proxyRound(ctx, 'local', local, i, durationMs, rate), proxyRound(ctx, 'redis', shared, i, durationMs, rate)]);
      for (const row of pair) {
        ctx.log(`  round ${i} ${row.target}: ${row.ok} ok, ${row.other} other, proxy ${fmt(row.cpuUsPerAnswer, 1)} µs CPU/answer, p50 ${fmt(row.p50Ms, 2)} ms, p99 ${fmt(row.p99Ms, 2)} ms`);
        rows.push(row);
      }
    }
    return rows;
  } finally {
    await Promise.all(procs.map((x) => x.stop()));
  }
}

export async function quotaScenario(ctx: BenchContext): Promise<ScenarioOutput> {
  const redis = await startRedis();
  try {
    ctx.log('7. redis quota: in process (shared store over a real redis-server)');
    const m = await inProcess(ctx, redis);
    ctx.log('7. redis quota: through the proxy (local buckets vs redis, loaded at the same time)');
    const px = await throughProxy(ctx, redis);
    const of = (t: ProxyRow['target'], f: (r: ProxyRow) => number | null) => px.filter((r) => r.target === t).map((r) => f(r) ?? Number.NaN);
    const cpuDelta = of('redis', (r) => r.cpuUsPerAnswer).map((v, i) => v - (of('local', (r) => r.cpuUsPerAnswer)[i] as number));
    const p99Delta = of('redis', (r) => r.p99Ms).map((v, i) => v - (of('local', (r) => r.p99Ms)[i] as number));
    const addedCpu = m.pipelined.cpuUsPerCheck - m.local.cpuUsPerCheck;
    const targets: TargetRow[] = [
      {
        target: `redis quota check adds <= ${CPU_TARGET_US} µs CPU per request (pipelined, in process)`,
        measured: `${fmt(addedCpu, 1)} µs (${fmt(m.pipelined.cpuUsPerCheck, 1)} µs per check with 64 in flight vs ${fmt(m.local.cpuUsPerCheck, 2)} µs for the local bucket)`,
        met: ctx.quick ? null : addedCpu <= CPU_TARGET_US,
      },
      {
        target: `redis quota check <= ${P99_TARGET_MS} ms p99 on loopback (in process, one at a time)`,
        measured: `p99 ${fmt(m.sequential.p99Ms, 3)} ms (p50 ${fmt(m.sequential.p50Ms, 3)} ms); with 64 in flight p99 ${fmt(m.pipelined.p99Ms, 3)} ms`,
        met: ctx.quick ? null : m.sequential.p99Ms <= P99_TARGET_MS,
      },
      {
        target: `redis quota check through the proxy: CPU per answer and p99, redis - local (informational: noise-limited)`,
        measured: `CPU median ${fmt(median(cpuDelta), 1)} µs (rounds ${fmt(Math.min(...cpuDelta), 1)} to ${fmt(Math.max(...cpuDelta), 1)}); p99 median ${fmt(median(p99Delta), 2)} ms (rounds ${fmt(Math.min(...p99Delta), 2)} to ${fmt(Math.max(...p99Delta), 2)})`,
        met: null,
      },
    ];
    const markdown = [
      'In process, against a redis-server on loopback (every check a round trip: distinct clients, never over their limit):',
      '',
      table(
        ['store', 'in flight', 'checks', 'CPU µs / check', 'p50 ms', 'p99 ms'],
        [
          ['local bucket', 64, m.local.checks, fmt(m.local.cpuUsPerCheck, 2), fmt(m.local.p50Ms, 4), fmt(m.local.p99Ms, 4)],
          ['redis', 64, m.pipelined.checks, fmt(m.pipelined.cpuUsPerCheck, 2), fmt(m.pipelined.p50Ms, 3), fmt(m.pipelined.p99Ms, 3)],
          ['redis', 1, m.sequential.checks, fmt(m.sequential.cpuUsPerCheck, 2), fmt(m.sequential.p50Ms, 3), fmt(m.sequential.p99Ms, 3)],
        ],
      ),
      '',
      'Through the proxy (two Sluice processes, local buckets vs redis, each with its own fast upstream, loaded at the same time by 16 clients at a fixed rate; latency = worst client):',
      '',
      table(
        ['round', 'rate store', 'ok', 'other', 'proxy CPU µs/answer', 'p50 ms', 'p99 ms'],
        px.map((r) => [r.round, r.target, r.ok, r.other, fmt(r.cpuUsPerAnswer, 1), fmt(r.p50Ms, 2), fmt(r.p99Ms, 2)]),
      ),
    ].join('\n');
    return { id: 'quota', title: '7. Redis quota cost', markdown, json: { inProcess: m, proxy: px }, targets };
  } finally {
    await redis.kill();
  }
}

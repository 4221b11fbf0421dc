/**
 * Scenario 6 (`--only queue`): what fair queuing inside a lane costs.
 *
 * a. In process, no I/O: nanoseconds per enqueue + dequeue of the lane queue
 *    alone (FIFO WaitQueue vs DRR FairQueue), and per request through the
 *    limiter with a standing queue (acquire → queued → a completion starts
 *    it → settle), for 1, 16 and 1,024 client keys. Rounds alternate FIFO
 *    and fair; the median of the rounds is reported.
 * b. Through the proxy: two real Sluice processes, identical but for
 *    `queue.fair`, with a fixed limit of 32 in front of a capacity-modelled
 *    upstream (32 workers x 16 ms = 2,000 req/s), offered 1.28x that by 16
 *    clients with at most 96 outstanding, so about 64 always wait in
 *    Sluice. Throughput is the upstream's for both, so CPU time per answer
 *    (read from /proc) compares like with like (at saturation a slower
 *    round would also batch less and cost more per answer). Both are loaded
 *    at the same time, each with its own upstream and generator, so the
 *    machine's background load hits both alike (as in scenario 1's paired
 *    measurement); both proxies share the proxy core.
 *
 * Target (issue 14): the fair queue costs <= 2 µs per request.
 */
import { median, spreadPct, sumValues } from './analysis.js';
import { fmt, table, writeConfig, type BenchContext, type ScenarioOutput, type TargetRow } from './common.js';
import { runLoadgen, startCapacityUpstream, startSluice, urlOf, type Proc } from './processes.js';
import type { LaneConfig } from '../src/config/types.js';
import type { Clock } from '../src/core/clock.js';
import { FixedLimit } from '../src/core/limit/limit.js';
import { ClientWeights, FairQueue } from '../src/core/limiter/fair-queue.js';
import { Limiter, type Permit } from '../src/core/limiter/limiter.js';
import { WaitQueue, type FairNode, type QueueNode } from '../src/core/limiter/wait-queue.js';

const TARGET_US = 2;
const CLIENTS = [1, 16, 1024] as const;
const BACKLOG = 64;

class Node implements FairNode {
  prev: QueueNode | null = null;
  next: QueueNode | null = null;
  linked = false;
  peerPrev: FairNode | null = null;
  peerNext: FairNode | null = null;
  flow: object | null = null;
  constructor(readonly clientKey: string) {}
}

/**
 * ns per take + push with max(BACKLOG, clients) waiting, spread over `clients`
 * keys: the node taken rejoins at the back, so the mix of keys stays the same
 * (with 1,024 clients every flow holds one waiter: each take deletes a flow
 * and each push creates one).
 */
function queueOps(fair: boolean, clients: number, ops: number): number {
  const q = fair ? new FairQueue<Node>(new ClientWeights()) : new WaitQueue<Node>();
  for (let i = 0; i < Math.max(BACKLOG, clients); i++) q.push(new Node(`client-${i % clients}`));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) q.push(q.take(false) as Node);
  return Number(process.hrtime.bigint() - t0) / ops;
}

/** A clock that never fires: the benchmark never lets a wait run out. */
const benchClock = (): Clock => {
  let t = 0;
  return { now: () => (t += 0.001), setTimer: () => ({ cancel: () => undefined }) };
};

/** ns per request through the limiter: each completion starts one waiter and one new request joins the queue. */
function limiterOps(fair: boolean, clients: number, ops: number): number {
  const lane: LaneConfig = { name: 'interactive', maxShare: 1, minShare: 0, queue: { maxLength: 1_000_000, maxWaitMs: 1e9, fair } };
  const limiter = new Limiter({
    lanes: [lane],
    limit: new FixedLimit(8),
    clientMaxShare: 1,
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 },
    clock: benchClock(),
    random: () => 0.5,
  });
  const keys = Array.from({ length: clients }, (_, i) => `client-${i}`);
  const running: Permit[] = [];
  const waiter = (r: Permit | { kind: 'refused' }): void => {
    if (r.kind === 'permit') running.push(r);
  };
  for (let i = 0; i < 8 + BACKLOG; i++) {
    const r = limiter.acquire(0, keys[i % clients] as string, waiter);
    if (r.kind === 'permit') running.push(r);
  }
  let head = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    (running[head++] as Permit).settle('success', 1);
    limiter.acquire(0, keys[i % clients] as string, waiter);
    if (head > 4096) {
      running.splice(0, head);
      head = 0;
    }
  }
  return Number(process.hrtime.bigint() - t0) / ops;
}

interface MicroRow {
  readonly what: string;
  readonly clients: number;
  readonly fifoNs: number;
  readonly fairNs: number;
  readonly spreadPct: number;
}

function micro(ctx: BenchContext): MicroRow[] {
  const rounds = ctx.quick ? 3 : 9;
  const queueN = ctx.quick ? 100_000 : 2_000_000;
  const limiterN = ctx.quick ? 50_000 : 500_000;
  const rows: MicroRow[] = [];
  for (const [what, f, n] of [
    ['lane queue: push + take', queueOps, queueN],
    ['limiter: acquire (queued) + settle (starts one)', limiterOps, limiterN],
  ] as const) {
    for (const clients of CLIENTS) {
      f(false, clients, n / 10);
      f(true, clients, n / 10);
      const fifo: number[] = [];
      const fair: number[] = [];
      for (let r = 0; r < rounds; r++) {
        for (const isFair of r % 2 === 0 ? [false, true] : [true, false]) (isFair ? fair : fifo).push(f(isFair, clients, n));
      }
      const row = { what, clients, fifoNs: median(fifo), fairNs: median(fair), spreadPct: spreadPct(fair) };
      ctx.log(`  ${what}, ${clients} clients: fifo ${fmt(row.fifoNs, 0)} ns, fair ${fmt(row.fairNs, 0)} ns`);
      rows.push(row);
    }
  }
  return rows;
}

function proxyPolicy(upstream: string, fair: boolean): string {
  return `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { level: info }
clients:
  key: { header: x-api-key }
  maxShare: 1
lanes:
  - name: interactive
    queue: { maxLength: 1000, maxWaitMs: 10000, fair: ${fair} }
defaults:
  limit: { algorithm: fixed, initial: 32, min: 1, max: 32 }
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: ${upstream}
`;
}

interface ProxyRow {
  readonly target: string;
  readonly round: number;
  readonly answers: number;
  readonly okShare: number;
  readonly cpuUsPerAnswer: number;
  /** Answers other than 200, by status:reason. */
  readonly others: Record<string, number>;
}

async function proxyRound(ctx: BenchContext, name: string, sluice: Proc, round: number, durationMs: number): Promise<ProxyRow> {
  const streams = Array.from({ length: 16 }, (_, i) => ({ name: `c${i}`, rate: 160, path: '/api/items/42', headers: { 'x-api-key': `tenant-${i}` } }));
  const c0 = sluice.cpuSeconds();
  const r = await runLoadgen({ url: urlOf(sluice), durationMs, streams, connections: 96, maxInFlight: 96, timeoutMs: 10_000 }, ctx.placement.loadgen);
  const cpu = sluice.cpuSeconds() - c0;
  let ok = 0;
  let answers = 0;
  const others: Record<string, number> = {};
  for (const s of Object.values(r.streams)) {
    ok += s.ok;
    answers += s.ok + sumValues(s.refused) + sumValues(s.other) + sumValues(s.errors);
    for (const [k, v] of [...Object.entries(s.refused), ...Object.entries(s.other), ...Object.entries(s.errors)]) others[k] = (others[k] ?? 0) + v;
  }
  return { target: name, round, answers, okShare: answers > 0 ? ok / answers : 0, cpuUsPerAnswer: answers > 0 ? (cpu / answers) * 1e6 : Number.NaN, others };
}

async function throughProxy(ctx: BenchContext): Promise<ProxyRow[]> {
  const p = ctx.placement;
  const procs: Proc[] = [];
  try {
    // One upstream each, so neither Sluice takes capacity from the other.
    const [upFifo, upFair] = await Promise.all([startCapacityUpstream(p.upstream, 32, 16), startCapacityUpstream(p.upstream, 32, 16)]);
    procs.push(upFifo, upFair);
    const fifo = await startSluice(p.proxy, writeConfig(ctx, 'queue-fifo', proxyPolicy(urlOf(upFifo), false)));
    procs.push(fifo);
    const fair = await startSluice(p.proxy, writeConfig(ctx, 'queue-fair', proxyPolicy(urlOf(upFair), true)));
    procs.push(fair);
    const rounds = ctx.quick ? 2 : 6;
    const durationMs = ctx.quick ? 1500 : 5000;
    await Promise.all([proxyRound(ctx, 'fifo', fifo, 0, 1000), proxyRound(ctx, 'fair', fair, 0, 1000)]);
    const rows: ProxyRow[] = [];
    for (let i = 1; i <= rounds; i++) {
      // Both loaded at once: whatever else the machine does hits both alike.
      const pair = await Promise.all([proxyRound(ctx, 'fifo', fifo, i, durationMs), proxyRound(ctx, 'fair', fair, i, durationMs)]);
      for (const row of pair) {
        ctx.log(`  round ${i} ${row.target}: ${row.answers} answers, proxy ${fmt(row.cpuUsPerAnswer, 1)} µs CPU/answer, not 200: ${JSON.stringify(row.others)}`);
        rows.push(row);
      }
    }
    return rows;
  } finally {
    await Promise.all(procs.map((x) => x.stop()));
  }
}

export async function queueScenario(ctx: BenchContext): Promise<ScenarioOutput> {
  ctx.log('6. fair queue: in-process micro-benchmark');
  const m = micro(ctx);
  ctx.log('6. fair queue: through the proxy (fixed limit 32, upstream 2,000 req/s, 16 clients, 96 outstanding)');
  const px = await throughProxy(ctx);
  const cpu = (t: string) => px.filter((r) => r.target === t).map((r) => r.cpuUsPerAnswer);
  const deltas = cpu('fair').map((v, i) => v - (cpu('fifo')[i] as number));
  const worstLimiter = Math.max(...m.filter((r) => r.what.startsWith('limiter')).map((r) => r.fairNs));
  const proxyDelta = median(deltas);
  const targets: TargetRow[] = [
    {
      target: `fair queue <= ${TARGET_US} µs per request (in the limiter, worst of 1/16/1024 clients)`,
      measured: `${fmt(worstLimiter / 1000, 2)} µs per request in total with fair (acquire + queue + start + settle)`,
      met: ctx.quick ? null : worstLimiter / 1000 <= TARGET_US,
    },
    {
      // Informational: a 2 µs difference is below what two proxy processes on a shared machine resolve.
      target: `fair queue through the proxy (fair - FIFO CPU per answer; resolution limited by noise)`,
      measured: `median ${fmt(proxyDelta, 2)} µs, per-round ${fmt(Math.min(...deltas), 1)} to ${fmt(Math.max(...deltas), 1)} µs (proxy ${fmt(median(cpu('fifo')), 1)} vs ${fmt(median(cpu('fair')), 1)} µs/answer)`,
      met: null,
    },
  ];
  const markdown = [
    `In process (median of ${ctx.quick ? 3 : 9} alternating rounds; backlog ${BACKLOG} waiting; spread = (max-min)/median of the fair rounds):`,
    '',
    table(
      ['operation', 'clients', 'FIFO ns', 'fair ns', 'fair - FIFO ns', 'spread %'],
      m.map((r) => [r.what, r.clients, fmt(r.fifoNs, 0), fmt(r.fairNs, 0), fmt(r.fairNs - r.fifoNs, 0), fmt(r.spreadPct, 0)]),
    ),
    '',
    'Through the proxy (two Sluice processes differing only in `queue.fair`, loaded at the same time, each with its own upstream, fixed limit 32, capacity upstream 32 x 16 ms = 2,000 req/s offered 2,560 req/s by 16 clients, at most 96 outstanding):',
    '',
    table(
      ['round', 'queue', 'answers', '200 share', 'proxy CPU µs/answer'],
      px.map((r) => [r.round, r.target, r.answers, `${fmt(r.okShare * 100, 2)}%`, fmt(r.cpuUsPerAnswer, 1)]),
    ),
  ].join('\n');
  return { id: 'queue', title: '6. Fair queue cost', markdown, json: { micro: m, proxy: px }, targets };
}

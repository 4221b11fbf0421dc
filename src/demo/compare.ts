/**
 * The demo's experiment: the same open-loop load, phase by phase, against the
 * same simulated upstream (./upstream.ts: `workers` workers behind an
 * unbounded FIFO, the model of issue 10's scenarios, in a process of its own:
 * ./upstream-process.ts), once through the bare @fastify/http-proxy
 * (./bare-proxy.ts) and once through Sluice (the real CLI,
 * ./sluice-process.ts). The proxy, the upstream and this process (the load
 * generator) each have an event loop of their own, so none is measured with
 * another's CPU. Each run gets a fresh upstream, so nothing one run left
 * queued reaches the other.
 *
 * Phases (DEMO_PHASES): normal load, overload (3x capacity), then a slowdown
 * (the service time x3 with the same workers: capacity falls to a third while
 * the offered load stays what it was before the overload). Clients give up
 * after `clientTimeoutMs`, as real ones do.
 * What is measured: ./phases.ts.
 */
import { Agent, request } from 'undici';
import { parseConfig } from '../config/load.js';
import { startBareProxyProcess } from './bare-proxy.js';
import { runOpenLoop, type SecondStats } from './load.js';
import { capacityOf, LANES, phaseAt, Tally, type DemoSetup, type Phase, type TargetName, type TargetResult } from './phases.js';
import { demoPolicy } from './policy.js';
import { startSluiceProcess } from './sluice-process.js';
import { startUpstreamProcess, type UpstreamProcess } from './upstream-process.js';

interface Target {
  readonly url: string;
  readonly description: string;
  /** Sluice's start-up line, printed before its run. */
  readonly banner?: string;
  /** What the target says about itself each second (Sluice: limit, in flight, queued, RTT). */
  status(): Promise<string>;
  close(): Promise<void>;
}

const ms = (x: number | null) => (x === null ? '-' : `${Math.round(x)} ms`);

/** The bare proxy or the real Sluice CLI, each in a process of its own. */
async function startTarget(name: TargetName, upstream: UpstreamProcess, setup: DemoSetup): Promise<Target> {
  if (name === 'bare') {
    const bare = await startBareProxyProcess(upstream.url);
    return { url: bare.url, description: 'bare @fastify/http-proxy', status: async () => '', close: bare.close };
  }
  // A fixed limit is told the truth (the worker count); an adaptive one starts at twice that and learns.
  const initial = setup.algorithm === 'fixed' ? setup.workers : setup.workers * 2;
  const policy = `${demoPolicy(upstream.url, { algorithm: setup.algorithm, initial, max: setup.workers * 8, route: 'demo', logLevel: 'info' })}shutdown: { readinessGraceMs: 0, drainTimeoutMs: 2000 }\n`;
  const l = parseConfig(policy, '<demo>').routes[0]!.limit;
  const sluice = await startSluiceProcess(policy);
  return {
    url: sluice.url,
    description: `sluice, limit ${l.algorithm} starting at ${l.initial} (${l.min}..${l.max})`,
    banner: sluice.startupLine,
    async status() {
      const r = (await sluice.state()).routes[0];
      if (r === undefined) return '';
      return `sluice: limit ${r.limit}, in flight ${r.inflight}, queued ${r.queued}, rtt ${ms(r.rtt.recentMs)} (baseline ${ms(r.rtt.baselineMs)}), ${r.state}`;
    },
    close: () => sluice.close(),
  };
}

/** A line per second while a run goes: each lane's arrivals and answers, the upstream's queue, the target's own state. */
export type ProgressLine = (text: string) => void;

type UpstreamState = Awaited<ReturnType<UpstreamProcess['state']>>;

function progress(setup: DemoSetup, s: SecondStats, u: UpstreamState, targetStatus: string): string {
  const phase = setup.phases[phaseAt(setup, s.t * 1000)] as Phase;
  const lanes = LANES.map((l) => {
    const st = s.streams[l];
    if (st === undefined) return '';
    const p99 = st.latencyOk.p99 === null ? '-' : `${Math.round(st.latencyOk.p99)} ms`;
    return `${l}: ${st.offered} sent, ${st.ok} ok (p99 ${p99}), ${st.s429 + st.s503} refused, ${st.timeouts} gave up`;
  });
  const up = `upstream: ${u.stats.inFlight}/${u.workers} busy, ${u.stats.queued} queued`;
  return [`${String(s.t).padStart(3)} s ${phase.name.padEnd(9)}`, ...lanes, up, targetStatus].filter((x) => x !== '').join(' | ');
}

/**
 * Before the phases: a few requests on both paths, WARMUP_CLIENTS at a time
 * (fewer than the upstream's workers, so nothing queues anywhere), so that
 * neither run measures its own cold start (code not yet optimised, first
 * connections) as its normal phase.
 */
const WARMUP_CLIENTS = 4;
const WARMUP_REQUESTS = 25;

async function warmUp(url: string): Promise<void> {
  const agent = new Agent({ connections: WARMUP_CLIENTS });
  const client = async (i: number) => {
    for (let n = 0; n < WARMUP_REQUESTS; n++) {
      const batch = (n + i) % 2 === 1;
      const r = await request(`${url}${batch ? '/api/export' : '/api/page'}`, { dispatcher: agent, headers: batch ? { 'x-priority': 'batch' } : {} });
      await r.body.dump();
    }
  };
  try {
    await Promise.all(Array.from({ length: WARMUP_CLIENTS }, (_, i) => client(i)));
  } finally {
    await agent.close();
  }
}

/** One run of every phase against `name`, with a fresh upstream. */
export async function runTarget(name: TargetName, setup: DemoSetup, onLine: ProgressLine = () => undefined): Promise<TargetResult> {
  const upstream = await startUpstreamProcess({ workers: setup.workers, serviceTimeMs: setup.serviceMs * (setup.phases[0]?.serviceFactor ?? 1) });
  const target = await startTarget(name, upstream, setup).catch(async (err: unknown) => {
    await upstream.close();
    throw err;
  });
  const tally = new Tally(setup);
  const capacity = capacityOf(setup);
  const rate = (share: number) => (t: number) => (setup.phases[phaseAt(setup, t * 1000)] as Phase).load * capacity * share;
  const boundaries = setup.phases.map((_, i) => setup.phases.slice(0, i + 1).reduce((n, p) => n + p.seconds, 0));
  const servedAt: number[] = [0];
  // Each second's upstream reads and phase changes, in order (onSecond cannot wait).
  let chain = Promise.resolve();
  const atSecondEnd = async (s: SecondStats) => {
    const i = boundaries.indexOf(s.t + 1);
    const next = i >= 0 ? setup.phases[i + 1] : undefined;
    if (next !== undefined) await upstream.set({ serviceTimeMs: setup.serviceMs * next.serviceFactor });
    const u = await upstream.state();
    if (i >= 0) servedAt[i + 1] = u.stats.served;
    if (s.t < (boundaries.at(-1) as number)) onLine(progress(setup, s, u, await target.status()));
  };
  try {
    if (target.banner !== undefined) onLine(target.banner);
    await warmUp(target.url);
    servedAt[0] = (await upstream.state()).stats.served;
    await runOpenLoop({
      url: target.url,
      durationMs: (boundaries.at(-1) as number) * 1000,
      maxInFlight: 4000,
      connections: 4000,
      requestTimeoutMs: setup.clientTimeoutMs,
      drainTimeoutMs: setup.clientTimeoutMs + 1000,
      streams: [
        { name: 'interactive', ratePerSecond: rate(setup.interactiveShare), path: '/api/page' },
        { name: 'batch', ratePerSecond: rate(1 - setup.interactiveShare), path: '/api/export', headers: { 'x-priority': 'batch' } },
      ],
      onResult: tally.add,
      onSecond: (s) => {
        chain = chain.then(() => atSecondEnd(s));
      },
    });
    await chain;
  } finally {
    // The upstream first: what a proxy still has queued for it then fails at once instead of being served.
    await upstream.close();
    await target.close();
  }
  const served = setup.phases.map((_, i) => (servedAt[i + 1] ?? servedAt[i] ?? 0) - (servedAt[i] ?? 0));
  return { target: name, description: target.description, phases: tally.results(served) };
}

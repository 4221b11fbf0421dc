/**
 * Shared pieces of the benchmark scenarios: the run context, policies,
 * admin/upstream polling, and small statistics helpers.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import type { Placement, Proc } from './processes.js';
import { demoPolicy } from '../src/demo/policy.js';

export interface BenchContext {
  readonly quick: boolean;
  readonly placement: Placement;
  /** Run id used in file names, e.g. 20261125-201500. */
  readonly stamp: string;
  /** bench/results/ (gitignored): JSON results and generated configs. */
  readonly resultsDir: string;
  /** Where charts are written, and how REPORT.md links to them. */
  readonly chartsDir: string;
  readonly chartsLink: string;
  /** --algorithm; null = the config schema's default. */
  readonly algorithm: string | null;
  /** --baseline: another build's dist/cli.js, measured alongside in the cost scenario; null = none. */
  readonly baseline: string | null;
  /** --access-log: the cost scenario's own Sluice logs every request (log.access). */
  readonly accessLog: boolean;
  log(msg: string): void;
}

export interface TargetRow {
  readonly target: string;
  readonly measured: string;
  /** null = not applicable in this run (e.g. quick mode, or a generator-bound measurement). */
  readonly met: boolean | null;
}

export interface ScenarioOutput {
  readonly id: string;
  readonly title: string;
  readonly markdown: string;
  readonly json: unknown;
  readonly targets: readonly TargetRow[];
}

export function writeConfig(ctx: BenchContext, name: string, yaml: string): string {
  mkdirSync(ctx.resultsDir, { recursive: true });
  const file = `${ctx.resultsDir}/${ctx.stamp}-${name}.yaml`;
  writeFileSync(file, yaml);
  return file;
}

export function writeChart(ctx: BenchContext, name: string, svg: string): string {
  mkdirSync(ctx.chartsDir, { recursive: true });
  const file = `${ctx.stamp}-${name}.svg`;
  writeFileSync(`${ctx.chartsDir}/${file}`, svg);
  return `${ctx.chartsLink}/${file}`;
}

const HEAD = `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { level: info }
`;

/** The same policy with log.access on (every request one JSON line on stdout). */
export function withAccessLog(policy: string): string {
  return policy.replace('log: { level: info }', 'log: { level: info, access: { enabled: true } }');
}

/** Sluice admitting everything: a fixed limit far above any in-flight count, so only the per-request cost is measured. */
export function admitAllPolicy(upstream: string): string {
  return `${HEAD}defaults:
  limit: { algorithm: fixed, initial: 100000, min: 1, max: 100000 }
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: ${upstream}
`;
}

/** Every request refused at the door: limit 1 (held by one /hang request) and no queueing. */
export function refuseAllPolicy(upstream: string): string {
  return `${HEAD}lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
  - name: batch
    queue: { maxLength: 0, maxWaitMs: 1000 }
defaults:
  limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
  timeouts: { connectMs: 1000, headersMs: 600000, bodyMs: 600000 }
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: ${upstream}
`;
}

/**
 * The control scenarios' policy: two lanes as in loadtests/config.yaml, the
 * limit starting at 1.2x the upstream's worker count (what one would set as
 * a fixed limit: a request or two waiting at the upstream keeps every worker
 * busy while Sluice turns a finished slot around). The algorithm is left to
 * the config schema's default unless --algorithm names one.
 */
export function controlPolicy(upstream: string, workers: number, algorithm: string | null): string {
  return demoPolicy(upstream, { algorithm, initial: Math.ceil(workers * 1.2), max: workers * 20, route: 'capacity', logLevel: 'info' });
}

const agent = new Agent({ connections: 4 });

export async function getJson<T>(url: string): Promise<T> {
  const r = await request(url, { dispatcher: agent });
  return (await r.body.json()) as T;
}

export async function postJson<T>(url: string, body: unknown): Promise<T> {
  const r = await request(url, { dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (r.statusCode !== 200) throw new Error(`POST ${url}: ${r.statusCode} ${await r.body.text()}`);
  return (await r.body.json()) as T;
}

export async function closeHttp(): Promise<void> {
  await agent.close();
}

/** One sample of the system under test over time (t in seconds since the run's t0). */
export interface TraceSample {
  readonly t: number;
  readonly limit: number;
  readonly inflight: number;
  readonly queued: number;
  readonly lanes: Record<string, { inflight: number; queued: number }>;
  readonly upstreamInFlight: number;
  readonly upstreamQueued: number;
  readonly rssMb: number;
}

interface AdminRoute {
  limit: number;
  inflight: number;
  queued: number;
  algorithm: string;
  lanes: { name: string; inflight: number; queued: number }[];
}

export async function routeState(adminUrl: string): Promise<AdminRoute> {
  const s = await getJson<{ routes: AdminRoute[] }>(`${adminUrl}/admin/state`);
  const r = s.routes[0];
  if (r === undefined) throw new Error('admin state has no routes');
  return r;
}

/**
 * Samples Sluice's /admin/state, the upstream's /_control stats and Sluice's
 * RSS every `everyMs` until stopped. `t0()` gives the time origin (epoch ms),
 * which may be set only once the generator has started.
 */
export function startTrace(sluice: Proc, upstreamUrl: string, everyMs: number, t0: () => number): { stop(): Promise<TraceSample[]> } {
  const admin = String(sluice.ready['admin']);
  const samples: TraceSample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = Date.now();
      try {
        const [r, up] = await Promise.all([
          routeState(admin),
          getJson<{ stats: { inFlight: number; queued: number } }>(`${upstreamUrl}/_control`),
        ]);
        const lanes: TraceSample['lanes'] = {};
        for (const l of r.lanes) lanes[l.name] = { inflight: l.inflight, queued: l.queued };
        samples.push({
          t: (started - t0()) / 1000,
          limit: r.limit,
          inflight: r.inflight,
          queued: r.queued,
          lanes,
          upstreamInFlight: up.stats.inFlight,
          upstreamQueued: up.stats.queued,
          rssMb: Math.round((sluice.rssBytes() / 1048576) * 10) / 10,
        });
      } catch {
        // A missed sample is a gap in the chart, not a failed benchmark.
      }
      await new Promise((r) => setTimeout(r, Math.max(0, everyMs - (Date.now() - started))));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

export function fmt(v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  return v.toFixed(digits);
}

export function table(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]): string => `| ${cells.map(String).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/**
 * `rounds` rounds over `items`, the order reversed every other round (A B C,
 * C B A, ...), so drift in the machine's load hits every item alike; `run`
 * gets the item and the round (1-based). The results in the order they ran.
 */
export async function rotatingRounds<T, R>(rounds: number, items: readonly T[], run: (item: T, round: number) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < rounds; i++) {
    for (const item of i % 2 === 0 ? items : [...items].reverse()) results.push(await run(item, i + 1));
  }
  return results;
}

/**
 * Scenario 10, HTTP/2 (issue 13): what HTTP/2 costs Sluice, measured with
 * h2load (nghttp2's C load generator, Debian `nghttp2-client`; --h1 for the
 * HTTP/1.1 runs, so one generator drives both protocols).
 *
 *   h1-forward    HTTP/1.1, 64 connections, to a route with an HTTP/1.1 upstream
 *   h2-forward    HTTP/2 (h2c prior knowledge), 4 connections x 16 streams,
 *                 the same Sluice process, the same route
 *   h1-refusal,   the same two against a Sluice refusing everything (limit 1
 *   h2-refusal    held, no queue: 503 queue_full)
 *   h2up-forward  HTTP/1.1 clients, a route with `http2: true` to an h2c
 *                 upstream (undici allowH2): what HTTP/2 upstream costs
 *
 * CPU = user + system time of the Sluice process over the run / answers.
 * Rounds rotate the order after a discarded warm-up run each; ratios pair
 * each round's runs. Then the upstream client choice: the same requests to
 * the h2c upstream by undici (Pool, allowH2) and by node:http2 (one
 * session), each in its own process pinned to the proxy core
 * (procs/h2-client.ts), alternating: CPU per request of the client.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import { median } from './analysis.js';
import { admitAllPolicy, fmt, refuseAllPolicy, rotatingRounds, table, writeConfig, type BenchContext, type ScenarioOutput } from './common.js';
import { holdSlot } from './cost.js';
import { startFastH2Upstream, startFastUpstream, startSluice, urlOf, type Proc } from './processes.js';

interface H2loadSummary {
  readonly requests: number;
  readonly succeeded: number;
  readonly status2xx: number;
  readonly status5xx: number;
  readonly seconds: number;
}

/** h2load for `durationS` (HTTP/1.1 with `h1`), pinned to `cpu`. */
function h2load(url: string, h1: boolean, durationS: number, cpu: number | null): Promise<H2loadSummary> {
  const args = [...(h1 ? ['--h1', '-c64', '-m1'] : ['-c4', '-m16']), '-t1', '-D', String(durationS), url];
  const [cmd, argv] = cpu === null ? ['h2load', args] : ['taskset', ['-c', String(cpu), 'h2load', ...args]];
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { encoding: 'utf8', timeout: (durationS + 30) * 1000 }, (err, out) => {
      const req = /requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded/.exec(out);
      const codes = /status codes: (\d+) 2xx, \d+ 3xx, \d+ 4xx, (\d+) 5xx/.exec(out);
      const fin = /finished in ([\d.]+)s/.exec(out);
      if (err !== null || req === null || codes === null || fin === null) {
        reject(new Error(`h2load failed (apt-get install nghttp2-client): ${err?.message ?? ''} ${out.slice(-500)}`));
        return;
      }
      resolve({ requests: Number(req[1]), succeeded: Number(req[2]), status2xx: Number(codes[1]), status5xx: Number(codes[2]), seconds: Number(fin[1]) });
    });
  });
}

interface Run {
  readonly name: string;
  readonly proc: Proc;
  readonly url: string;
  readonly h1: boolean;
  readonly expect: '2xx' | '5xx';
}

interface Row {
  readonly round: number;
  readonly run: string;
  readonly rps: number;
  readonly cpuUsPerReq: number;
  readonly expectedShare: number;
}

async function measure(ctx: BenchContext, r: Run, round: number, durationS: number): Promise<Row> {
  const c0 = r.proc.cpuSeconds();
  const w = await h2load(r.url, r.h1, durationS, ctx.placement.loadgen);
  const cpu = r.proc.cpuSeconds() - c0;
  const answers = w.status2xx + w.status5xx;
  return {
    round,
    run: r.name,
    rps: answers / w.seconds,
    cpuUsPerReq: answers > 0 ? (cpu / answers) * 1e6 : Number.NaN,
    expectedShare: answers > 0 ? (r.expect === '2xx' ? w.status2xx : w.status5xx) / answers : 0,
  };
}

function ratios(rows: readonly Row[], a: string, b: string): number[] {
  const out: number[] = [];
  for (const r of rows.filter((x) => x.run === a)) {
    const o = rows.find((x) => x.round === r.round && x.run === b);
    if (o !== undefined) out.push(r.cpuUsPerReq / o.cpuUsPerReq);
  }
  return out;
}

const CLIENT = fileURLToPath(new URL('./procs/h2-client.js', import.meta.url));

interface ClientRow {
  readonly round: number;
  readonly client: 'undici' | 'node';
  readonly cpuUsPerReq: number;
  readonly rps: number;
}

function clientRun(url: string, client: 'undici' | 'node', n: number, cpu: number | null): Promise<{ requests: number; cpuUs: number; wallMs: number }> {
  const args = [CLIENT, JSON.stringify({ url, client, n, concurrency: 64 })];
  const [cmd, argv] = cpu === null ? [process.execPath, args] : ['taskset', ['-c', String(cpu), process.execPath, ...args]];
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { encoding: 'utf8', timeout: 120_000 }, (err, out, stderr) => {
      if (err !== null) reject(new Error(`h2 client failed: ${err.message} ${stderr.slice(-300)}`));
      else resolve(JSON.parse(out.trim().split('\n').pop() ?? '{}'));
    });
  });
}

async function clientComparison(ctx: BenchContext, h2up: string): Promise<ClientRow[]> {
  const rows: ClientRow[] = [];
  const n = ctx.quick ? 2000 : 20_000;
  for (let round = 1; round <= (ctx.quick ? 1 : 4); round++) {
    for (const client of round % 2 === 1 ? (['undici', 'node'] as const) : (['node', 'undici'] as const)) {
      const r = await clientRun(h2up, client, n, ctx.placement.proxy);
      rows.push({ round, client, cpuUsPerReq: r.cpuUs / r.requests, rps: r.requests / (r.wallMs / 1000) });
      ctx.log(`  client round ${round} ${client}: ${fmt(r.cpuUs / r.requests, 1)} µs/request`);
    }
  }
  return rows;
}

function withHttp2(policy: string, h2upstream: string | null): string {
  const listen = policy.replace('listen: { host: 127.0.0.1, port: 0 }', 'listen: { host: 127.0.0.1, port: 0, http2: true }');
  if (h2upstream === null) return listen;
  return listen.replace('routes:\n', `routes:\n  - name: h2up\n    match: { pathPrefix: /h2up }\n    upstream: ${h2upstream}\n    http2: true\n`);
}

const PATH = '/api/items/42';

function report(ctx: BenchContext, rows: readonly Row[], clients: readonly ClientRow[], durationS: number): ScenarioOutput {
  const us = (run: string) => median(rows.filter((r) => r.run === run).map((r) => r.cpuUsPerReq));
  const h2vsH1 = ratios(rows, 'h2-forward', 'h1-forward');
  const fwdVsRefusal = ratios(rows, 'h2-forward', 'h2-refusal');
  const h1FwdVsRefusal = ratios(rows, 'h1-forward', 'h1-refusal');
  const upVsH1 = ratios(rows, 'h2up-forward', 'h1-forward');
  const cu = (c: string) => median(clients.filter((r) => r.client === c).map((r) => r.cpuUsPerReq));
  const x = (xs: number[], d = 2) => `${fmt(median(xs), d)}x (per round: ${xs.map((y) => fmt(y, d)).join(', ')})`;
  return {
    id: 'h2',
    title: '10. HTTP/2 (h2load): HTTP/2 vs HTTP/1.1 on the same route, h2 refusals, HTTP/2 upstreams',
    markdown: [
      `h2load, one thread, ${durationS} s per run; HTTP/1.1: 64 connections; HTTP/2: 4 connections x 16 streams (h2c). Fast upstream (11-byte JSON). CPU = user + system time of the Sluice process over the run, per answer. ${Math.max(0, ...rows.map((r) => r.round))} round(s), rotating order, after a warm-up run each.`,
      '',
      table(
        ['round', 'run', 'answers/s', 'Sluice CPU µs/answer', 'expected answers'],
        rows.map((r) => [r.round, r.run, Math.round(r.rps), fmt(r.cpuUsPerReq, 1), `${fmt(r.expectedShare * 100, 2)}%`]),
      ),
      '',
      `- medians, µs per answer: h1 forward ${fmt(us('h1-forward'))}, h2 forward ${fmt(us('h2-forward'))}, h1 refusal ${fmt(us('h1-refusal'))}, h2 refusal ${fmt(us('h2-refusal'))}, h1 client → h2 upstream ${fmt(us('h2up-forward'))}`,
      `- HTTP/2 / HTTP/1.1 admitted CPU per request: **${x(h2vsH1, 3)}**`,
      `- an h2 forward costs **${x(fwdVsRefusal)}** an h2 refusal (HTTP/1.1: ${x(h1FwdVsRefusal)})`,
      `- HTTP/2 upstream (undici allowH2) / HTTP/1.1 upstream, HTTP/1.1 clients: ${x(upVsH1, 3)}`,
      '',
      'HTTP/2 upstream client, alone in a process on the proxy core, 64 requests in flight over h2c to the same upstream (procs/h2-client.ts):',
      '',
      table(
        ['round', 'client', 'CPU µs/request', 'requests/s'],
        clients.map((c) => [c.round, c.client, fmt(c.cpuUsPerReq, 1), Math.round(c.rps)]),
      ),
      '',
      `- medians: undici (Pool, allowH2) ${fmt(cu('undici'), 1)} µs, node:http2 (one session) ${fmt(cu('node'), 1)} µs per request`,
    ].join('\n'),
    json: { rows, clients },
    targets: [
      { target: 'HTTP/2 admitted CPU per request <= 1.2x HTTP/1.1 (same route)', measured: `${fmt(median(h2vsH1), 3)}x`, met: ctx.quick ? null : median(h2vsH1) <= 1.2 },
      { target: 'h2 refusal <= 1/5 of an h2 forward (CPU per request)', measured: `forward = ${fmt(median(fwdVsRefusal), 2)}x refusal`, met: ctx.quick ? null : median(fwdVsRefusal) >= 5 },
    ],
  };
}

export async function h2Scenario(ctx: BenchContext): Promise<ScenarioOutput> {
  const rounds = ctx.quick ? 1 : 5;
  const durationS = ctx.quick ? 1 : 4;
  const p = ctx.placement;
  const procs: Proc[] = [];
  const agent = new Agent({ headersTimeout: 0, bodyTimeout: 0 });
  const hold = new AbortController();
  try {
    const upstream = await startFastUpstream(p.upstream);
    procs.push(upstream);
    const h2upstream = await startFastH2Upstream(p.upstream);
    procs.push(h2upstream);
    const admitting = await startSluice(p.proxy, writeConfig(ctx, 'h2-admit', withHttp2(admitAllPolicy(urlOf(upstream)), urlOf(h2upstream))));
    procs.push(admitting);
    const refusing = await startSluice(p.proxy, writeConfig(ctx, 'h2-refuse', withHttp2(refuseAllPolicy(urlOf(upstream)), null)));
    procs.push(refusing);
    const { held } = await holdSlot(refusing, agent, hold.signal);
    const a = urlOf(admitting);
    const r = urlOf(refusing);
    const runs: Run[] = [
      { name: 'h1-forward', proc: admitting, url: `${a}${PATH}`, h1: true, expect: '2xx' },
      { name: 'h2-forward', proc: admitting, url: `${a}${PATH}`, h1: false, expect: '2xx' },
      { name: 'h1-refusal', proc: refusing, url: `${r}${PATH}`, h1: true, expect: '5xx' },
      { name: 'h2-refusal', proc: refusing, url: `${r}${PATH}`, h1: false, expect: '5xx' },
      { name: 'h2up-forward', proc: admitting, url: `${a}/h2up${PATH}`, h1: true, expect: '2xx' },
    ];
    ctx.log(`10. h2: CPU per request with h2load (${runs.map((x) => x.name).join(', ')})`);
    for (const run of runs) await measure(ctx, run, 0, ctx.quick ? 1 : 2);
    const rows = await rotatingRounds(rounds, runs, async (run, round) => {
      const row = await measure(ctx, run, round, durationS);
      ctx.log(`  round ${round} ${run.name}: ${Math.round(row.rps)} answers/s, ${fmt(row.cpuUsPerReq, 1)} µs/answer`);
      return row;
    });
    hold.abort();
    await held;
    const clients = await clientComparison(ctx, urlOf(h2upstream));
    return report(ctx, rows, clients, durationS);
  } finally {
    hold.abort();
    await Promise.all(procs.map((x) => x.stop()));
    await agent.close();
  }
}


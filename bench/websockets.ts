/**
 * Scenario 9 (`--only websocket`): many open WebSockets through Sluice
 * (issue 13), with the real `ws` client (this process) and a `ws` echo
 * upstream (bench/procs/ws-upstream.ts), Sluice as the real CLI.
 *
 * a. Memory: Sluice's RSS before (after a warm-up of WARMUP sockets opened
 *    and closed), then at each quarter of N open sockets (opened OPEN_BATCH
 *    at a time), QUIET_MS after the last opened: growth per open WebSocket.
 * b. Messages: with all N open, ROUND_TRIPS echo round trips of a 64-byte
 *    text message, ECHO_SOCKETS sockets each sending its next message when
 *    the last came back: Sluice's CPU time per round trip (two frames
 *    relayed), and the admission counters (sluice_requests_total,
 *    sluice_settled_total) before and after, which must not move: messages
 *    never pass admission.
 * c. Close: every socket closed by the client; open WebSockets back to 0.
 *
 * N: 10,000 (the issue's target), or fewer when the file-descriptor limit
 * does not allow it: Sluice holds two sockets per WebSocket (client side and
 * upstream side), so N <= (RLIMIT_NOFILE - FD_SPARE) / 2; the limit is read
 * from the shell (`ulimit -n`) and reported with the result.
 *
 * Targets (issue 13): RSS growth <= 30 KB per open WebSocket; no
 * per-message cost in the admission path (the counters stay still).
 */
import { execFileSync } from 'node:child_process';
import WebSocket from 'ws';
import { fmt, getJson, table, writeConfig, type BenchContext, type ScenarioOutput, type TargetRow } from './common.js';
import { PROCS, startProc, startSluice, urlOf, type Proc } from './processes.js';

const TARGET_N = 10_000;
const RSS_TARGET_KB = 30;
/** File descriptors Sluice needs besides the sockets (listeners, stdio, libuv, the admin connection). */
const FD_SPARE = 150;
const WARMUP = 200;
const OPEN_BATCH = 100;
const ECHO_SOCKETS = 100;
const QUIET_MS = 2000;

function fdLimit(): number {
  try {
    return Number(execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim());
  } catch {
    return Number.NaN;
  }
}

function policy(upstream: string): string {
  return `listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { level: info }
defaults:
  limit: { algorithm: fixed, initial: 1000, min: 1, max: 1000 }
routes:
  - name: ws
    match: { pathPrefix: / }
    upstream: ${upstream}
    websocket: { maxOpen: 20000, idleTimeoutMs: 600000 }
`;
}

/** An open socket, or why it did not open (an HTTP status or an error message). */
function open(url: string): Promise<WebSocket | string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', (err) => resolve(err.message));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve(`HTTP ${res.statusCode}`);
    });
  });
}

/** Upgrades that did not open, by why; more than 1% of a phase fails the run. */
const failures = new Map<string, number>();

async function openMany(url: string, n: number, into: WebSocket[]): Promise<void> {
  let failed = 0;
  for (let i = 0; i < n; i += OPEN_BATCH) {
    for (const r of await Promise.all(Array.from({ length: Math.min(OPEN_BATCH, n - i) }, () => open(url)))) {
      if (typeof r !== 'string') into.push(r);
      else {
        failed++;
        failures.set(r, (failures.get(r) ?? 0) + 1);
      }
    }
  }
  if (failed > n / 100) throw new Error(`${failed} of ${n} upgrades failed: ${JSON.stringify(Object.fromEntries(failures))}`);
}

async function closeAll(sockets: WebSocket[]): Promise<void> {
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === WebSocket.CLOSED) return resolve();
          ws.once('close', () => resolve());
          ws.close();
        }),
    ),
  );
  sockets.length = 0;
}

/** `total` echo round trips over the first `width` sockets, each waiting for its echo before the next. */
async function echoes(sockets: readonly WebSocket[], width: number, total: number): Promise<void> {
  const msg = 'x'.repeat(64);
  let left = total;
  await Promise.all(
    sockets.slice(0, width).map(
      (ws) =>
        new Promise<void>((resolve) => {
          const next = (): void => {
            if (left <= 0) {
              ws.off('message', next);
              return resolve();
            }
            left--;
            ws.send(msg);
          };
          ws.on('message', next);
          next();
        }),
    ),
  );
}

interface Counters {
  readonly requests: number;
  readonly settled: number;
  readonly open: number;
}

async function counters(admin: string): Promise<Counters> {
  const r = await fetch(`${admin}/metrics`);
  const text = await r.text();
  const sum = (name: string): number =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${name}{`))
      .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  const state = await getJson<{ routes: { websocket: { open: number } | null }[] }>(`${admin}/admin/state`);
  return { requests: sum('sluice_requests_total'), settled: sum('sluice_settled_total'), open: state.routes[0]?.websocket?.open ?? -1 };
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Step {
  readonly open: number;
  readonly rssMb: number;
  readonly perSocketKb: number;
}

async function memorySteps(sluice: Proc, url: string, n: number, sockets: WebSocket[], quiet: number, log: (m: string) => void): Promise<{ baseMb: number; steps: Step[] }> {
  await settle(quiet);
  const base = sluice.rssBytes();
  const steps: Step[] = [];
  for (const q of [0.25, 0.5, 0.75, 1]) {
    await openMany(url, Math.round(n * q) - sockets.length, sockets);
    if (sockets.length === 0) throw new Error('no WebSocket opened');
    await settle(quiet);
    const rss = sluice.rssBytes();
    steps.push({ open: sockets.length, rssMb: rss / 2 ** 20, perSocketKb: (rss - base) / 1024 / sockets.length });
    log(`  websocket: ${sockets.length} open, Sluice RSS ${fmt(rss / 2 ** 20)} MB (${fmt((rss - base) / 1024 / sockets.length, 2)} KB per socket)`);
  }
  return { baseMb: base / 2 ** 20, steps };
}

export async function webSocketScenario(ctx: BenchContext): Promise<ScenarioOutput> {
  const limit = fdLimit();
  const n = ctx.quick ? 300 : Math.min(TARGET_N, Math.floor((limit - FD_SPARE) / 2));
  const roundTrips = ctx.quick ? 2000 : 50_000;
  const upstream = await startProc('ws-upstream', [`${PROCS}ws-upstream.js`], ctx.placement.upstream, (m) => typeof m['url'] === 'string');
  const sluice = await startSluice(ctx.placement.proxy, writeConfig(ctx, 'websocket', policy(urlOf(upstream))));
  const url = urlOf(sluice).replace(/^http/, 'ws');
  const admin = String(sluice.ready['admin']);
  const sockets: WebSocket[] = [];
  try {
    ctx.log(`websocket: fd limit ${limit}, ${n} WebSockets`);
    await openMany(url, WARMUP, sockets);
    await echoes(sockets, Math.min(ECHO_SOCKETS, sockets.length), 1000);
    await closeAll(sockets);
    // RSS is read QUIET_MS after each step (2 s; a quick run only checks that the scenario works).
    const mem = await memorySteps(sluice, url, n, sockets, ctx.quick ? 200 : QUIET_MS, ctx.log);
    const before = await counters(admin);
    const cpu0 = sluice.cpuSeconds();
    const t0 = performance.now();
    await echoes(sockets, ECHO_SOCKETS, roundTrips);
    const seconds = (performance.now() - t0) / 1000;
    const cpuUs = ((sluice.cpuSeconds() - cpu0) * 1e6) / roundTrips;
    const afterMsgs = await counters(admin);
    await closeAll(sockets);
    let closed = await counters(admin);
    for (let i = 0; i < 100 && closed.open !== 0; i++) {
      await settle(50);
      closed = await counters(admin);
    }
    return report(ctx, { limit, n, roundTrips, seconds, cpuUs, mem, before, afterMsgs, closed, rssClosedMb: sluice.rssBytes() / 2 ** 20 });
  } finally {
    await closeAll(sockets).catch(() => undefined);
    await sluice.stop();
    await upstream.stop();
  }
}

interface Result {
  readonly limit: number;
  readonly n: number;
  readonly roundTrips: number;
  readonly seconds: number;
  readonly cpuUs: number;
  readonly mem: { baseMb: number; steps: Step[] };
  readonly before: Counters;
  readonly afterMsgs: Counters;
  readonly closed: Counters;
  readonly rssClosedMb: number;
}

function report(ctx: BenchContext, r: Result): ScenarioOutput {
  const last = r.mem.steps.at(-1) as Step;
  const still = r.afterMsgs.requests === r.before.requests && r.afterMsgs.settled === r.before.settled;
  const short = ctx.quick ? ' (quick run)' : r.n < TARGET_N ? ` (${r.n}, not ${TARGET_N}: the fd limit is ${r.limit} and Sluice holds 2 sockets per WebSocket)` : '';
  const targets: TargetRow[] = [
    { target: `RSS growth per open WebSocket <= ${RSS_TARGET_KB} KB at ${TARGET_N} open`, measured: `${fmt(last.perSocketKb, 2)} KB at ${last.open} open${short}`, met: ctx.quick ? null : last.perSocketKb <= RSS_TARGET_KB },
    {
      target: 'no per-message cost in the admission path',
      measured: `${r.roundTrips} round trips: sluice_requests_total ${r.before.requests} → ${r.afterMsgs.requests}, sluice_settled_total ${r.before.settled} → ${r.afterMsgs.settled}; relay CPU ${fmt(r.cpuUs, 1)} µs per round trip`,
      met: still,
    },
  ];
  const markdown = [
    `${r.n} WebSockets through the real CLI (fd limit \`ulimit -n\` = ${r.limit}; ${WARMUP} opened and closed first as a warm-up), a \`ws\` echo upstream, \`ws\` clients in the bench process; pinning as in scenarios 0-2.`,
    '',
    table(
      ['open WebSockets', 'Sluice RSS (MB)', 'growth per socket (KB)'],
      [['0', fmt(r.mem.baseMb), '-'], ...r.mem.steps.map((s) => [String(s.open), fmt(s.rssMb), fmt(s.perSocketKb, 2)])],
    ),
    '',
    `Messages: ${r.roundTrips} echo round trips of 64 bytes over ${ECHO_SOCKETS} of the open sockets in ${fmt(r.seconds, 2)} s: Sluice CPU ${fmt(r.cpuUs, 1)} µs per round trip (a frame each way). Admission counters across the message phase: requests ${r.before.requests} → ${r.afterMsgs.requests}, settled ${r.before.settled} → ${r.afterMsgs.settled}.`,
    '',
    `After every client closed: ${r.closed.open} open, Sluice RSS ${fmt(r.rssClosedMb)} MB.${failures.size > 0 ? ` Upgrades that did not open (at most 1% allowed): ${[...failures].map(([k, v]) => `${v} × ${k}`).join(', ')}.` : ''}`,
  ].join('\n');
  return { id: 'websocket', title: '9. WebSockets: memory per open socket, messages outside admission', markdown, json: r, targets };
}

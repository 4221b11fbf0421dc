/**
 * `npm run soak`: is Sluice leak-free under sustained overload? Not part of
 * `npm test` (it runs for minutes).
 *
 *   npm run soak                          10 minutes at 3x capacity
 *   npm run soak -- --minutes 30 --load 5 --report soak.md
 *   (or SOAK_MINUTES, SOAK_LOAD, SOAK_REPORT)
 *
 * Starts the capacity upstream (8 workers x 50 ms = 160 req/s), Sluice in a
 * child process (see child.ts), and an open-loop load of interactive + batch
 * traffic at `load` x capacity. Every second it samples the Sluice process's
 * RSS, heap, open file descriptors and open connections; at the end it writes
 * a Markdown report (and the raw samples as JSON next to it) and exits 0 when
 * RSS, heap and the descriptors beyond open connections are flat (report.ts:
 * under 5% growth over the last 80% of the run), 1 when not.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { formatSummary, runOpenLoop, type SecondStats } from '../demo/load.js';
import { startCapacityUpstream } from '../demo/upstream.js';
import type { ChildSample } from './child.js';
import { formatReport, verdict, type Sample } from './report.js';
import { demoPolicy } from '../demo/policy.js';

const WORKERS = 8;
const SERVICE_MS = 50;
const CAPACITY = (WORKERS * 1000) / SERVICE_MS;

function arg(name: string, env: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return (i >= 0 ? process.argv[i + 1] : undefined) ?? process.env[env] ?? fallback;
}

function positive(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`soak: --${name} must be a number > 0 (got ${JSON.stringify(value)})\n`);
    process.exit(2);
  }
  return n;
}

const MINUTES = positive('minutes', arg('minutes', 'SOAK_MINUTES', '10'));
const LOAD = positive('load', arg('load', 'SOAK_LOAD', '3'));
const REPORT = arg('report', 'SOAK_REPORT', 'soak-report.md');


/** Sluice in a child process, sampled on demand (the child answers each 'sample' in order). */
async function startChild(upstreamUrl: string): Promise<{ child: ChildProcess; proxyUrl: string; sample: () => Promise<ChildSample> }> {
  const child = fork(new URL('./child.js', import.meta.url), [], {
    env: { ...process.env, SOAK_POLICY: demoPolicy(upstreamUrl, { algorithm: 'fixed', initial: WORKERS * 2, max: WORKERS * 8, route: 'soak', deadline: true }) },
    // The child collects garbage before each sample: the heap it reports is the live heap.
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<{ proxyUrl: string }>((resolve, reject) => {
    child.once('message', (m) => resolve(m as { proxyUrl: string }));
    child.once('exit', (code) => reject(new Error(`sluice exited early (${code})`)));
  });
  const waiting: ((s: ChildSample) => void)[] = [];
  child.on('message', (m) => {
    if ((m as ChildSample).kind === 'sample') waiting.shift()?.(m as ChildSample);
  });
  const sample = () =>
    new Promise<ChildSample>((resolve) => {
      waiting.push(resolve);
      child.send('sample');
    });
  return { child, proxyUrl: ready.proxyUrl, sample };
}

/** One second of the run: the child's numbers and the load's. */
function toSample(s: SecondStats, c: ChildSample): Sample {
  const refused = s.total.s429 + s.total.s503;
  if (s.t % 10 === 0) {
    process.stdout.write(
      `t=${s.t}s rss ${(c.rss / 2 ** 20).toFixed(1)} MB heap ${(c.heapUsed / 2 ** 20).toFixed(1)} MB fds ${c.fds} (connections ${c.connections}) ` +
        `inflight ${c.inflight} queued ${c.queued} | ok ${s.total.ok}/s refused ${refused}/s\n`,
    );
  }
  const { rss, heapUsed, external, fds, connections, inflight, queued } = c;
  return { t: s.t, rss, heapUsed, external, fds, connections, inflight, queued, offered: s.total.offered, ok: s.total.ok, refused };
}

async function main(): Promise<void> {
  const upstream = await startCapacityUpstream({ workers: WORKERS, serviceTimeMs: SERVICE_MS });
  const { child, proxyUrl, sample } = await startChild(upstream.url);
  const offered = CAPACITY * LOAD;
  process.stdout.write(`soak: ${MINUTES} min, ${offered} req/s offered to ${CAPACITY} req/s of capacity (${LOAD}x); sluice at ${proxyUrl}, pid ${child.pid}\n`);
  const samples: Sample[] = [];
  const pending: Promise<void>[] = [];
  const result = await runOpenLoop({
    url: proxyUrl,
    durationMs: MINUTES * 60_000,
    maxInFlight: 4000,
    requestTimeoutMs: 15_000,
    streams: [
      { name: 'interactive', ratePerSecond: offered * 0.3, path: '/api/page', headers: { 'x-request-timeout-ms': '2000' } },
      { name: 'batch', ratePerSecond: offered * 0.7, path: '/api/export', headers: { 'x-priority': 'batch' } },
    ],
    onSecond: (s) => {
      if (s.t >= MINUTES * 60) return; // drain seconds after the run: not load any more
      pending.push(sample().then((c) => void samples.push(toSample(s, c))));
    },
  });
  await Promise.all(pending);
  child.send('stop');
  await new Promise((resolve) => child.once('exit', resolve));
  const served = upstream.stats().served;
  await upstream.close();

  samples.sort((a, b) => a.t - b.t);
  const v = verdict(samples);
  const command = `npm run soak -- --minutes ${MINUTES} --load ${LOAD}`;
  const report = formatReport({ command, minutes: MINUTES, capacityPerSecond: CAPACITY, offeredPerSecond: offered, samples, upstreamServed: served }, v);
  writeFileSync(REPORT, report);
  writeFileSync(REPORT.replace(/(\.md)?$/, '.json'), JSON.stringify({ verdict: v, samples }, null, 1));
  process.stdout.write(`\n${formatSummary(result)}\n\n${report}\nreport written to ${REPORT}\n`);
  process.exit(v.flat ? 0 : 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

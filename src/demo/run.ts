/**
 * `npm run demo`: one command that shows admission control at work.
 *
 * Starts a simulated upstream with limited capacity (WORKERS workers x
 * SERVICE_MS each = CAPACITY req/s), Sluice in front of it with an embedded
 * demo policy, and a bounded open-loop load of interactive + batch traffic at
 * about 3x capacity for DURATION_S seconds. Prints a per-second table per lane
 * and the route's limit, then a summary, and exits by itself.
 */
import { pino } from 'pino';
import { buildApp } from '../app.js';
import { parseConfig } from '../config/load.js';
import { demoPolicy } from './policy.js';
import { formatSecondTable, formatSummary, runOpenLoop } from './load.js';
import { startCapacityUpstream } from './upstream.js';

const WORKERS = Number(process.env.DEMO_WORKERS ?? 8);
const SERVICE_MS = Number(process.env.DEMO_SERVICE_MS ?? 50);
const DURATION_S = Number(process.env.DEMO_DURATION_S ?? 20);
const CAPACITY = (WORKERS * 1000) / SERVICE_MS;
const LOAD_FACTOR = Number(process.env.DEMO_LOAD ?? 3);


const ms = (x: number | null) => (x === null ? '-' : x.toFixed(0));

async function main(): Promise<void> {
  const upstream = await startCapacityUpstream({ workers: WORKERS, serviceTimeMs: SERVICE_MS });
  const config = parseConfig(
    demoPolicy(upstream.url, { algorithm: process.env.DEMO_ALGORITHM ?? null, initial: WORKERS * 2, max: WORKERS * 8, route: 'demo' }),
    '<demo>',
  );
  const app = await buildApp(config, { logger: pino({ level: 'error' }) });
  const { proxyUrl } = await app.listen();
  const offered = CAPACITY * LOAD_FACTOR;
  process.stdout.write(
    `upstream: ${WORKERS} workers x ${SERVICE_MS} ms = ${CAPACITY} req/s capacity\n` +
      `sluice:   ${proxyUrl}, limit ${config.routes[0]?.limit.algorithm} ${config.routes[0]?.limit.initial}\n` +
      `load:     ${offered} req/s open-loop (30% interactive, 70% batch) for ${DURATION_S} s\n\n`,
  );
  let header = true;
  const result = await runOpenLoop({
    url: proxyUrl,
    durationMs: DURATION_S * 1000,
    maxInFlight: 2000,
    requestTimeoutMs: 15000,
    streams: [
      { name: 'interactive', ratePerSecond: offered * 0.3, path: '/api/page' },
      { name: 'batch', ratePerSecond: offered * 0.7, path: '/api/export', headers: { 'x-priority': 'batch' } },
    ],
    onSecond: (s) => {
      const st = app.state().routes[0];
      const table = formatSecondTable(s, { header }).trimEnd();
      header = false;
      const rtt = st ? `rtt ${ms(st.rtt.recentMs)}/${ms(st.rtt.baselineMs)}` : '';
      process.stdout.write(`${table}   | ${st?.state} limit ${st?.limit} inflight ${st?.inflight} queued ${st?.queued} ${rtt}\n`);
    },
  });
  process.stdout.write(`\n${formatSummary(result)}\n`);
  const served = upstream.stats().served;
  process.stdout.write(
    `upstream served ${served} requests = ${(served / DURATION_S).toFixed(0)} req/s over ${DURATION_S} s ` +
      `(capacity ${CAPACITY} req/s)\n`,
  );
  await app.close();
  await upstream.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

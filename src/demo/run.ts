/**
 * `npm run demo`: one command that shows what admission control achieves.
 *
 * The same open-loop load of interactive + batch traffic, phase by phase
 * (normal, overload at 3x capacity, a slowdown: the service time x3 with the
 * same workers), against the same simulated upstream (WORKERS workers x
 * SERVICE_MS, an unbounded FIFO), first through the bare @fastify/http-proxy,
 * then through Sluice (./compare.ts). Prints a labelled line per second of
 * each run, then both side by side per phase and lane (./report.ts), and
 * exits by itself (about 60 s).
 *
 * DEMO_WORKERS, DEMO_SERVICE_MS, DEMO_TIMEOUT_MS (the clients' patience),
 * DEMO_PHASE_SCALE (phase lengths x this) and DEMO_ALGORITHM (Sluice's limit
 * algorithm; `fixed` is set to the worker count) change the setup.
 */
import { runTarget } from './compare.js';
import { DEMO_PHASES, type DemoSetup, type TargetResult } from './phases.js';
import { describePhases, formatComparison, formatVerdict, TABLE_NOTES } from './report.js';

function setupFromEnv(): DemoSetup {
  const scale = Number(process.env.DEMO_PHASE_SCALE ?? 1);
  return {
    workers: Number(process.env.DEMO_WORKERS ?? 8),
    serviceMs: Number(process.env.DEMO_SERVICE_MS ?? 50),
    interactiveShare: 0.3,
    clientTimeoutMs: Number(process.env.DEMO_TIMEOUT_MS ?? 2000),
    phases: DEMO_PHASES.map((p) => ({ ...p, seconds: Math.max(1, Math.round(p.seconds * scale)) })),
    algorithm: process.env.DEMO_ALGORITHM ?? null,
  };
}

async function main(): Promise<void> {
  const setup = setupFromEnv();
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out(`The same load against the same upstream, without and with Sluice; clients give up after ${setup.clientTimeoutMs} ms.`);
  for (const line of describePhases(setup)) out(line);
  const results: TargetResult[] = [];
  for (const target of ['bare', 'sluice'] as const) {
    out(`\n${target === 'bare' ? 'without admission control (bare @fastify/http-proxy)' : 'with Sluice'}:`);
    results.push(await runTarget(target, setup, out));
  }
  const [bare, sluice] = results as [TargetResult, TargetResult];
  out(`\n${formatComparison(bare, sluice)}\n`);
  for (const line of TABLE_NOTES) out(line);
  out('');
  for (const line of formatVerdict(bare, sluice)) out(line);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

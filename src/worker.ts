/**
 * The entry of a worker process (workers > 1): node:cluster forks it from
 * the primary (instance/cluster/primary.ts). Builds this worker's share of
 * the instance with buildApp and serves it (instance/cluster/worker.ts).
 * Not meant to be started by hand.
 */
import cluster from 'node:cluster';
import { buildApp } from './app.js';
import { serveWorker } from './instance/cluster/worker.js';

if (!cluster.isWorker) {
  process.stderr.write('sluice: dist/worker.js is started by the primary (workers > 1); run dist/cli.js\n');
  process.exit(2);
}

serveWorker((config, share) => buildApp(config, { share })).catch((err: unknown) => {
  process.stderr.write(`sluice worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

/**
 * The Sluice process under soak. It builds Sluice from the policy in
 * SOAK_POLICY, listens on loopback, and answers the parent's 'sample'
 * messages with its own memory, open file descriptors and route state. It
 * runs in a process of its own so that the numbers are Sluice's, not the load
 * generator's or the simulated upstream's.
 *
 * Each sample first runs a full garbage collection (the parent starts this
 * process with --expose-gc), so `heapUsed` is the live heap: garbage not yet
 * collected is not a leak, and without this the GC's own rhythm (a sawtooth,
 * or a compaction that hands memory back for a minute) dominates the series.
 * A full GC of a heap this size takes milliseconds; once a second it costs the
 * proxy a few percent of one core.
 */
import { readdirSync } from 'node:fs';
import { pino } from 'pino';
import { buildApp } from '../app.js';
import { parseConfig } from '../config/load.js';

export interface ChildSample {
  readonly kind: 'sample';
  readonly rss: number;
  readonly heapUsed: number;
  /** Memory of C++ objects bound to JS ones (buffers, sockets' native state). */
  readonly external: number;
  readonly fds: number;
  /** Client connections to the proxy + connections from the route pools to the upstreams. */
  readonly connections: number;
  readonly inflight: number;
  readonly queued: number;
}

function openFds(): number {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1; // not Linux: reported as unknown
  }
}

async function main(): Promise<void> {
  const send = process.send?.bind(process);
  const policy = process.env.SOAK_POLICY;
  if (send === undefined || policy === undefined) throw new Error('run me through `npm run soak`');
  const app = await buildApp(parseConfig(policy, '<soak>'), { logger: pino({ level: 'error' }) });
  const { proxyUrl } = await app.listen();
  const gc = (globalThis as { gc?: () => void }).gc;
  const clientConnections = () =>
    new Promise<number>((resolve) => app.proxy.server.getConnections((err, n) => resolve(err ? 0 : n)));
  process.on('message', (m: unknown) => {
    if (m === 'sample') {
      void clientConnections().then((clients) => {
        gc?.();
        const mem = process.memoryUsage();
        const routes = app.state().routes;
        const sample: ChildSample = {
          kind: 'sample',
          rss: mem.rss,
          heapUsed: mem.heapUsed,
          external: mem.external,
          fds: openFds(),
          connections: clients + routes.reduce((n, r) => n + r.upstreamConnections, 0),
          inflight: routes.reduce((n, r) => n + r.inflight, 0),
          queued: routes.reduce((n, r) => n + r.queued, 0),
        };
        send(sample);
      });
    } else if (m === 'stop') {
      void app.close().then(() => process.exit(0));
    }
  });
  // The parent went away: do not linger.
  process.on('disconnect', () => process.exit(0));
  send({ kind: 'ready', proxyUrl });
}

main().catch((err: unknown) => {
  process.stderr.write(`soak child failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

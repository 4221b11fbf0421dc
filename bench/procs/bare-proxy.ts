/**
 * Process entry: the baseline, a bare @fastify/http-proxy in front of
 * --upstream URL on 127.0.0.1 (port 0), printing {"url": ...} once
 * listening. The proxy itself is src/demo/bare-proxy.ts (the demo compares
 * against the same one): library defaults, no logging.
 */
import { parseArgs } from 'node:util';
import { startBareProxy } from '../../src/demo/bare-proxy.js';

const { values } = parseArgs({ options: { upstream: { type: 'string' } } });

async function main(): Promise<void> {
  if (!values.upstream) throw new Error('--upstream URL is required');
  const proxy = await startBareProxy(values.upstream);
  process.stdout.write(`${JSON.stringify({ url: proxy.url })}\n`);
  process.once('SIGTERM', () => {
    proxy.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bare proxy: ${String(err)}\n`);
  process.exit(1);
});

/**
 * Process entry: the baseline, a bare @fastify/http-proxy in front of
 * --upstream URL on 127.0.0.1 (port 0), printing {"url": ...} once
 * listening. Library defaults, no logging: what a user gets without Sluice.
 */
import { parseArgs } from 'node:util';
import httpProxy from '@fastify/http-proxy';
import fastify from 'fastify';

const { values } = parseArgs({ options: { upstream: { type: 'string' } } });

async function main(): Promise<void> {
  if (!values.upstream) throw new Error('--upstream URL is required');
  const app = fastify({ logger: false });
  await app.register(httpProxy, { upstream: values.upstream });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  process.stdout.write(`${JSON.stringify({ url })}\n`);
  process.once('SIGTERM', () => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bare proxy: ${String(err)}\n`);
  process.exit(1);
});

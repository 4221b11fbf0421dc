/**
 * The baseline every comparison uses: a bare @fastify/http-proxy in front of
 * an upstream, library defaults, no logging, nothing else — what a user gets
 * without Sluice. The demo runs it in a process of its own
 * (startBareProxyProcess, ./child.ts); the benchmarks too
 * (bench/procs/bare-proxy.ts).
 */
import httpProxy from '@fastify/http-proxy';
import fastify from 'fastify';
import { forkService, runAsChild, type ChildService } from './child.js';

/** Listens on 127.0.0.1, port 0 unless given. */
export async function startBareProxy(upstream: string, port = 0): Promise<ChildService> {
  const app = fastify({ logger: false });
  await app.register(httpProxy, { upstream });
  const url = await app.listen({ host: '127.0.0.1', port });
  return { url, close: () => app.close() };
}

/** The same in a child process. */
export function startBareProxyProcess(upstream: string): Promise<ChildService> {
  return forkService(import.meta.url, { upstream }, 'the bare proxy');
}

runAsChild((o: { upstream: string }) => startBareProxy(o.upstream));

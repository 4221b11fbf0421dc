/**
 * The simulated capacity upstream (./upstream.ts) in a child process of its
 * own, as a real service would run: under a flood, the proxy's work (or the
 * load generator's) must not delay the upstream's service timers, which
 * would shrink its capacity and blame the proxy's queueing for it. Used by
 * `npm run demo` (./compare.ts) and `npm run demo:serve` (./serve.ts).
 *
 * The parent talks to it over its control endpoint (GET/POST /_control);
 * the child exits when the parent goes away (./child.ts).
 */
import { Agent, request } from 'undici';
import { forkService, runAsChild } from './child.js';
import { startCapacityUpstream, type CapacityUpstreamSettings, type CapacityUpstreamStats } from './upstream.js';

export interface UpstreamProcessOptions {
  readonly host?: string;
  /** 0 (the default) picks a free port. */
  readonly port?: number;
  readonly workers: number;
  readonly serviceTimeMs: number;
}

export interface UpstreamProcess {
  readonly url: string;
  /** GET /_control. */
  state(): Promise<CapacityUpstreamSettings & { stats: CapacityUpstreamStats }>;
  /** POST /_control. */
  set(settings: { serviceTimeMs?: number; workers?: number }): Promise<void>;
  close(): Promise<void>;
}

export async function startUpstreamProcess(o: UpstreamProcessOptions): Promise<UpstreamProcess> {
  const svc = await forkService(import.meta.url, o, `the demo upstream (${o.host ?? '127.0.0.1'}:${o.port ?? 0})`);
  const url = svc.url;
  const agent = new Agent({ connections: 2 });
  const control = `${url}/_control`;
  return {
    url,
    async state() {
      const r = await request(control, { dispatcher: agent });
      return (await r.body.json()) as CapacityUpstreamSettings & { stats: CapacityUpstreamStats };
    },
    async set(settings) {
      const r = await request(control, { dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(settings) });
      const text = await r.body.text();
      if (r.statusCode !== 200) throw new Error(`POST ${control}: ${r.statusCode} ${text}`);
    },
    async close() {
      await agent.close();
      await svc.close();
    },
  };
}

runAsChild((o: UpstreamProcessOptions) => startCapacityUpstream({ host: o.host, port: o.port, workers: o.workers, serviceTimeMs: o.serviceTimeMs }));

/**
 * Builds a Sluice instance from a loaded config: the proxy listener and the
 * admin listener, wired to one runtime. No listening happens here, so tests
 * and the CLI decide addresses and lifecycle.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/types.js';
import { systemClock, type Clock, type Random } from './core/clock.js';
import { buildAdmin, type AdminState, type RouteState } from './observability/admin.js';
import { createLogger } from './observability/logger.js';
import { Metrics, teeEvents } from './observability/metrics.js';
import { backlogSeconds, backlogVerdict } from './observability/readiness.js';
import { SampledLog } from './observability/sampled-log.js';
import { proxyPlugin, type ProxyEvents } from './proxy/proxy.js';
import { createRuntime, type Runtime, type RuntimeDeps } from './proxy/runtime.js';
import { sluiceVersion } from './version.js';

export interface AppDeps {
  readonly clock?: Clock;
  readonly random?: Random;
  readonly logger?: Logger;
  readonly events?: ProxyEvents;
  readonly createLimit?: RuntimeDeps['createLimit'];
}

export interface Sluice {
  readonly proxy: FastifyInstance;
  readonly admin: FastifyInstance;
  readonly logger: Logger;
  /** This instance's metrics (its own prom-client Registry); served on the admin listener at /metrics. */
  readonly metrics: Metrics;
  /** Starts both listeners (addresses from config unless overridden); returns their base URLs. */
  listen(override?: { proxyPort?: number; adminPort?: number }): Promise<{ proxyUrl: string; adminUrl: string }>;
  state(): AdminState;
  close(): Promise<void>;
}

const REQUEST_ID = /^[A-Za-z0-9._:\-]{1,128}$/;

/** Accept a caller's x-request-id when it is sane (it ends up in logs); otherwise make one. */
function requestId(req: { headers: Record<string, string | string[] | undefined> }): string {
  const id = req.headers['x-request-id'];
  return typeof id === 'string' && REQUEST_ID.test(id) ? id : randomUUID();
}

/** One decimal is all an operator needs; keeps /admin/state readable. */
function round1<T extends number | null>(x: T): T {
  return (x === null ? null : Math.round(x * 10) / 10) as T;
}

function urlOf(app: FastifyInstance): string {
  const a = app.server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return `http://${host}:${a.port}`;
}

export async function buildApp(config: Config, deps: AppDeps = {}): Promise<Sluice> {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const logger = deps.logger ?? createLogger(config.log);
  const runtime: Runtime = createRuntime(config, { clock, random, createLimit: deps.createLimit });
  const refusalLog = new SampledLog(clock, 20);
  const metrics = new Metrics({
    version: sluiceVersion(),
    routes: () => state().routes,
    suppressedLogLines: () => refusalLog.suppressedTotal,
  });
  metrics.bindRoutes(runtime.routes);

  const proxy = fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Per-request info lines would cost more than admission itself; refusals and errors are logged explicitly.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    genReqId: requestId,
    return503OnClosing: true,
  });
  await proxy.register(proxyPlugin, {
    runtime: () => runtime,
    clock,
    random,
    events: deps.events ? teeEvents(metrics, deps.events) : metrics,
    refusalLog,
  });

  let draining = false;

  function state(): AdminState {
    const routes: RouteState[] = runtime.routes.map((r) => {
      const s = r.limiter.snapshot();
      return {
        name: r.cfg.name,
        upstream: r.cfg.upstream,
        algorithm: r.cfg.limit.algorithm,
        limit: s.limit,
        limitMin: r.cfg.limit.min,
        limitMax: r.cfg.limit.max,
        inflight: s.inflight,
        queued: s.queued,
        state: s.state,
        queueWaitP90Ms: round1(s.queueWaitP90Ms),
        rtt: { recentMs: round1(s.rtt.recentMs), baselineMs: round1(s.rtt.baselineMs) },
        completionsPerSecond: Math.round(s.completionsPerSecond * 10) / 10,
        backlogSeconds: backlogSeconds(s.queued, s.completionsPerSecond),
        lanes: s.lanes.map((l) => ({ ...l, ...metrics.laneTotals(r.cfg.name, l.name) })),
      };
    });
    return { ready: !draining, draining, routes };
  }

  const admin = buildAdmin({
    logger,
    state,
    notReadyReason: () => (draining ? 'draining' : backlogVerdict(state().routes, config.readiness.maxBacklogSeconds)),
    metrics,
  });

  return {
    proxy,
    admin,
    logger,
    metrics,
    async listen(override = {}) {
      await proxy.listen({ host: config.listen.host, port: override.proxyPort ?? config.listen.port });
      await admin.listen({ host: config.admin.host, port: override.adminPort ?? config.admin.port });
      return { proxyUrl: urlOf(proxy), adminUrl: urlOf(admin) };
    },
    state,
    async close() {
      draining = true;
      await Promise.all([proxy.close(), admin.close()]);
      await Promise.all(runtime.routes.map((r) => r.pool.destroy()));
    },
  };
}

/**
 * The admin listener (loopback by default): health, readiness, metrics, state
 * and the live page. Nothing here passes through admission, so it answers
 * while the proxy port is saturated.
 *
 *   GET /healthz       200 while the event loop turns (liveness)
 *   GET /readyz        200, or 503 with a JSON reason (draining, backlog)
 *   GET /metrics       Prometheus text exposition
 *   GET /admin/state   JSON: per route limit, in-flight, queues, state, totals
 *   GET /              the live page (polls /admin/state)
 *   POST /admin/reload re-reads the config file (200, 422 invalid, 409 draining)
 */
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ReloadResult } from '../app.js';
import type { BreakerSnapshot } from '../core/breaker.js';
import { LIVE_PAGE } from './live-page.js';
import type { NotReady } from './readiness.js';

export interface LaneState {
  readonly name: string;
  readonly inflight: number;
  readonly queued: number;
  readonly oldestQueuedMs: number;
  readonly maxSlots: number;
  readonly minSlots: number;
  /** Requests admitted in this lane since start. */
  readonly admitted: number;
  /** Requests refused in this lane since start. */
  readonly refused: number;
}

export interface RouteState {
  readonly name: string;
  readonly upstream: string;
  readonly algorithm: string;
  readonly limit: number;
  /** The configured bounds of the limit (limit.min, limit.max). */
  readonly limitMin: number;
  readonly limitMax: number;
  readonly inflight: number;
  readonly queued: number;
  /** The shed state: while `overloaded`, lanes after the first are refused at the door. */
  readonly state: 'normal' | 'overloaded';
  /** The shed signal: p90 queue wait of the last closed window (ms). */
  readonly queueWaitP90Ms: number;
  /** The limit's RTT estimates (ms): the last window's and the no-queueing baseline; null when not measured. */
  readonly rtt: { readonly recentMs: number | null; readonly baselineMs: number | null };
  readonly completionsPerSecond: number;
  /** Estimated seconds to drain the queues (queued / completion rate); null when nothing completes while requests wait. */
  readonly backlogSeconds: number | null;
  /** null when the route's breaker is disabled. */
  readonly circuitBreaker: BreakerSnapshot | null;
  /** Connections open to the route's upstream (its pool's, idle keep-alives included). */
  readonly upstreamConnections: number;
  readonly lanes: readonly LaneState[];
}

export interface AdminState {
  readonly ready: boolean;
  readonly draining: boolean;
  readonly routes: readonly RouteState[];
}

export interface AdminOptions {
  readonly logger: Logger;
  readonly state: () => AdminState;
  /** Why the instance is not ready (a reason code, or a reason with details), or null when it is. */
  readonly notReadyReason: () => string | NotReady | null;
  /** The Prometheus exposition; /metrics answers 404 without it. */
  readonly metrics?: { readonly contentType: string; render(): Promise<string> };
  /** POST /admin/reload: re-reads the config file; absent, the endpoint is not offered. */
  readonly reload?: () => ReloadResult;
}

/** 200 reloaded (warnings, if any, in the body); 422 the file is invalid (running config kept); 409 draining. */
function reloadStatus(r: ReloadResult): number {
  if (r.result === 'success') return 200;
  return r.reason === 'draining' ? 409 : 422;
}

export function buildAdmin(opts: AdminOptions): FastifyInstance {
  const admin = fastify({ loggerInstance: opts.logger.child({ listener: 'admin' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
  admin.get('/healthz', async () => ({ status: 'ok' }));
  admin.get('/readyz', async (_req, reply) => {
    const r = opts.notReadyReason();
    if (r !== null) {
      const body = typeof r === 'string' ? { reason: r } : r;
      return reply.code(503).header('cache-control', 'no-store').send({ status: 'not_ready', ...body });
    }
    return reply.header('cache-control', 'no-store').send({ status: 'ready' });
  });
  const metrics = opts.metrics;
  if (metrics !== undefined) {
    admin.get('/metrics', async (_req, reply) => {
      const text = await metrics.render();
      return reply.type(metrics.contentType).header('cache-control', 'no-store').send(text);
    });
  }
  admin.get('/admin/state', async (_req, reply) => reply.header('cache-control', 'no-store').send(opts.state()));
  admin.get('/', async (_req, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      // Everything is inline; nothing may load from elsewhere.
      .header('content-security-policy', "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:")
      .send(LIVE_PAGE),
  );
  const reload = opts.reload;
  if (reload !== undefined) {
    admin.post('/admin/reload', async (_req, reply) => {
      const r = reload();
      return reply.code(reloadStatus(r)).header('cache-control', 'no-store').send(r);
    });
  }
  return admin;
}

/**
 * The admin listener (loopback by default): health, readiness, metrics, state
 * and the live page. Nothing here passes through admission, so it answers
 * while the proxy port is saturated.
 *
 *   GET /healthz       200 while the event loop turns (liveness)
 *   GET /readyz        200, or 503 with a JSON reason (draining, backlog)
 *   GET /metrics       Prometheus text exposition
 *   GET /admin/state   JSON: per route limit, in-flight, queues, state, totals
 *   GET /admin/history JSON: the last 5 minutes, one sample a second (history.ts);
 *                      ?since=SEQ only the samples after SEQ
 *   GET /              the live page (polls /admin/history)
 *   POST /admin/reload re-reads the config file (200, 422 invalid, 409 draining)
 *
 * Every endpoint but /metrics, /healthz and /readyz answers only its own Host;
 * POST takes JSON only and, off loopback, a bearer token (admin-guard.ts).
 */
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { systemClock, type Clock, type Timer } from '../core/clock.js';
import { guardAdmin, type AdminAccess } from './admin-guard.js';
import { History, sampleEvery, type RouteTotals, type Snapshot } from './history.js';
import { LIVE_PAGE } from './live-page.js';
import type { NotReady } from './readiness.js';
import type { AdminState, ReloadResult } from './state.js';

/** A value now, or later (with workers > 1 the primary asks its workers first). */
type Answer<T> = T | Promise<T>;

export interface AdminOptions {
  readonly logger: Logger;
  readonly state: () => Answer<AdminState>;
  /** Why the instance is not ready (a reason code, or a reason with details), or null when it is. */
  readonly notReadyReason: () => Answer<string | NotReady | null>;
  /**
   * The Prometheus exposition; /metrics answers 404 without it. `routeTotals`
   * (the metrics' cumulative counters per route) feeds the history's rates and
   * percentiles; without it the history keeps state only.
   */
  readonly metrics?: {
    readonly contentType: string;
    render(): Promise<string>;
    routeTotals?(route: string, lanes: readonly string[]): RouteTotals;
  };
  /** The history's input, when it is not state() with metrics.routeTotals (the primary of workers sums its workers'). */
  readonly snapshot?: () => Promise<Snapshot>;
  /** Runs the history's once-a-second sampling (default: the process clock). */
  readonly clock?: Clock;
  /** Who may use the browser-facing and POST endpoints (admin-guard.ts); read per request, so reloads apply. */
  readonly access: () => AdminAccess;
  /** POST /admin/reload: re-reads the config file; absent, the endpoint is not offered. */
  readonly reload?: () => Answer<ReloadResult>;
}

/** 200 reloaded (warnings, if any, in the body); 422 the file is invalid (running config kept); 409 draining; 503 a worker could not take it (none did). */
function reloadStatus(r: ReloadResult): number {
  if (r.result === 'success') return 200;
  return r.reason === 'draining' ? 409 : r.reason === 'workers' ? 503 : 422;
}

/** How often the history samples, and how many samples it keeps (5 minutes). */
const HISTORY_EVERY_MS = 1000;
const HISTORY_CAPACITY = 300;

/** The history's input: the state /admin/state shows, with each route's cumulative counters. */
async function snapshot(opts: AdminOptions): Promise<Snapshot> {
  if (opts.snapshot !== undefined) return opts.snapshot();
  const s = await opts.state();
  const totals = opts.metrics?.routeTotals?.bind(opts.metrics);
  const notReady = await opts.notReadyReason();
  return {
    ready: s.ready && notReady === null,
    draining: s.draining,
    notReady,
    routes: s.routes.map((view) => ({ view, totals: totals?.(view.name, view.lanes.map((l) => l.name)) })),
    listener: s.listener,
  };
}

/** Samples into a History once a second while the listener is up (from ready to close). */
function withHistory(admin: FastifyInstance, opts: AdminOptions, log: FastifyBaseLogger): History {
  const history = new History(HISTORY_CAPACITY);
  const clock = opts.clock ?? systemClock;
  let timer: Timer | undefined;
  let busy = false;
  const sample = () => {
    // A sample that takes longer than the interval (workers slow to answer) is not stacked on.
    if (busy) return;
    busy = true;
    const taken = clock.now();
    snapshot(opts)
      .then((s) => history.record({ mono: taken, unix: Date.now() }, s))
      .catch((err: unknown) => log.error({ err }, 'live history: sampling failed'))
      .finally(() => (busy = false));
  };
  admin.addHook('onReady', async () => {
    timer ??= sampleEvery(clock, HISTORY_EVERY_MS, sample);
  });
  admin.addHook('onClose', async () => timer?.cancel());
  return history;
}

export function buildAdmin(opts: AdminOptions): FastifyInstance {
  const admin = fastify({ loggerInstance: opts.logger.child({ listener: 'admin' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
  guardAdmin(admin, opts.access);
  const history = withHistory(admin, opts, admin.log);
  admin.get('/healthz', async () => ({ status: 'ok' }));
  admin.get('/readyz', async (_req, reply) => {
    const r = await opts.notReadyReason();
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
  admin.get('/admin/state', async (_req, reply) => reply.header('cache-control', 'no-store').send(await opts.state()));
  admin.get<{ Querystring: { since?: string } }>('/admin/history', async (req, reply) => {
    const since = Number(req.query.since ?? 0);
    const samples = history.since(Number.isFinite(since) ? since : 0);
    return reply.header('cache-control', 'no-store').send({ everyMs: HISTORY_EVERY_MS, capacity: HISTORY_CAPACITY, latest: history.latest, samples });
  });
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
      const r = await reload();
      return reply.code(reloadStatus(r)).header('cache-control', 'no-store').send(r);
    });
  }
  return admin;
}

/**
 * The admin listener (loopback by default): health, readiness and state.
 * Nothing here passes through admission, so it answers while the proxy port
 * is saturated.
 */
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

export interface RouteState {
  readonly name: string;
  readonly upstream: string;
  readonly algorithm: string;
  readonly limit: number;
  readonly inflight: number;
  readonly queued: number;
  readonly state: 'normal' | 'overloaded';
  readonly completionsPerSecond: number;
  readonly lanes: readonly {
    readonly name: string;
    readonly inflight: number;
    readonly queued: number;
    readonly oldestQueuedMs: number;
    readonly maxSlots: number;
    readonly minSlots: number;
  }[];
}

export interface AdminState {
  readonly ready: boolean;
  readonly draining: boolean;
  readonly routes: readonly RouteState[];
}

export interface AdminOptions {
  readonly logger: Logger;
  readonly state: () => AdminState;
  /** Why the instance is not ready, or null when it is. */
  readonly notReadyReason: () => string | null;
}

export function buildAdmin(opts: AdminOptions): FastifyInstance {
  const admin = fastify({ loggerInstance: opts.logger.child({ listener: 'admin' }) as FastifyBaseLogger, logController: new LogController({ disableRequestLogging: true }) });
  admin.get('/healthz', async () => ({ status: 'ok' }));
  admin.get('/readyz', async (_req, reply) => {
    const reason = opts.notReadyReason();
    if (reason !== null) return reply.code(503).send({ status: 'not_ready', reason });
    return { status: 'ready' };
  });
  admin.get('/admin/state', async () => opts.state());
  return admin;
}

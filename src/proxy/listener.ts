/**
 * The proxy listener: a fastify instance whose server is the front
 * (./front.ts, fastify's `serverFactory`) and whose one plugin forwards
 * (./forward.ts). Refusals and errors never reach fastify; admitted
 * requests reach it with their Exchange attached.
 */
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ServerConfig } from '../config/types.js';
import type { AdmitDeps } from './admit.js';
import { forwardPlugin } from './forward.js';
import { admittedRequestId, frontServer } from './front.js';
import { Answers } from './responses.js';

/** What admission needs, less the answers (built here) and fastify's handler (the server factory receives it). */
export interface ProxyListenerOptions extends Omit<AdmitDeps, 'forward' | 'answers'> {
  readonly server: ServerConfig;
}

export async function buildProxyListener(opts: ProxyListenerOptions): Promise<FastifyInstance> {
  const { runtime, lifecycle, clock, random, events, log } = opts;
  const answers = new Answers(opts.server.keepAliveTimeoutMs);
  const server = frontServer({
    server: opts.server,
    events,
    log,
    admit: { runtime, lifecycle, clock, random, events, log, refusalLog: opts.refusalLog, shadowLog: opts.shadowLog, answers },
  });
  const proxy = fastify({
    loggerInstance: log as FastifyBaseLogger,
    // Per-request info lines would cost more than admission itself; refusals and errors are logged explicitly.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    genReqId: admittedRequestId,
    // Requests admitted before the listener closed may still reach fastify while it closes.
    return503OnClosing: false,
    serverFactory: server as never,
    // The front answers Node's parser errors itself (./front.ts).
    clientErrorHandler: () => undefined,
  });
  await proxy.register(forwardPlugin, { runtime, lifecycle, clock, random, events, log, answers });
  return proxy;
}

/**
 * The proxy listener: a fastify instance whose server is the front
 * (./front.ts, fastify's `serverFactory`) and whose one plugin forwards
 * (./forward.ts). Refusals and errors never reach fastify; admitted
 * requests reach it with their Exchange attached.
 */
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ProxyListen, ServerConfig } from '../config/types.js';
import type { AdmitDeps } from './admit.js';
import { forwardPlugin } from './forward.js';
import { Front, admittedRequestId } from './front.js';
import { Answers } from './responses.js';
import type { WebSockets } from './websocket.js';

/** What admission needs, less the answers (built here) and fastify's handler (the server factory receives it). */
export interface ProxyListenerOptions extends Omit<AdmitDeps, 'forward' | 'answers'> {
  readonly listen: ProxyListen;
  readonly server: ServerConfig;
  /** The instance's WebSockets (./websocket.ts): they take the listener's upgrades. */
  readonly webSockets?: WebSockets;
}

/** The proxy listener: the fastify instance (listen, close) and its front (protocols, reload of the certificate). */
export interface ProxyListener {
  readonly proxy: FastifyInstance;
  readonly front: Front;
}

/**
 * The proxy listener's logger as fastify gets it: every child made on first
 * use. fastify makes one per request (pino's child serialises the request
 * id binding each time); an admitted request that never logs needs none,
 * and Sluice's own lines carry the request id themselves. Given as
 * fastify's logger instance (not as a childLoggerFactory, which fastify
 * checks method by method on every request), fastify's own root logger and
 * each request's are lazy children of it.
 */
class LazyLogger {
  private made: Logger | null = null;
  constructor(
    private readonly parent: Logger | LazyLogger,
    private readonly bindings: Record<string, unknown>,
    private readonly opts: Record<string, unknown> | undefined,
  ) {}
  private get real(): Logger {
    return (this.made ??= LazyLogger.realOf(this.parent).child(this.bindings, this.opts));
  }
  private static realOf(l: Logger | LazyLogger): Logger {
    return l instanceof LazyLogger ? l.real : l;
  }
  get level(): string {
    return this.made?.level ?? this.parent.level;
  }
  set level(level: string) {
    this.real.level = level;
  }
  fatal(...a: unknown[]): void {
    this.real.fatal(...(a as [string]));
  }
  error(...a: unknown[]): void {
    this.real.error(...(a as [string]));
  }
  warn(...a: unknown[]): void {
    this.real.warn(...(a as [string]));
  }
  info(...a: unknown[]): void {
    this.real.info(...(a as [string]));
  }
  debug(...a: unknown[]): void {
    this.real.debug(...(a as [string]));
  }
  trace(...a: unknown[]): void {
    this.real.trace(...(a as [string]));
  }
  silent(): void {}
  child(bindings: Record<string, unknown>, opts?: Record<string, unknown>): LazyLogger {
    return new LazyLogger(this, bindings, opts);
  }
}

export async function buildProxyListener(opts: ProxyListenerOptions): Promise<ProxyListener> {
  const { runtime, lifecycle, clock, random, events, log } = opts;
  const answers = new Answers(opts.server.keepAliveTimeoutMs);
  const front = new Front({
    listen: opts.listen,
    server: opts.server,
    events,
    log,
    webSockets: opts.webSockets,
    admit: { runtime, lifecycle, clock, random, events, log, refusalLog: opts.refusalLog, shadowLog: opts.shadowLog, answers },
  });
  const proxy = fastify({
    loggerInstance: new LazyLogger(log, {}, undefined) as unknown as FastifyBaseLogger,
    // Per-request info lines would cost more than admission itself; refusals and errors are logged explicitly.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    genReqId: admittedRequestId,
    // Requests admitted before the listener closed may still reach fastify while it closes.
    return503OnClosing: false,
    serverFactory: front.factory as never,
    // The front answers Node's parser errors itself (./front.ts).
    clientErrorHandler: () => undefined,
  });
  await proxy.register(forwardPlugin, { runtime, lifecycle, clock, random, events, log, answers });
  return { proxy, front };
}

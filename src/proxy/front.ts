/**
 * The proxy listener's front: Sluice's own servers, handed to fastify as
 * its `serverFactory`, so every request reaches admission (./admit.ts) as
 * the raw (req, res) before fastify builds a Request or a Reply, runs its
 * router or its hooks. Only admitted requests are passed on to fastify's
 * handler (and @fastify/http-proxy, ./forward.ts); refusals and errors are
 * answered here from prebuilt bytes (./responses.ts).
 *
 * One listening socket, three ways in (each request to the same admission):
 *
 *   connection ─┬─ TLS (listen.tls): the handshake's ALPN decides
 *               │    h2        → the HTTP/2 session server
 *               │    http/1.1  → the HTTP/1.1 server
 *               └─ plaintext with listen.http2: the first bytes decide
 *                    (../protocols/sniff.ts): the h2 preface → HTTP/2
 *                    (h2c by prior knowledge), anything else → HTTP/1.1
 *   HTTP/1.1     ./front-h1.ts (parser errors, CONNECT, Expect)
 *   HTTP/2       ../protocols/h2-server.ts: every stream a request
 *                (FrontH2Request), bounded streams, rapid-reset guard
 *
 * Upgrade requests go to ./websocket.ts (when the instance has one, HTTP/1.1
 * only): WebSockets of websocket routes are admitted there, every other
 * upgrade is replayed as an ordinary request.
 *
 * The server fastify gets is the HTTP/1.1 one (it listens, it is what
 * `close()` closes). Its closeIdleConnections / closeAllConnections also
 * reach the HTTP/2 sessions (GOAWAY; destroy), so a drain (instance/drain.ts)
 * treats every protocol alike.
 */
import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Config, ProxyListen, ServerConfig } from '../config/types.js';
import { H2Sessions, type H2Stats } from '../protocols/h2-server.js';
import { sniff } from '../protocols/sniff.js';
import { TlsTerminator, type TlsView } from '../protocols/tls.js';
import { Admission, type AdmitDeps } from './admit.js';
import { watchBody } from './body-idle.js';
import type { ProxyEvents } from './events.js';
import { FrontH2Request, exchangeOf, type Exchange, type FrontFields, type FrontRequest } from './request-ctx.js';
import { hasBody } from './request-head.js';
import { sampled, watchAccess, type AccessDeps } from './access.js';
import { arrival, h1Server, requestIdOf } from './front-h1.js';
import type { WebSockets } from './websocket.js';

export interface FrontOptions {
  readonly listen: ProxyListen;
  readonly server: ServerConfig;
  readonly events: ProxyEvents;
  readonly log: Logger;
  /** Everything admission needs but fastify's handler (the server factory receives it). */
  readonly admit: Omit<AdmitDeps, 'forward'>;
  /** Takes the listener's upgrades (WebSocket routes); without it Node treats them as ordinary requests. */
  readonly webSockets?: WebSockets;
}

/** The listener as /admin/state shows it. */
export interface ListenerView {
  readonly scheme: 'http' | 'https';
  readonly http2: boolean;
  /** null without listen.tls. */
  readonly tls: TlsView | null;
  /** HTTP/2 client connections; null without listen.http2. */
  readonly http2Clients: H2Stats | null;
}

export { requestIdOf, timeoutCheckInterval } from './front-h1.js';

/** fastify's genReqId: fastify only sees admitted requests, whose id the front chose. */
export function admittedRequestId(req: IncomingMessage): string {
  return (exchangeOf(req) as Exchange | null)?.requestId ?? randomUUID();
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * HTTP/2's compatibility objects travel through admission and fastify typed
 * as HTTP/1.1's (fastify does the same): every member Sluice uses exists on
 * both; the few differences are handled where they matter (responses.ts,
 * settle.ts, body-idle.ts, forward.ts).
 */
const asH1 = (admit: (req: IncomingMessage, res: ServerResponse) => void) => (req: Http2ServerRequest, res: Http2ServerResponse) =>
  admit(req as unknown as IncomingMessage, res as unknown as ServerResponse);

export class Front {
  private h2: H2Sessions | null = null;
  private tls: TlsTerminator | null = null;

  constructor(private readonly opts: FrontOptions) {}

  /** fastify's `serverFactory`: the listener's server, with the front as its request listener. */
  readonly factory = (handler: Handler): http.Server => {
    const { listen, server: s } = this.opts;
    const { runtime, clock, random } = this.opts.admit;
    const access: AccessDeps = { runtime, clock, random, events: this.opts.events };
    const admission = new Admission({ ...this.opts.admit, forward: this.forwarder(handler) });
    const arrive = arrival(admission, access);
    const server = h1Server({ server: s, tls: listen.tls, http2: listen.http2, events: this.opts.events, log: this.opts.log, admit: this.opts.admit }, arrive, access);
    if (listen.tls !== undefined) this.tls = new TlsTerminator(server as unknown as TlsServer, listen.tls);
    if (listen.http2) {
      const h2 = new H2Sessions({
        config: s.http2,
        maxHeaderCount: s.maxHeaderCount,
        idleTimeoutMs: s.keepAliveTimeoutMs,
        Request: FrontH2Request,
        onRequest: asH1(arrive),
        onCheckContinue: asH1((req, res) => {
          (req as FrontRequest).expectsContinue = true;
          arrive(req, res);
        }),
      });
      this.h2 = h2;
      dispatch(server, listen.tls !== undefined, h2, s.headersTimeoutMs);
    }
    this.opts.webSockets?.attach(server, this.opts.admit, requestIdOf, (req, res, id) => sampled(access) && (watchAccess(req, res, id, access), true));
    this.closingReachesEveryProtocol(server);
    return server;
  };

  /** What a reload can change on a running listener: the certificate, HTTP/2 settings (what it cannot: instance/reload.ts warns). */
  reconfigure(config: Config): void {
    const tls = config.listen.tls;
    if (this.tls !== null && tls !== undefined) this.tls.reconfigure(tls);
    this.h2?.reconfigure(config.server.http2);
  }

  view(): ListenerView {
    return {
      scheme: this.opts.listen.tls === undefined ? 'http' : 'https',
      http2: this.opts.listen.http2,
      tls: this.tls?.view() ?? null,
      http2Clients: this.h2?.stats() ?? null,
    };
  }

  /**
   * What happens as an admitted request is handed on: a client that waits
   * for `100 Continue` gets it now (never
   * before admission: a refused upload never sends its body); a body still
   * to come is watched for silence (./body-idle.ts; not a gRPC call's,
   * whose streams may rightly stay quiet).
   */
  private forwarder(handler: Handler): Handler {
    const a = this.opts.admit;
    const idleDeps = { events: this.opts.events, log: this.opts.log, answers: a.answers };
    return (req, res) => {
      const r = req as unknown as FrontFields;
      if (r.expectsContinue) res.writeContinue();
      const idleMs = a.runtime().config.server.bodyIdleTimeoutMs;
      if (idleMs > 0 && !r.grpc && !req.complete && hasBody(req)) watchBody(req as FrontRequest, res, idleMs, idleDeps);
      handler(req, res);
    };
  }

  private closingReachesEveryProtocol(server: http.Server): void {
    const closeIdle = server.closeIdleConnections.bind(server);
    const closeAll = server.closeAllConnections.bind(server);
    server.closeIdleConnections = () => {
      closeIdle();
      this.h2?.closeIdle();
    };
    server.closeAllConnections = () => {
      closeAll();
      this.h2?.closeAll();
    };
  }
}

/** Hands each connection to the HTTP/2 session server or to Node's HTTP/1.1 connection handling. */
function dispatch(server: http.Server, tls: boolean, h2: H2Sessions, sniffTimeoutMs: number): void {
  // Node's HTTP/1.1 server handles a socket in its own listener of this event ('secureConnection' after a TLS handshake).
  const event = tls ? 'secureConnection' : 'connection';
  const h1 = server.listeners(event) as ((socket: Socket) => void)[];
  server.removeAllListeners(event);
  const toH1 = (socket: Socket) => {
    for (const l of h1) l.call(server, socket);
  };
  if (tls) server.on(event, (socket: TLSSocket) => (socket.alpnProtocol === 'h2' ? h2.accept(socket) : toH1(socket)));
  else server.on(event, (socket: Socket) => sniff(socket, sniffTimeoutMs, (p, s) => (p === 'h2' ? h2.accept(s) : toH1(s))));
}

/**
 * The front's HTTP/1.1 server (plain, or https with `listen.tls`): Node's
 * parser and limits, and what the front answers itself, all in the JSON
 * contract with x-request-id:
 *
 *   clientError   Node's parser and limits: 400 bad_request (unparsable,
 *                 smuggling attempts), 408 request_timeout (slow head or
 *                 body), 431 headers_too_large, 501; then the connection
 *                 closes (its framing is lost)
 *   connect       CONNECT is never proxied: 405, and the socket closes
 *                 (without a listener Node would drop it without a word)
 *   Expect        100-continue goes through the same admission (`100
 *                 Continue` only once admitted: a refused upload never
 *                 sends its body); any other expectation: 417
 *   tlsClientError  a handshake that fails (no shared version or ALPN
 *                 protocol, no client certificate): the socket is closed
 *   request       everything ./admit.ts decides (405, 400, 404, 503/429)
 *
 * Node's server keeps enforcing what fastify would have set up: keep-alive
 * timeout, headers and request timeouts (checked often enough that a
 * slow-loris connection cannot outlive them by much), maxHeaderSize; a
 * reload's server.* reaches connections opened after it (followReloads).
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { ServerConfig, TlsConfig } from '../config/types.js';
import { tlsServerOptions } from '../protocols/tls.js';
import { sampled, socketAccess, watchAccess, type AccessDeps } from './access.js';
import type { Admission, AdmitDeps } from './admit.js';
import type { ErrorCode } from './errors.js';
import type { ProxyEvents } from './events.js';
import { FrontRequest, FrontTlsRequest } from './request-ctx.js';
import { rawErrorResponse, type Answers } from './responses.js';

export interface H1Options {
  readonly server: ServerConfig;
  readonly tls: TlsConfig | undefined;
  /** Offer h2 in ALPN (TLS only). */
  readonly http2: boolean;
  readonly events: ProxyEvents;
  readonly log: Logger;
  readonly admit: Pick<AdmitDeps, 'runtime' | 'answers'>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const REQUEST_ID = /^[A-Za-z0-9._:\-]{1,128}$/;

/** Accept a caller's x-request-id when it is sane (it ends up in logs and headers); otherwise make one. */
export function requestIdOf(req: IncomingMessage): string {
  const id = req.headers['x-request-id'];
  return typeof id === 'string' && REQUEST_ID.test(id) ? id : randomUUID();
}

/**
 * Node checks request timeouts on an interval (30 s by default), so a
 * slow-loris connection could outlive headersTimeout by that much; check at
 * a quarter of the shortest timeout, at most once a second.
 */
export function timeoutCheckInterval(s: ServerConfig): number {
  return Math.max(10, Math.min(1000, Math.floor(Math.min(s.headersTimeoutMs, s.requestTimeoutMs) / 4)));
}

/** A request line whose method is a token Node's parser does not know (`BREW /pot HTTP/1.1`). */
const UNKNOWN_METHOD_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP\/1\.[01]\r?\n/;

/** Node's parser and timeout errors → our codes (400 for anything malformed). */
function clientErrorCode(err: { code?: string; rawPacket?: Buffer }): ErrorCode {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return 'request_timeout';
  if (err.code === 'HPE_HEADER_OVERFLOW') return 'headers_too_large';
  // RFC 9110 §9.1: an unrecognised method is a 501, not a malformed request.
  if (err.code === 'HPE_INVALID_METHOD' && UNKNOWN_METHOD_LINE.test(err.rawPacket?.toString('latin1', 0, 256) ?? '')) return 'method_not_implemented';
  return 'bad_request';
}

/** A request arrives: its id, the access log's watch (when sampled), admission. */
export function arrival(admission: Admission, access: AccessDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const id = requestIdOf(req);
    if (sampled(access)) watchAccess(req as FrontRequest, res, id, access);
    admission.admit(req, res, id);
  };
}

/**
 * Expect (RFC 9110 §10.1.1): 100-continue goes through the same admission
 * (`100 Continue` only once admitted, see forwarder); any other expectation
 * cannot be met by a proxy that does not forward Expect: 417.
 */
function handleExpect(server: http.Server, arrive: Handler, opts: H1Options, access: AccessDeps): void {
  server.on('checkContinue', (req: FrontRequest, res: ServerResponse) => {
    req.expectsContinue = true;
    arrive(req, res);
  });
  server.on('checkExpectation', (req: FrontRequest, res: ServerResponse) => {
    const id = requestIdOf(req);
    if (sampled(access)) watchAccess(req, res, id, access);
    opts.events.onClientError?.('expectation_failed');
    req.answer = 'expectation_failed';
    opts.admit.answers.error(res, 'expectation_failed', id, true);
  });
}

/**
 * What has no request object to answer through: a head Node's parser
 * refused (400, 431, 408, 501) and CONNECT (405). A raw answer, then the
 * connection closes (its framing is lost, or a tunnel was asked for).
 */
function handleRaw(server: http.Server, opts: H1Options, access: AccessDeps): void {
  const answer = (socket: Duplex, code: ErrorCode): { bytes: string; requestId: string } => {
    opts.events.onClientError?.(code);
    const a = rawErrorResponse(code);
    if (sampled(access)) opts.events.onAccess?.(socketAccess(socket as Socket, code, a.requestId, a.bytes.length));
    return a;
  };
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const code = clientErrorCode(err);
    const a = answer(socket, code);
    opts.log.debug({ code, err: err.message, requestId: a.requestId }, 'client error');
    // As Node itself does: never write into a response of this connection that has already started.
    const current = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && current?.headersSent !== true) socket.write(a.bytes, 'latin1');
    socket.destroy();
  });
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.end(answer(socket, 'method_not_allowed').bytes, 'latin1', () => socket.destroy());
  });
}

/** server.* as Node's server holds them (it reads them per connection, per request or per check). */
function applyServer(server: http.Server, s: ServerConfig, answers: Answers): void {
  server.headersTimeout = s.headersTimeoutMs;
  server.requestTimeout = s.requestTimeoutMs;
  server.keepAliveTimeout = s.keepAliveTimeoutMs;
  // Node drops the fields past its count silently; admission answers 431 past ours (./request-head.ts).
  server.maxHeadersCount = s.maxHeaderCount + 1;
  (server as http.Server & { maxHeaderSize: number }).maxHeaderSize = s.maxHeaderBytes;
  answers.keepAliveTimeout(s.keepAliveTimeoutMs);
}

/**
 * A reload's server.* reaches every connection opened after it: before Node
 * sets a new connection up, the settings of the config in force are put on
 * the server (when they changed). Node reads the timeouts on every check,
 * so they apply to open connections too; the check interval stays what it
 * was at start (instance/reload.ts warns when that matters).
 */
function followReloads(server: http.Server, opts: H1Options): void {
  let applied = opts.server;
  server.prependListener('connection', () => {
    const now = opts.admit.runtime().config.server;
    if (now === applied) return;
    applied = now;
    applyServer(server, now, opts.admit.answers);
  });
}

/** The HTTP/1.1 server (https with `tls`): every request through `arrive` (the access log's watch, then admission). */
export function h1Server(opts: H1Options, arrive: Handler, access: AccessDeps): http.Server {
  const s = opts.server;
  const httpOptions: http.ServerOptions = {
    headersTimeout: s.headersTimeoutMs,
    requestTimeout: s.requestTimeoutMs,
    maxHeaderSize: s.maxHeaderBytes,
    connectionsCheckingInterval: timeoutCheckInterval(s),
    // HTTP/1.1 without Host is answered by admission, in our format.
    requireHostHeader: false,
    IncomingMessage: opts.tls === undefined ? FrontRequest : FrontTlsRequest,
  };
  const server: http.Server =
    opts.tls === undefined
      ? http.createServer(httpOptions, arrive)
      : (https.createServer({ ...httpOptions, ...tlsServerOptions(opts.tls, opts.http2) }, arrive) as unknown as http.Server);
  applyServer(server, s, opts.admit.answers);
  followReloads(server, opts);
  handleExpect(server, arrive, opts, access);
  handleRaw(server, opts, access);
  // A TLS handshake that fails is the client's: the socket closes, nothing is counted upstream.
  server.on('tlsClientError', (_err: Error, socket: Socket) => socket.destroy());
  return server;
}

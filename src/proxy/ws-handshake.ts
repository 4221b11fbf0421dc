/**
 * The upstream side of an admitted WebSocket upgrade: the client's request
 * head (through the one request transform, ./headers.ts, then Upgrade and
 * Connection set again) sent on a connection of its own (node:http with no
 * agent: the upgraded socket is never the route's undici pool's), bounded by
 * the route's timeouts.connectMs and timeouts.headersMs.
 *
 *   101                     onSwitch(upstream response, socket, head)
 *   any other response      onAnswer(upstream response): relayed as is
 *   error / timeout         onFault(error), mapped by the fault table
 *                           (./faults.ts): connect errors and timeouts
 *                           are upstream faults, as for any request
 *
 * Exactly one of the three is called, and none after cancel() (the client
 * left: the upstream request is destroyed).
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { TimeoutsConfig } from '../config/types.js';
import { requestHeaders, responseHeaders, type ClientSide, type HeaderPolicy, type Headers } from './headers.js';

export interface HandshakeTarget {
  /** The route's upstream origin. */
  readonly upstream: string;
  readonly preserveHost: boolean;
  readonly policy: HeaderPolicy;
  readonly timeouts: TimeoutsConfig;
  readonly requestId: string;
}

export interface HandshakeEnds {
  onSwitch(res: IncomingMessage, socket: Socket, head: Buffer): void;
  onAnswer(res: IncomingMessage): void;
  onFault(err: Error): void;
}

const timeoutError = (message: string, code: string) => Object.assign(new Error(message), { code });

/** The head that goes upstream: the request transform, the upgrade itself kept. */
export function upstreamHeaders(req: IncomingMessage & ClientSide, t: HandshakeTarget, host: string): Headers {
  const headers: Headers = { ...req.headers };
  requestHeaders(headers, t.policy, req);
  headers.connection = 'Upgrade';
  headers.upgrade = req.headers.upgrade;
  headers['x-request-id'] = t.requestId;
  if (!t.preserveHost || req.authority === '') headers.host = host;
  return headers;
}

/** Starts the upstream handshake; returns cancel(). */
export function handshake(req: IncomingMessage & ClientSide, t: HandshakeTarget, ends: HandshakeEnds): () => void {
  const target = new URL(t.upstream);
  const tls = target.protocol === 'https:';
  const up = (tls ? https : http).request({
    host: target.hostname.replace(/^\[|\]$/g, ''),
    port: target.port === '' ? (tls ? 443 : 80) : Number(target.port),
    method: 'GET',
    path: req.url ?? '/',
    headers: upstreamHeaders(req, t, target.host) as OutgoingHttpHeaders,
    agent: false,
    setHost: false,
    ...(tls && { servername: target.hostname }),
  });
  let done = false;
  const connect = setTimeout(() => up.destroy(timeoutError('no connection within timeouts.connectMs', 'UND_ERR_CONNECT_TIMEOUT')), t.timeouts.connectMs);
  const answer = setTimeout(() => up.destroy(timeoutError('no answer to the upgrade within timeouts.headersMs', 'UND_ERR_HEADERS_TIMEOUT')), t.timeouts.headersMs);
  const end = (): boolean => {
    clearTimeout(connect);
    clearTimeout(answer);
    if (done) return false;
    done = true;
    return true;
  };
  up.once('socket', (s: Socket) => s.once('connect', () => clearTimeout(connect)));
  up.on('error', (err) => end() && ends.onFault(err));
  up.once('response', (res) => (end() ? ends.onAnswer(res) : res.destroy()));
  up.once('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => (end() ? ends.onSwitch(res, socket, head) : socket.destroy()));
  up.end();
  return () => {
    if (end()) up.destroy();
  };
}

/** The 101 head for the client: the upstream's, through the response transform, Upgrade and Connection set again. */
export function switchingHead(res: IncomingMessage, policy: HeaderPolicy, requestId: string): string {
  const headers = responseHeaders({ ...res.headers, 'x-request-id': requestId }, policy, false);
  let head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${String(v)}\r\n`;
  }
  return `${head}\r\n`;
}

/**
 * The bytes of every answer Sluice writes itself on the proxy port, built
 * once: refusals (503/429 + Retry-After), upstream failures (502/504) and
 * request errors (400/404/405/408/431). Codes and statuses: ./errors.ts.
 *
 * Prebuilt heads. A refusal must cost a fraction of a forward, so it never
 * goes through ServerResponse's header machinery (a header object walked,
 * each name and value validated, the head string assembled per request).
 * Each (status, reason, Retry-After) has its head built once, up to the
 * x-request-id value; per request only the id, the cached Date line and the
 * connection line are appended. The head is handed to Node as the
 * response's `_header` (what writeHead would have produced), so Node still
 * owns the connection: the head and the body (none for HEAD) go out as one
 * string in one socket write (`end()` without a chunk sends `_header` as
 * is: no cork, no writev), keep-alive and the next pipelined request work
 * as usual, and `_last` closes the connection after the answer when it must
 * (the client asked for close, or the instance is draining). These fields
 * are Node's (`_header` stable since 0.x, used by Node's own http code in
 * every version we support); the integration tests exercise every path
 * through them. Bodies are pure ASCII: their length is their byte length.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import http2, { type Http2ServerResponse } from 'node:http2';
import type { Refusal } from '../core/limiter/refusal.js';
import type { RateVerdict } from '../core/rate/gcra.js';
import { appendListField, rateLimitField } from '../core/rate/headers.js';
import { ERRORS, statusName, type ErrorCode } from './errors.js';
import { grpcStatusOf } from '../protocols/grpc.js';
import { PROXIED_METHODS } from './methods.js';
import type { FrontFields } from './request-ctx.js';

/** What the prebuilt path sets on a ServerResponse (Node's own fields). */
interface RawResponse {
  _header: string | null;
  _last: boolean;
  /** The client sent Expect: 100-continue; _sent100 once it was told to go on. */
  readonly _expect_continue?: boolean;
  readonly _sent100?: boolean;
  /** false for a HEAD request: the answer is the head alone. */
  readonly _hasBody: boolean;
  statusCode: number;
  readonly shouldKeepAlive: boolean;
  readonly headersSent: boolean;
}

type Fields = readonly (readonly [string, string])[];

/** An HTTP/2 answer's headers, built once; only x-request-id is set per answer (respond() copies them). */
type H2Head = Record<string, string | number>;

interface Prebuilt {
  readonly status: number;
  /** Status line and fixed headers, ending in "x-request-id: ". */
  readonly head: string;
  readonly body: string;
  /** The fields after content type and length, for the HTTP/2 and gRPC forms (built on first use). */
  readonly extra: Fields;
  /** The code in the body (a reason or an error code): gRPC's grpc-message. */
  readonly code: string;
  /** Retry-After in seconds, for gRPC's grpc-retry-pushback-ms; 0 for errors. */
  readonly retryAfterSeconds: number;
  h2: H2Head | null;
  grpc: H2Head | null;
}

const JSON_TYPE = 'content-type: application/json; charset=utf-8\r\n';

function prebuild(status: number, body: string, extra: Fields, code: string, retryAfterSeconds = 0): Prebuilt {
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${JSON_TYPE}content-length: ${body.length}\r\n` +
    `${extra.map(([n, v]) => `${n}: ${v}\r\n`).join('')}cache-control: no-store\r\nx-request-id: `;
  return { status, head, body, extra, code, retryAfterSeconds, h2: null, grpc: null };
}

function h2Head(p: Prebuilt): H2Head {
  const h: H2Head = { ':status': p.status, 'content-type': 'application/json; charset=utf-8', 'content-length': p.body.length };
  for (const [n, v] of p.extra) h[n] = v;
  h['cache-control'] = 'no-store';
  h['x-request-id'] = '';
  return h;
}

/** A trailers-only gRPC answer (../protocols/grpc.ts): HTTP 200, the status in the one HEADERS frame. */
function grpcHead(p: Prebuilt): H2Head {
  const h: H2Head = { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': String(grpcStatusOf(p.status)), 'grpc-message': p.code };
  if (p.retryAfterSeconds > 0) h['grpc-retry-pushback-ms'] = String(p.retryAfterSeconds * 1000);
  for (const [n, v] of p.extra) h[n] = v;
  h['cache-control'] = 'no-store';
  h['x-request-id'] = '';
  return h;
}

const errorAnswers = new Map<ErrorCode, Prebuilt>();
function errorAnswer(code: ErrorCode): Prebuilt {
  let p = errorAnswers.get(code);
  if (p === undefined) {
    const status = ERRORS[code].status;
    // RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
    const extra: Fields = status === 405 ? [['allow', PROXIED_METHODS.join(', ')]] : [];
    p = prebuild(status, JSON.stringify({ error: statusName(status), reason: code }), extra, code);
    errorAnswers.set(code, p);
  }
  return p;
}

// Reasons x whole seconds in [1, retryAfter.maxSeconds] (x the RateLimit-Policy in force, for
// client_rate with clients.rateLimitHeaders): a few hundred entries at most.
const refusalAnswers = new Map<string, Prebuilt>();
function refusalAnswer(r: Refusal, rateLimitPolicy: string | null): Prebuilt {
  const policy = r.reason === 'client_rate' ? rateLimitPolicy : null;
  const key = policy === null ? r.reason + r.retryAfterSeconds : `${r.reason}${r.retryAfterSeconds}|${policy}`;
  let p = refusalAnswers.get(key);
  if (p === undefined) {
    const body = JSON.stringify({ error: statusName(r.status), reason: r.reason, retryAfterSeconds: r.retryAfterSeconds });
    // A rate refusal says the quota, and that none of it is left until Retry-After.
    const rate: Fields = policy === null ? [] : [['ratelimit-policy', policy], ['ratelimit', rateLimitField(0, r.retryAfterSeconds)]];
    p = prebuild(r.status, body, [['retry-after', String(r.retryAfterSeconds)], ...rate], r.reason, r.retryAfterSeconds);
    refusalAnswers.set(key, p);
  }
  return p;
}

/**
 * clients.rateLimitHeaders on an admitted response of a rate-limited client
 * (`policy` null: off): our RateLimit-Policy and RateLimit items are added
 * to whatever the upstream sent in those fields.
 */
export function addRateLimitHeaders(headers: Record<string, string | string[] | number | undefined>, policy: string | null, rate: RateVerdict): void {
  if (policy === null) return;
  headers['ratelimit-policy'] = appendListField(headers['ratelimit-policy'], policy);
  headers['ratelimit'] = appendListField(headers['ratelimit'], rateLimitField(rate.remaining, rate.waitSeconds));
}

/** The Date line, rebuilt once a second (as Node's own cache does). */
let dateSecond = -1;
let dateLine = '';
function date(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateLine = `\r\nDate: ${new Date(now).toUTCString()}`;
  }
  return dateLine;
}

/** Writes Sluice's own answers on one listener (its keep-alive timeout is advertised as Node would). */
export class Answers {
  private keepAlive = '';

  constructor(keepAliveTimeoutMs: number) {
    this.keepAliveTimeout(keepAliveTimeoutMs);
  }

  /** The keep-alive timeout the answers advertise (server.keepAliveTimeoutMs; a reload changes it). */
  keepAliveTimeout(ms: number): void {
    const seconds = Math.floor(ms / 1000);
    this.keepAlive = `\r\nConnection: keep-alive${seconds > 0 ? `\r\nKeep-Alive: timeout=${seconds}` : ''}\r\n\r\n`;
  }

  /**
   * A refusal (503/429, Retry-After). `close`: ask the client to close the
   * connection (draining). `rateLimitPolicy`: clients.rateLimitHeaders is on
   * (a client_rate refusal then carries RateLimit-Policy and RateLimit).
   */
  refusal(res: ServerResponse, r: Refusal, requestId: string, close: boolean, rateLimitPolicy: string | null = null): void {
    this.write(res, refusalAnswer(r, rateLimitPolicy), requestId, close);
  }

  /** An error answer in the JSON contract. */
  error(res: ServerResponse, code: ErrorCode, requestId: string, close: boolean): void {
    this.write(res, errorAnswer(code), requestId, close);
  }

  private write(res: ServerResponse, p: Prebuilt, requestId: string, close: boolean): void {
    if ((res as unknown as { stream?: unknown }).stream !== undefined) return writeH2(res as unknown as Http2ServerResponse, p, requestId);
    const out = res as unknown as RawResponse;
    if (out.headersSent) {
      // Too late for an answer of our own: the client sees the stream cut.
      res.destroy();
      return;
    }
    // A client still waiting to send its body (Expect: 100-continue, never told to go on) may
    // send it or not: the connection closes rather than read a body nobody wants (Node does
    // the same in writeHead).
    const last = close || !out.shouldKeepAlive || (out._expect_continue === true && out._sent100 !== true);
    out.statusCode = p.status;
    // Head and body in one string: end() then writes it to the socket in one write (no writev).
    out._header = p.head + requestId + date() + (last ? '\r\nConnection: close\r\n\r\n' : this.keepAlive) + (out._hasBody ? p.body : '');
    if (last) out._last = true;
    res.end();
  }
}

/**
 * An answer on an HTTP/2 stream: the prebuilt headers straight to the
 * stream (no compatibility-layer header object), the JSON body, or for a
 * gRPC call the trailers-only form. Connection-level closing does not
 * apply: each stream has its own framing, the connection lives on.
 */
function writeH2(res: Http2ServerResponse, p: Prebuilt, requestId: string): void {
  const stream = res.stream;
  if (stream.destroyed || stream.closed) return;
  if (stream.headersSent) {
    // Too late for an answer of our own: the client sees the stream reset.
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    return;
  }
  const req = res.req as unknown as FrontFields & { readonly method: string };
  if (req.grpc) {
    const h = (p.grpc ??= grpcHead(p));
    h['x-request-id'] = requestId;
    stream.respond(h, { endStream: true });
    return;
  }
  const h = (p.h2 ??= h2Head(p));
  h['x-request-id'] = requestId;
  const head = req.method === 'HEAD';
  stream.respond(h, { endStream: head });
  if (!head) stream.end(p.body);
}

/**
 * A whole HTTP/1.1 error answer, for a socket that has no ServerResponse
 * (the request could not even be parsed, or asked for a tunnel). The
 * connection closes after it: the stream's framing can no longer be trusted.
 * Returns the bytes and the request id they carry (a fresh one: nothing of
 * the request can be trusted).
 */
export function rawErrorResponse(code: ErrorCode): { readonly bytes: string; readonly requestId: string } {
  const p = errorAnswer(code);
  const requestId = randomUUID();
  return { bytes: `${p.head}${requestId}${date()}\r\nConnection: close\r\n\r\n${p.body}`, requestId };
}

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
import type { Refusal } from '../core/limiter/refusal.js';
import type { RateVerdict } from '../core/rate/gcra.js';
import { appendListField, rateLimitField } from '../core/rate/headers.js';
import { ERRORS, statusName, type ErrorCode } from './errors.js';
import { PROXIED_METHODS } from './methods.js';

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

interface Prebuilt {
  readonly status: number;
  /** Status line and fixed headers, ending in "x-request-id: ". */
  readonly head: string;
  readonly body: string;
}

const JSON_TYPE = 'content-type: application/json; charset=utf-8\r\n';

function prebuild(status: number, body: string, extra: string): Prebuilt {
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${JSON_TYPE}content-length: ${body.length}\r\n` +
    `${extra}cache-control: no-store\r\nx-request-id: `;
  return { status, head, body };
}

const errorAnswers = new Map<ErrorCode, Prebuilt>();
function errorAnswer(code: ErrorCode): Prebuilt {
  let p = errorAnswers.get(code);
  if (p === undefined) {
    const status = ERRORS[code].status;
    // RFC 9110 §15.5.6: a 405 lists the methods that are allowed.
    const extra = status === 405 ? `allow: ${PROXIED_METHODS.join(', ')}\r\n` : '';
    p = prebuild(status, JSON.stringify({ error: statusName(status), reason: code }), extra);
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
    const rate = policy === null ? '' : `ratelimit-policy: ${policy}\r\nratelimit: ${rateLimitField(0, r.retryAfterSeconds)}\r\n`;
    p = prebuild(r.status, body, `retry-after: ${r.retryAfterSeconds}\r\n${rate}`);
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

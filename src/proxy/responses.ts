/**
 * Every answer Sluice itself gives on the proxy port, built once: refusals
 * (503/429 + Retry-After), upstream failures (502/504) and request errors
 * (400/404). Bodies are small JSON documents with stable codes and never
 * carry stack traces or upstream addresses.
 */
import type { ServerResponse } from 'node:http';
import type { Refusal } from '../core/limiter/refusal.js';

export type ErrorCode =
  | 'no_route'
  | 'bad_path'
  | 'upstream_refused'
  | 'upstream_reset'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_connect_timeout'
  | 'bad_upstream_response'
  | 'internal_error';

export const ERROR_STATUS: Readonly<Record<ErrorCode, number>> = {
  no_route: 404,
  bad_path: 400,
  upstream_refused: 502,
  upstream_reset: 502,
  upstream_unreachable: 502,
  upstream_timeout: 504,
  upstream_connect_timeout: 504,
  bad_upstream_response: 502,
  internal_error: 500,
};

const ERROR_NAME: Readonly<Record<number, string>> = {
  400: 'bad_request',
  404: 'not_found',
  500: 'internal_error',
  502: 'bad_gateway',
  504: 'gateway_timeout',
};

const errorBodies = new Map<ErrorCode, Buffer>();
export function errorBody(code: ErrorCode): Buffer {
  let b = errorBodies.get(code);
  if (b === undefined) {
    b = Buffer.from(JSON.stringify({ error: ERROR_NAME[ERROR_STATUS[code]] ?? 'error', reason: code }));
    errorBodies.set(code, b);
  }
  return b;
}

// Reasons x whole seconds in [1, maxSeconds]: a few hundred entries at most.
const refusalBodies = new Map<string, Buffer>();
export function refusalBody(r: Refusal): Buffer {
  const key = r.reason + r.retryAfterSeconds;
  let b = refusalBodies.get(key);
  if (b === undefined) {
    const error = r.status === 429 ? 'too_many_requests' : 'overloaded';
    b = Buffer.from(JSON.stringify({ error, reason: r.reason, retryAfterSeconds: r.retryAfterSeconds }));
    refusalBodies.set(key, b);
  }
  return b;
}

/**
 * Writes a refusal straight to the socket's response: the cheap path. The
 * connection stays usable; Node discards any unread request body.
 */
export function writeRefusal(res: ServerResponse, r: Refusal, requestId: string): void {
  const body = refusalBody(r);
  res.writeHead(r.status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': body.length,
    'retry-after': String(r.retryAfterSeconds),
    'cache-control': 'no-store',
    'x-request-id': requestId,
  });
  res.end(body);
}

export function writeError(res: ServerResponse, code: ErrorCode, requestId: string): void {
  const body = errorBody(code);
  res.writeHead(ERROR_STATUS[code], {
    'content-type': 'application/json; charset=utf-8',
    'content-length': body.length,
    'cache-control': 'no-store',
    'x-request-id': requestId,
  });
  res.end(body);
}

/**
 * Every answer code Sluice gives on the proxy port, in one table: its HTTP
 * status, who was at fault, what `sluice_upstream_errors_total{kind}` calls
 * it, and what it means (fastify's lib/errors.js is the model: one place for
 * codes, statuses and messages). Refusal reasons (503/429) are the gate's
 * and live with it (core/limiter/refusal.ts); they are listed here too so
 * this file names every code a client can see.
 *
 * Bodies are `{"error": <name of the status>, "reason": <code>}`; refusals
 * add `retryAfterSeconds`. No stack, no parser internals, no upstream
 * address ever reaches a client.
 *
 *   client    the request was at fault, answered before admission or
 *             refused locally before a byte went upstream: never counted
 *             against the upstream (breaker, limit)
 *   upstream  the upstream did not give a usable answer (before its
 *             headers: a 502/504 answer; after them: the stream is cut)
 *   internal  a bug in Sluice
 */
import { REFUSAL_STATUS, type RefusalReason } from '../core/limiter/refusal.js';

interface ErrorSpec {
  readonly status: number;
  readonly fault: 'client' | 'upstream' | 'internal';
  /** sluice_upstream_errors_total{kind}; client errors are counted in sluice_client_errors_total{code}. */
  readonly kind: string;
  readonly message: string;
}

export const ERRORS = {
  no_route: { status: 404, fault: 'client', kind: 'other', message: 'no route matches the host, method and path' },
  bad_path: { status: 400, fault: 'client', kind: 'other', message: 'a path an upstream could resolve to another route (dot segments, encoded separators, malformed escapes, not origin-form)' },
  bad_deadline: { status: 400, fault: 'client', kind: 'other', message: "the route's deadline header is malformed" },
  bad_request: { status: 400, fault: 'client', kind: 'other', message: 'the request cannot be parsed, or carries something that cannot be forwarded' },
  method_not_allowed: { status: 405, fault: 'client', kind: 'other', message: 'TRACE or CONNECT, which are never proxied (the answer lists the methods that are, in Allow)' },
  request_timeout: { status: 408, fault: 'client', kind: 'other', message: 'the request head or body did not arrive within server.headersTimeoutMs / requestTimeoutMs, or an admitted request\'s body was silent for server.bodyIdleTimeoutMs' },
  expectation_failed: { status: 417, fault: 'client', kind: 'other', message: 'an Expect other than 100-continue' },
  headers_too_large: { status: 431, fault: 'client', kind: 'other', message: 'the request head is larger than server.maxHeaderBytes, or has more than server.maxHeaderCount fields' },
  method_not_implemented: { status: 501, fault: 'client', kind: 'other', message: 'a method token the HTTP parser does not know' },
  transfer_coding_not_implemented: { status: 501, fault: 'client', kind: 'other', message: 'a request Transfer-Encoding other than chunked (gzip, deflate...)' },
  upstream_refused: { status: 502, fault: 'upstream', kind: 'refused', message: 'the upstream refused the connection' },
  upstream_reset: { status: 502, fault: 'upstream', kind: 'reset', message: 'the upstream connection broke before the response headers' },
  upstream_unreachable: { status: 502, fault: 'upstream', kind: 'unreachable', message: 'the upstream host cannot be resolved or reached' },
  upstream_timeout: { status: 504, fault: 'upstream', kind: 'timeout', message: 'no response headers within the route\'s timeouts.headersMs' },
  upstream_connect_timeout: { status: 504, fault: 'upstream', kind: 'connect_timeout', message: 'no connection within the route\'s timeouts.connectMs' },
  deadline_exceeded: { status: 504, fault: 'upstream', kind: 'deadline_exceeded', message: "the caller's deadline ran out before the upstream answered (never a breaker failure)" },
  bad_upstream_response: { status: 502, fault: 'upstream', kind: 'bad_response', message: 'the upstream answered something that is not HTTP' },
  upstream_body_timeout: { status: 504, fault: 'upstream', kind: 'body_timeout', message: 'the response body stalled beyond timeouts.bodyMs (after headers: the stream is cut)' },
  upstream_body_reset: { status: 502, fault: 'upstream', kind: 'body_reset', message: 'the response body broke off (after headers: the stream is cut)' },
  internal_error: { status: 500, fault: 'internal', kind: 'other', message: 'a bug in Sluice (logged with its stack), or Sluice out of file descriptors (EMFILE) connecting upstream' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];

export function errorStatus(code: ErrorCode): number {
  return ERRORS[code].status;
}

/** The codes Sluice answers for the client's own faults (sluice_client_errors_total{code}). */
export const CLIENT_ERROR_CODES: readonly ErrorCode[] = ERROR_CODES.filter((c) => ERRORS[c].fault === 'client');

/** The `error` field of a body: the status's name. */
const STATUS_NAME: Readonly<Record<number, string>> = {
  400: 'bad_request',
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  417: 'expectation_failed',
  429: 'too_many_requests',
  431: 'request_header_fields_too_large',
  500: 'internal_error',
  501: 'not_implemented',
  502: 'bad_gateway',
  503: 'overloaded',
  504: 'gateway_timeout',
};

export function statusName(status: number): string {
  return STATUS_NAME[status] ?? 'error';
}

/** Refusal reasons and their statuses (503: the route is overloaded; 429: this client is over its share or rate). */
export const REFUSALS: Readonly<Record<RefusalReason, number>> = REFUSAL_STATUS;

/**
 * Upstream faults: every error an exchange can end in, in ONE table, with
 * what the client is answered (code → status in ./errors.ts), what the
 * limit learns (Outcome) and what the circuit breaker learns.
 *
 *   outcome  dropped: the upstream is overloaded (timeouts) and the limit
 *            backs off; ignore: nothing to learn about capacity
 *   breaker  failure: the exchange got no usable answer (refused,
 *            unreachable, connect timeout, reset or garbage before the
 *            response, headers timeout, body timeout or reset mid-body);
 *            ignore: the client's own doing — headers undici refuses to
 *            send, the caller's deadline shorter than the route's timeout
 *            (a client must not be able to open the breaker for everyone by
 *            sending tiny deadlines), a bug in Sluice. Any complete upstream
 *            response, 5xx included, is a success (overload statuses are
 *            the adaptive limit's business, not the breaker's).
 *
 * Before the response headers a fault is answered 502/504 (or 400 for the
 * client's); after them the client's stream is cut.
 */
import type { BreakerResult } from '../core/breaker.js';
import type { Outcome } from '../core/limiter/limiter.js';
import type { ErrorCode } from './errors.js';

export interface Fault {
  readonly code: ErrorCode;
  readonly outcome: Outcome;
  readonly breaker: BreakerResult;
}

const fault = (code: ErrorCode, outcome: Outcome, breaker: BreakerResult): Fault => ({ code, outcome, breaker });

/**
 * By the error's code (undici's, Node's or reply-from's; a `cause`'s first),
 * plus the situations that have no code of their own, in parentheses.
 */
export const FAULTS: Readonly<Record<string, Fault>> = {
  // undici refused the request locally, before a byte went upstream: a header it
  // will not send (keep-alive, upgrade, transfer-encoding, expect...), a bad value.
  UND_ERR_INVALID_ARG: fault('bad_request', 'ignore', 'ignore'),
  UND_ERR_NOT_SUPPORTED: fault('bad_request', 'ignore', 'ignore'),
  UND_ERR_HEADERS_TIMEOUT: fault('upstream_timeout', 'dropped', 'failure'),
  FST_REPLY_FROM_GATEWAY_TIMEOUT: fault('upstream_timeout', 'dropped', 'failure'),
  UND_ERR_CONNECT_TIMEOUT: fault('upstream_connect_timeout', 'dropped', 'failure'),
  FST_REPLY_FROM_CONNECT_TIMEOUT: fault('upstream_connect_timeout', 'dropped', 'failure'),
  ECONNREFUSED: fault('upstream_refused', 'ignore', 'failure'),
  ENOTFOUND: fault('upstream_unreachable', 'ignore', 'failure'),
  EAI_AGAIN: fault('upstream_unreachable', 'ignore', 'failure'),
  EHOSTUNREACH: fault('upstream_unreachable', 'ignore', 'failure'),
  ENETUNREACH: fault('upstream_unreachable', 'ignore', 'failure'),
  ECONNRESET: fault('upstream_reset', 'ignore', 'failure'),
  EPIPE: fault('upstream_reset', 'ignore', 'failure'),
  UND_ERR_SOCKET: fault('upstream_reset', 'ignore', 'failure'),
  FST_REPLY_FROM_CONNECTION_RESET: fault('upstream_reset', 'ignore', 'failure'),
  FST_REPLY_FROM_UNDICI_SOCKET: fault('upstream_reset', 'ignore', 'failure'),
  FST_REPLY_FROM_BAD_GATEWAY: fault('bad_upstream_response', 'ignore', 'failure'),
  // The upstream answered something that is not HTTP (undici's parser error carries no code; llhttp's are HPE_*).
  '(parser)': fault('bad_upstream_response', 'ignore', 'failure'),
  // Mid-body: the body stalled beyond timeouts.bodyMs, or broke off.
  UND_ERR_BODY_TIMEOUT: fault('upstream_body_timeout', 'dropped', 'failure'),
  '(body)': fault('upstream_body_reset', 'ignore', 'failure'),
  // The caller's budget ran out first: its own deadline, not the upstream's health.
  '(deadline)': fault('deadline_exceeded', 'ignore', 'ignore'),
  // An admitted request's body went silent for server.bodyIdleTimeoutMs: the client's.
  '(body idle)': fault('request_timeout', 'ignore', 'ignore'),
  // fastify refused something about the request itself (a 4xx of its own).
  '(client)': fault('bad_request', 'ignore', 'ignore'),
  // Sluice itself is out of file descriptors (connecting upstream): says nothing about the upstream.
  EMFILE: fault('internal_error', 'ignore', 'ignore'),
  ENFILE: fault('internal_error', 'ignore', 'ignore'),
  // A bug in Sluice: says nothing about the upstream.
  '(internal)': fault('internal_error', 'ignore', 'ignore'),
  // Anything else that broke the exchange before its headers.
  '(other)': fault('upstream_reset', 'ignore', 'failure'),
};

export const DEADLINE_FAULT = FAULTS['(deadline)'] as Fault;

/** The abort reason of an exchange whose caller's budget ran out before the upstream's headers. */
export const DEADLINE_ABORT = new Error("the caller's deadline passed before the upstream answered");
export const INTERNAL_FAULT = FAULTS['(internal)'] as Fault;
export const CLIENT_FAULT = FAULTS['(client)'] as Fault;
export const BODY_IDLE_FAULT = FAULTS['(body idle)'] as Fault;

type ErrorLike = { code?: string; name?: string; cause?: ErrorLike } | undefined;

/** A fault before the response headers (reply-from's onError), by the error's code. */
export function upstreamFault(err: unknown): Fault {
  const e = err as ErrorLike;
  const code = e?.cause?.code ?? e?.code ?? '';
  if ((e?.cause ?? e)?.name === 'HTTPParserError' || code.startsWith('HPE_')) return FAULTS['(parser)'] as Fault;
  return FAULTS[code] ?? (FAULTS['(other)'] as Fault);
}

/**
 * A fault of the response body after its headers. `shortened`: the body
 * timeout was cut to the caller's budget, so a body timeout is the
 * caller's deadline.
 */
export function bodyFault(err: Error, shortened: boolean): Fault {
  if ((err as { code?: string }).code !== 'UND_ERR_BODY_TIMEOUT') return FAULTS['(body)'] as Fault;
  return shortened ? DEADLINE_FAULT : (FAULTS.UND_ERR_BODY_TIMEOUT as Fault);
}

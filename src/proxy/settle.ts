/**
 * The end of an exchange: its fault, reported once, and its one settlement.
 * ./admit.ts calls settle() from the response's 'close' (it fires exactly
 * once per response: finished, client gone, or upstream broken); the
 * forward plugin reports the faults it sees on the way.
 *
 *   outcome (the limit)    the fault's, else success for a complete upstream
 *                          response (dropped for an overload status), else
 *                          ignore (the client left, or no upstream response)
 *   result (the breaker)   the fault's, else success for a complete upstream
 *                          response whatever its status, else ignore
 */
import type { ServerResponse } from 'node:http';
import http2, { type ServerHttp2Stream } from 'node:http2';
import type { Logger } from 'pino';
import type { BreakerResult } from '../core/breaker.js';
import type { Outcome } from '../core/limiter/limiter.js';
import { isOverloadGrpcStatus } from '../protocols/grpc.js';
import { ERRORS } from './errors.js';
import type { ProxyEvents } from './events.js';
import { DEADLINE_ABORT, DEADLINE_FAULT, bodyFault, type Fault } from './faults.js';
import type { Exchange } from './request-ctx.js';

const ABORTED = new Error('client closed the connection');
const { NGHTTP2_NO_ERROR } = http2.constants;

export interface SettleDeps {
  readonly events: ProxyEvents;
  readonly log: Logger;
}

/** Records the exchange's fault and reports it, once. */
export function report(deps: SettleDeps, ex: Exchange, f: Fault, err: unknown): void {
  ex.fault = f;
  if (ERRORS[f.code].fault === 'client') {
    // Rejected locally for what the client sent: the client's error, not an upstream fault.
    deps.events.onClientError?.(f.code);
    return;
  }
  deps.events.onUpstreamError?.(ex.route, f.code);
  deps.log.warn({ requestId: ex.requestId, route: ex.route.cfg.name, code: f.code, err: (err as Error | undefined)?.message }, 'upstream error');
}

/** The upstream body failed after its headers: a timeout (the route's, or the caller's budget) or a broken connection. */
export function reportBody(deps: SettleDeps, ex: Exchange, err: Error): void {
  report(deps, ex, ex.reason === DEADLINE_ABORT ? DEADLINE_FAULT : bodyFault(err, ex.bodyTimeout > 0), err);
}

/**
 * Whether the response reached its end. An HTTP/2 response (the
 * compatibility layer's) says writableFinished even for a stream the
 * client reset: there it is an ended response on a stream closed without
 * an error code.
 */
export function responseFinished(res: ServerResponse): boolean {
  const stream = (res as unknown as { stream?: ServerHttp2Stream }).stream;
  if (stream === undefined) return res.writableFinished;
  return res.writableEnded && stream.rstCode === NGHTTP2_NO_ERROR;
}

/** The exchange ends (its response closed): the hold settles with what the limit and the breaker learn. */
export function settle(ex: Exchange, res: ServerResponse, deps: SettleDeps): void {
  const finished = responseFinished(res);
  if (!finished) {
    // Cut before the end. An upstream body that already failed was the cause (fastify
    // destroys the response then); otherwise the client left: stop the upstream request.
    const failed = ex.body?.errored;
    if (failed && ex.fault === null) reportBody(deps, ex, failed);
    ex.abort(ABORTED);
  }
  ex.body = null;
  ex.clearDeadlineTimer();
  const f = ex.fault;
  let outcome: Outcome = 'ignore';
  let result: BreakerResult = 'ignore';
  if (f !== null) {
    outcome = f.outcome;
    result = f.breaker;
  } else if (finished && ex.status > 0) {
    // A complete upstream response, whatever its status, is a breaker success. The limit learns
    // an overload (an overload status; for gRPC also grpc-status 8 or 14), else the RTT when
    // there is one (a gRPC call may have none: ./grpc-sample.ts).
    const overloaded = ex.route.overloadStatuses.has(ex.status) || (ex.grpc && isOverloadGrpcStatus(ex.upstreamTrailers?.['grpc-status'] ?? ex.grpcStatus));
    outcome = overloaded ? 'dropped' : ex.rttMs >= 0 ? 'success' : 'ignore';
    result = 'success';
  }
  if (ex.hold.settle(outcome, result, ex.rttMs >= 0 ? ex.rttMs : undefined)) deps.events.onSettled?.(ex.route, ex.lane, outcome);
}


/**
 * Forwarding an admitted request: @fastify/http-proxy → reply-from → the
 * route's undici pool (./upstream.ts), and the exchange's single settlement.
 *
 *   handler     the caller's remaining budget shortens the upstream's
 *               timeouts and goes upstream in the deadline header
 *   onResponse  RTT sample, status; the body streams to the client
 *   onError     before response headers: a 502/504 answer (./faults.ts)
 *   settle      at the response's close (registered by ./admit.ts): outcome
 *               and breaker result from what happened, hold.settle once
 *
 * Upstream faults and what the client sees
 *   before response headers   connect refused / unreachable / connect timeout /
 *                             reset / headers timeout / garbage: a 502 or 504
 *                             JSON answer
 *   after response headers    body timeout or reset mid-body: the status and
 *                             headers are already out, so the stream is cut:
 *                             the connection closes before the body's end
 *                             (content-length short, or no last chunk), never
 *                             a silent hang or a body that looks complete
 * Each fault is reported once (onUpstreamError, or onClientError for what
 * undici refused to send). Sluice never retries (reply-from's retries off).
 *
 * Drain: once draining, forwarded responses ask the client to close its
 * connection; when the drain timeout expires, upstream failures caused by
 * closing the pools answer 503 draining.
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import httpProxy from '@fastify/http-proxy';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { BreakerResult } from '../core/breaker.js';
import type { Clock, Random } from '../core/clock.js';
import type { Outcome } from '../core/limiter/limiter.js';
import { refusal } from '../core/limiter/refusal.js';
import { retryAfterSeconds } from '../core/retry-after.js';
import { PROXIED_METHODS } from './admit.js';
import { formatBudget } from './deadline.js';
import { ERRORS } from './errors.js';
import type { ProxyEvents } from './events.js';
import { CLIENT_FAULT, DEADLINE_FAULT, INTERNAL_FAULT, bodyFault, upstreamFault, type Fault } from './faults.js';
import { stripRequestHopByHop, stripResponseHopByHop } from './headers.js';
import type { Lifecycle } from './lifecycle.js';
import { exchangeOf, type Exchange } from './request-ctx.js';
import { addRateLimitHeaders, type Answers } from './responses.js';
import type { Runtime } from './runtime.js';
import { RouteDispatcher } from './upstream.js';

const ABORTED = new Error('client closed the connection');
const DEADLINE = new Error("the caller's deadline passed before the upstream answered");

export interface SettleDeps {
  readonly events: ProxyEvents;
  readonly log: Logger;
}

export interface ForwardOptions extends SettleDeps {
  readonly runtime: () => Runtime;
  readonly lifecycle: Lifecycle;
  readonly clock: Clock;
  readonly random: Random;
  readonly answers: Answers;
}

/** Records the exchange's fault and reports it, once. */
function report(deps: SettleDeps, ex: Exchange, f: Fault, err: unknown): void {
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
function reportBody(deps: SettleDeps, ex: Exchange, err: Error): void {
  report(deps, ex, ex.reason === DEADLINE ? DEADLINE_FAULT : bodyFault(err, ex.bodyTimeout > 0), err);
}

/** The exchange ends (its response closed): the hold settles with what the limit and the breaker learn. */
export function settle(ex: Exchange, res: ServerResponse, deps: SettleDeps): void {
  const finished = res.writableFinished;
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
    // A complete upstream response, whatever its status, is a breaker success.
    outcome = ex.route.overloadStatuses.has(ex.status) ? 'dropped' : 'success';
    result = 'success';
  }
  if (ex.hold.settle(outcome, result, ex.rttMs >= 0 ? ex.rttMs : undefined)) deps.events.onSettled?.(ex.route, ex.lane, outcome);
}

export async function forwardPlugin(app: FastifyInstance, opts: ForwardOptions): Promise<void> {
  const { clock, lifecycle, answers } = opts;
  const closing = () => lifecycle.phase !== 'serving';
  const dispatcher = new RouteDispatcher();

  // The front answers every method that is never proxied; this is a backstop.
  app.setNotFoundHandler((request, reply) => {
    opts.events.onClientError?.('method_not_allowed');
    reply.hijack();
    answers.error(reply.raw, 'method_not_allowed', request.id, closing());
  });

  /**
   * Errors that reach fastify: an upstream body that failed before its first
   * byte went out (the status line is not sent yet, so the client can still
   * get a proper 502/504), or a bug. Either way a JSON answer with a stable
   * code, never fastify's default body with the error's internals.
   */
  app.setErrorHandler((error, request, reply) => {
    const ex = exchangeOf(request.raw);
    if (ex.fault === null && ((error as { statusCode?: number }).statusCode ?? 500) < 500) {
      // fastify refused something about the request itself.
      report(opts, ex, CLIENT_FAULT, error);
    } else if (ex.fault === null) {
      const failed = ex.body?.errored;
      if (failed) reportBody(opts, ex, failed);
      else {
        opts.log.error({ err: error, requestId: ex.requestId, route: ex.route.cfg.name }, 'request failed');
        ex.fault = INTERNAL_FAULT;
      }
    }
    reply.hijack();
    answers.error(reply.raw, (ex.fault as Fault).code, ex.requestId, closing());
  });

  await app.register(httpProxy, {
    upstream: '',
    httpMethods: [...PROXIED_METHODS],
    undici: dispatcher as never,
    disableRequestLogging: true,
    // Keep the Location header as the upstream wrote it.
    internalRewriteLocationHeader: false,
    handler(request, reply, dest, options) {
      const ex = exchangeOf(request.raw);
      const now = clock.now();
      ex.dispatchedAt = now;
      const deadline = ex.hold.deadline;
      if (deadline !== Infinity) {
        // The upstream gets what is left of the caller's budget, and no longer to answer.
        const left = Math.max(1, Math.floor(deadline - now));
        const t = ex.route.cfg.timeouts;
        ex.budgetMs = left;
        if (left < t.bodyMs) ex.bodyTimeout = left;
        if (left < t.headersMs) {
          // undici's own timeouts tick in half seconds: the budget gets a timer of
          // its own, and undici's headersTimeout stays as the backstop.
          ex.headersTimeout = left;
          ex.deadlineTimer = clock.setTimer(() => ex.abort(DEADLINE), left);
        }
      }
      dispatcher.dispatching = ex;
      try {
        return reply.from(dest, options);
      } finally {
        dispatcher.dispatching = null;
      }
    },
    replyOptions: {
      getUpstream: (request) => exchangeOf(request.raw).route.cfg.upstream,
      // A load shedder must never amplify load: no retries, not even reply-from's GET-on-503.
      retryDelay: () => null,
      rewriteRequestHeaders: (request, headers) => {
        stripRequestHopByHop(headers);
        const ex = exchangeOf(request.raw);
        headers['x-request-id'] = ex.requestId;
        const dl = ex.route.cfg.deadline;
        if (ex.budgetMs > 0 && dl !== undefined) headers[dl.header] = formatBudget(ex.budgetMs, dl.format);
        return headers;
      },
      rewriteHeaders: (headers, request) => {
        if (request !== undefined) {
          const ex = exchangeOf(request.raw);
          headers['x-request-id'] = ex.requestId;
          if (ex.hold.rate !== null) addRateLimitHeaders(headers, opts.runtime().rateLimitPolicy, ex.hold.rate);
        }
        stripResponseHopByHop(headers);
        // Admitted before the drain began: still, do not keep the connection.
        if (closing()) headers['connection'] = 'close';
        return headers;
      },
      onResponse: (request, reply, res) => {
        const ex = exchangeOf(request.raw);
        ex.rttMs = clock.now() - ex.dispatchedAt;
        ex.status = res.statusCode;
        ex.body = res.stream as Readable;
        ex.clearDeadlineTimer();
        opts.events.onUpstreamResponse?.(ex.route, res.statusCode, ex.rttMs);
        reply.send(res.stream);
      },
      onError: (reply, { error }) => {
        const ex = exchangeOf(reply.request.raw);
        if (ex.aborted && ex.reason !== DEADLINE) return; // the client left; nobody to answer
        reply.hijack();
        const res = reply.raw as ServerResponse;
        if (lifecycle.phase === 'expired') {
          // The drain ran out of time and closed the pools under this request.
          opts.log.warn({ requestId: ex.requestId, route: ex.route.cfg.name }, 'request cut: drain timeout');
          answers.refusal(res, refusal('draining', retryAfterSeconds(0, opts.runtime().config.retryAfter, opts.random)), ex.requestId, true);
          return;
        }
        const f = upstreamFault(error);
        // A timeout shortened to the caller's budget is the caller's deadline, not the upstream's fault.
        if (ex.aborted || (f.code === 'upstream_timeout' && ex.headersTimeout > 0)) report(opts, ex, DEADLINE_FAULT, DEADLINE);
        else report(opts, ex, f, error);
        answers.error(res, (ex.fault as Fault).code, ex.requestId, closing());
      },
    },
  });
}

/**
 * Forwarding an admitted request: @fastify/http-proxy → reply-from → the
 * route's undici pool (./upstream.ts), and the exchange's single settlement.
 *
 *   handler     the caller's remaining budget shortens the upstream's
 *               timeouts and goes upstream in the deadline header
 *   onResponse  RTT sample, status; the body streams to the client
 *   onError     before response headers: a 502/504 answer (./faults.ts)
 *   settle      at the response's close (./settle.ts, registered by
 *               ./admit.ts): outcome and breaker result, hold.settle once
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
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import httpProxy, { type FastifyHttpProxyOptions } from '@fastify/http-proxy';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Clock, Random } from '../core/clock.js';
import { refusal } from '../core/limiter/refusal.js';
import { retryAfterSeconds } from '../core/retry-after.js';
import { formatBudget } from './deadline.js';
import { CLIENT_FAULT, DEADLINE_ABORT, DEADLINE_FAULT, INTERNAL_FAULT, upstreamFault, type Fault } from './faults.js';
import { forwardableTrailers, requestHeaders, responseHeaders } from './headers.js';
import type { Lifecycle } from './lifecycle.js';
import { PROXIED_METHODS } from './methods.js';
import { sampleFirstMessage, watchGrpcRequest } from './grpc-sample.js';
import { exchangeOf, type Exchange, type FrontFields, type FrontRequest } from './request-ctx.js';
import { hasBody } from './request-head.js';
import { addRateLimitHeaders, type Answers } from './responses.js';
import type { Runtime } from './runtime.js';
import { report, reportBody, type SettleDeps } from './settle.js';
import { BodyPipe, RouteDispatcher } from './upstream.js';

export interface ForwardOptions extends SettleDeps {
  readonly runtime: () => Runtime;
  readonly lifecycle: Lifecycle;
  readonly clock: Clock;
  readonly random: Random;
  readonly answers: Answers;
}

/** A failure before the response headers (reply-from's onError): a 502/504 answer, or nothing when the client left. */
function onUpstreamError(opts: ForwardOptions, ex: Exchange, res: ServerResponse, error: unknown): void {
  if (opts.lifecycle.phase === 'expired') {
    // The drain ran out of time and closed the pools under this request.
    opts.log.warn({ requestId: ex.requestId, route: ex.route.cfg.name }, 'request cut: drain timeout');
    opts.answers.refusal(res, refusal('draining', retryAfterSeconds(0, opts.runtime().config.retryAfter, opts.random)), ex.requestId, true);
    return;
  }
  const f = upstreamFault(error);
  // A timeout shortened to the caller's budget is the caller's deadline, not the upstream's fault.
  if (ex.aborted || (f.code === 'upstream_timeout' && ex.headersTimeout > 0)) report(opts, ex, DEADLINE_FAULT, DEADLINE_ABORT);
  else report(opts, ex, f, error);
  opts.answers.error(res, (ex.fault as Fault).code, ex.requestId, opts.lifecycle.phase !== 'serving');
}

/** reply-from's hooks: headers both ways, the RTT sample, upstream errors. */
function replyHooks(opts: ForwardOptions): NonNullable<FastifyHttpProxyOptions['replyOptions']> {
  const { clock, lifecycle } = opts;
  return {
    getUpstream: (request) => exchangeOf(request.raw).route.cfg.upstream,
    // A load shedder must never amplify load: no retries, not even reply-from's GET-on-503.
    retryDelay: () => null,
    rewriteRequestHeaders: (request, spread) => {
      const ex = exchangeOf(request.raw);
      // Edited on a plain copy: reply-from hands over `{ ...req.headers }`, and on Node 20
      // adding fields to an object made by spread is slow (CPU profile under wrk: the
      // request transform took ~4% of the proxy's CPU, on the copy ~0.3%; issue-12 note).
      const headers: typeof spread = Object.assign({}, spread);
      ex.wantsTrailers = requestHeaders(headers, ex.route.headerPolicy, request.raw as FrontRequest);
      headers['x-request-id'] = ex.requestId;
      const dl = ex.route.cfg.deadline;
      if (ex.budgetMs > 0 && dl !== undefined) headers[dl.header] = formatBudget(ex.budgetMs, dl.format);
      return headers;
    },
    rewriteHeaders: (upstream, request) => {
      const ex = exchangeOf((request as NonNullable<typeof request>).raw);
      const headers = responseHeaders(upstream, ex.route.headerPolicy, ex.wantsTrailers);
      headers['x-request-id'] = ex.requestId;
      if (ex.hold.rate !== null) addRateLimitHeaders(headers, opts.runtime().rateLimitPolicy, ex.hold.rate);
      // Admitted before the drain began: still, do not keep the connection (HTTP/2: the session gets GOAWAY instead).
      if (lifecycle.phase !== 'serving' && !((request as NonNullable<typeof request>).raw as unknown as FrontFields).h2) headers['connection'] = 'close';
      return headers;
    },
    onResponse: (request, reply, res) => {
      const ex = exchangeOf(request.raw);
      const rtt = clock.now() - ex.dispatchedAt;
      ex.status = res.statusCode;
      ex.body = res.stream as Readable;
      ex.clearDeadlineTimer();
      opts.events.onUpstreamResponse?.(ex.route, ex.lane, res.statusCode, rtt);
      // A gRPC call's response headers say nothing of its latency (a stream may send them at once): ./grpc-sample.ts.
      if (!ex.grpc) ex.rttMs = rtt;
      else ex.grpcStatus = (res as unknown as { headers: Record<string, string | string[] | undefined> }).headers['grpc-status'];
      if (ex.wantsTrailers) {
        // Node refuses a Trailer announcement on a response without a body.
        if (request.method === 'HEAD' || res.statusCode === 204 || res.statusCode === 304) reply.removeHeader('trailer');
        else passTrailers(ex, reply.raw as ServerResponse, res.stream as Readable);
      }
      reply.send(res.stream);
      // After send: fastify pipes the body synchronously (no onSend hooks), so this listener takes nothing from the pipe.
      if (ex.grpc) sampleFirstMessage(ex, res.stream as Readable, clock);
    },
    onError: (reply, { error }) => {
      const ex = exchangeOf(reply.request.raw);
      if (ex.aborted && ex.reason !== DEADLINE_ABORT) return; // the client left; nobody to answer
      reply.hijack();
      onUpstreamError(opts, ex, reply.raw as ServerResponse, error);
    },
  };
}

/**
 * The caller's remaining budget shortens the upstream's timeouts (and goes
 * upstream in the deadline header, see rewriteRequestHeaders).
 */
function applyBudget(ex: Exchange, clock: Clock, now: number): void {
  const deadline = ex.hold.deadline;
  if (deadline === Infinity) return;
  // The upstream gets what is left of the caller's budget, and no longer to answer.
  const left = Math.max(1, Math.floor(deadline - now));
  const t = ex.route.cfg.timeouts;
  ex.budgetMs = left;
  if (left < t.bodyMs) ex.bodyTimeout = left;
  if (left < t.headersMs) {
    // undici's own timeouts tick in half seconds: the budget gets a timer of
    // its own, and undici's headersTimeout stays as the backstop.
    ex.headersTimeout = left;
    ex.deadlineTimer = clock.setTimer(() => ex.abort(DEADLINE_ABORT), left);
  }
}

/**
 * Errors that reach fastify: an upstream body that failed before its first
 * byte went out (the status line is not sent yet, so the client can still
 * get a proper 502/504), a 4xx of fastify's own, or a bug. Always a JSON
 * answer with a stable code, never fastify's default body with the error's
 * internals.
 */
function errorHandler(opts: ForwardOptions): (error: Error, request: FastifyRequest, reply: FastifyReply) => void {
  return (error, request, reply) => {
    const ex = exchangeOf(request.raw);
    if (ex.fault === null) {
      const failed = ex.body?.errored;
      if (failed) reportBody(opts, ex, failed);
      else if (((error as { statusCode?: number }).statusCode ?? 500) < 500) report(opts, ex, CLIENT_FAULT, error);
      else {
        opts.log.error({ err: error, requestId: ex.requestId, route: ex.route.cfg.name }, 'request failed');
        ex.fault = INTERNAL_FAULT;
      }
    }
    reply.hijack();
    opts.answers.error(reply.raw, (ex.fault as Fault).code, ex.requestId, opts.lifecycle.phase !== 'serving');
  };
}

/**
 * The upstream's trailers go to a client that takes them (TE: trailers):
 * undici fills them in before the body's 'end', and this listener runs
 * before the one that ends the client's response (registered first).
 */
function passTrailers(ex: Exchange, res: ServerResponse, body: Readable): void {
  body.once('end', () => {
    const t = ex.upstreamTrailers === null ? null : forwardableTrailers(ex.upstreamTrailers);
    if (t === null) return;
    try {
      res.addTrailers(t);
    } catch {
      // A trailer Node will not write (an invalid name or value): the body is complete without it.
    }
  });
}

/** The client's body as undici gets it: piped through a stream of its own (see BodyPipe). */
function bodyStream(req: IncomingMessage): BodyPipe {
  const body = new BodyPipe();
  req.pipe(body);
  return body;
}

/** @fastify/http-proxy inside an encapsulated context of its own, so that `logLevel` applies to its routes. */
async function quietProxy(child: FastifyInstance, o: FastifyHttpProxyOptions): Promise<void> {
  await child.register(httpProxy, o);
}

export async function forwardPlugin(app: FastifyInstance, opts: ForwardOptions): Promise<void> {
  const dispatcher = new RouteDispatcher();
  // Sluice never parses or buffers a body: to fastify every method is bodyless, so no
  // content-type parser runs (no 415 for an empty or unknown Content-Type) and the
  // client's stream goes to undici as it is (RouteDispatcher, requestBody).
  for (const m of PROXIED_METHODS) app.addHttpMethod(m, { hasBody: false, overrideExisting: true });
  // The front answers every method that is never proxied; this is a backstop.
  app.setNotFoundHandler((request, reply) => {
    opts.events.onClientError?.('method_not_allowed');
    reply.hijack();
    opts.answers.error(reply.raw, 'method_not_allowed', request.id, opts.lifecycle.phase !== 'serving');
  });
  app.setErrorHandler(errorHandler(opts));
  await app.register(quietProxy, {
    // reply-from would log every upstream error a second time, with a stack, on the
    // request's logger: its routes log errors only (report() logs each fault once).
    logLevel: 'error',
    upstream: '',
    httpMethods: [...PROXIED_METHODS],
    undici: dispatcher as never,
    disableRequestLogging: true,
    // Keep the Location header as the upstream wrote it.
    internalRewriteLocationHeader: false,
    handler(request, reply, dest, options) {
      const ex = exchangeOf(request.raw);
      const now = opts.clock.now();
      ex.dispatchedAt = now;
      applyBudget(ex, opts.clock, now);
      if (hasBody(request.raw)) ex.requestBody = bodyStream(request.raw);
      if ((request.raw as unknown as FrontFields).grpc) watchGrpcRequest(ex, request.raw, opts.clock);
      dispatcher.dispatching = ex;
      try {
        return reply.from(dest, options);
      } finally {
        dispatcher.dispatching = null;
      }
    },
    replyOptions: replyHooks(opts),
  });
}

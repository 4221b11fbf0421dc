/**
 * The proxy port: route, classify, admit / queue / refuse, forward, settle
 * (../shared/DESIGN.md §1).
 *
 *   onRequest hook   match route -> classify lane + client key -> deadline
 *                    -> circuit breaker -> rate -> limiter.acquire: permit
 *                    (continue), ticket (continue later), refusal (answered
 *                    here, nothing forwarded)
 *   handler          @fastify/http-proxy -> reply-from -> the route's undici
 *                    pool, timeouts shortened to the caller's remaining budget
 *   res 'close'      the single settlement point: it fires exactly once per
 *                    response, whether it finished, the client left, or the
 *                    upstream broke, so every permit settles exactly once,
 *                    every ticket leaves its queue and every breaker
 *                    admission is recorded.
 *
 * Upstream faults and what the client sees
 *   before response headers   connect refused / unreachable / connect timeout /
 *                             reset / headers timeout / garbage: a 502 or 504
 *                             JSON answer (onError, classifyUpstreamError)
 *   after response headers    body timeout or reset mid-body: the status and
 *                             headers are already out, so the stream is cut:
 *                             the connection closes before the body's end
 *                             (content-length short, or no last chunk), never
 *                             a silent hang or a body that looks complete
 * Each fault is reported once through events.onUpstreamError.
 *
 * Circuit breaker results (core/breaker.ts): 'failure' is any of the faults
 * above, except a timeout that only fired because the caller's own deadline
 * was shorter than the route's timeout (deadline_exceeded: that is the
 * caller's budget, not the upstream's health, and a client must not be able
 * to open the breaker for everyone by sending tiny deadlines). 'success' is
 * any complete upstream response, whatever its status: overload statuses
 * (503, 429...) are the adaptive limit's business, not the breaker's.
 * 'ignore' is everything else: refused, or the client left.
 *
 * Shadow routes ask limiter.acquireShadow instead: the request always starts
 * at once (never queued, never refused); a refusal enforce mode would have
 * given is reported (onShadowRefused, a sampled "would refuse" log line)
 * instead of onAdmitted. It settles like any other permit. An open circuit
 * or a spent deadline is such a would-be refusal too.
 *
 * Drain (Lifecycle.phase, set by the app): once draining, every response
 * asks the client to close its connection, so keep-alive clients move to
 * other instances; once the listener is closed, requests still arriving on
 * open connections are refused with 503 draining; when the drain timeout
 * expires, upstream failures caused by closing the pools answer 503 draining.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import httpProxy from '@fastify/http-proxy';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Pool } from 'undici';
import type { BreakerResult, BreakerStateName } from '../core/breaker.js';
import type { Clock, Random, Timer } from '../core/clock.js';
import type { Hold, Queued } from '../core/gate/gate.js';
import type { Outcome } from '../core/limiter/limiter.js';
import { refusal, type Refusal } from '../core/limiter/refusal.js';
import { retryAfterSeconds } from '../core/retry-after.js';
import { SampledLog } from '../observability/sampled-log.js';
import { formatBudget, parseBudgetMs } from './deadline.js';
import { ERROR_STATUS, writeError, writeRefusal, type ErrorCode } from './responses.js';
import { classify, isAmbiguousPath, pathOf } from './routes.js';
import type { RouteRuntime, Runtime } from './runtime.js';
import { RouteDispatcher, UpstreamSignal, type Dispatching } from './upstream.js';

/**
 * Admission decisions. Every request that matched a route ends in exactly one
 * of admitted, refused, shadow-refused or abandoned; every admitted request
 * is later settled exactly once.
 */
export interface AdmissionEvents {
  /** A permit was granted, after `queuedMs` in the queue (0 when at once). */
  onAdmitted?(route: RouteRuntime, lane: number, queuedMs: number): void;
  /** Refused; `queuedMs` is set when the request waited in the queue first (queue_timeout, deadline). */
  onRefused?(route: RouteRuntime, lane: number, r: Refusal, queuedMs?: number): void;
  /** Shadow mode: `r` would have been the answer; the request is forwarded anyway. Fires instead of onAdmitted. */
  onShadowRefused?(route: RouteRuntime, lane: number, r: Refusal): void;
  /** The client left while queued: it left the queue and was never forwarded. */
  onAbandoned?(route: RouteRuntime, lane: number, queuedMs: number): void;
  onSettled?(route: RouteRuntime, lane: number, outcome: Outcome): void;
  /**
   * Sluice answered a 4xx itself, before admission: malformed, oversized or too
   * slow requests (emitted by app.ts), bad paths, bad deadlines, no route, a
   * method that is never proxied.
   */
  onClientError?(code: ErrorCode): void;
}

/** What happened upstream, for admitted requests. */
export interface UpstreamEvents {
  /** Response headers arrived `rttMs` after dispatch. */
  onUpstreamResponse?(route: RouteRuntime, status: number, rttMs: number): void;
  /** Every upstream fault, once per request: before headers (502/504 answered) or mid-body (`upstream_body_*`). */
  onUpstreamError?(route: RouteRuntime, code: ErrorCode): void;
  /** A route's circuit breaker changed state (wired to the breakers by app.ts through RuntimeDeps). */
  onBreakerState?(route: RouteRuntime, state: BreakerStateName): void;
}

/** What the proxy reports as it works; observability plugs in here. All methods are optional no-ops. */
export interface ProxyEvents extends AdmissionEvents, UpstreamEvents {}

/**
 * Where the instance is in a graceful drain; read on every request.
 *   serving    normal
 *   draining   readiness fails; requests are still served, each response closes its connection
 *   closing    the listener is closed; requests on connections still open are refused (503 draining)
 *   expired    the drain timeout passed; what is left is being cut
 */
export type Phase = 'serving' | 'draining' | 'closing' | 'expired';
export interface Lifecycle {
  phase: Phase;
}

export interface ProxyOptions {
  /** Returns the runtime in force; it may be swapped between requests (reload). */
  readonly runtime: () => Runtime;
  /** The drain phase, owned by the app; always serving when left out. */
  readonly lifecycle?: Lifecycle;
  readonly clock: Clock;
  readonly random: Random;
  readonly events?: ProxyEvents;
  /** Refusal log lines per second before sampling kicks in. */
  readonly refusalLogPerSecond?: number;
  /** The refusal log sampler, when the caller wants to read its suppressed count; else one is made. */
  readonly refusalLog?: SampledLog;
}

const ABORTED = new Error('client closed the connection');
const DEADLINE = new Error("the caller's deadline passed before the upstream answered");

/**
 * Per-request state. It doubles as the upstream abort signal and as the
 * dispatcher's per-request options, so forwarding allocates nothing more.
 */
class RequestCtx extends UpstreamSignal implements Dispatching {
  /** Admitted: the gate's hold, settled once at the response's close. */
  hold: Hold | null = null;
  /** Waiting in a lane queue. */
  queued: Queued | null = null;
  /** Budget left when dispatched (ms), forwarded upstream in the deadline header. */
  budgetMs = 0;
  headersTimeout = 0;
  bodyTimeout = 0;
  /** Fires when the budget runs out before the upstream's headers arrive. */
  deadlineTimer: Timer | null = null;
  dispatchedAt = 0;
  rttMs = -1;
  status = 0;
  /** The upstream response body while it streams, to tell an upstream failure from a client abort. */
  body: Readable | null = null;
  /** Set when the upstream failed, so settlement knows the outcome. */
  outcome: Outcome | null = null;
  fault: ErrorCode | null = null;
  constructor(
    readonly route: RouteRuntime,
    readonly lane: number,
  ) {
    super();
  }
  get pool(): Pool {
    return this.route.pool;
  }
  get signal(): UpstreamSignal {
    return this;
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    sluice: RequestCtx | null;
  }
}

/** reply-from error codes -> our answer and what the limit should learn. */
function classifyUpstreamError(err: unknown): { code: ErrorCode; outcome: Outcome } {
  type E = { code?: string; name?: string; cause?: E } | undefined;
  const e = err as E;
  const code = e?.cause?.code ?? e?.code ?? '';
  // The upstream answered something that is not HTTP (undici's parser error carries no code).
  if ((e?.cause ?? e)?.name === 'HTTPParserError' || code.startsWith('HPE_')) {
    return { code: 'bad_upstream_response', outcome: 'ignore' };
  }
  switch (code) {
    // undici refused the request locally, before a byte went upstream: a header
    // it will not send (keep-alive, upgrade, transfer-encoding, expect...), a bad
    // header value. The client's request was at fault, never the upstream.
    case 'UND_ERR_INVALID_ARG':
    case 'UND_ERR_NOT_SUPPORTED':
      return { code: 'bad_request', outcome: 'ignore' };
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'FST_REPLY_FROM_GATEWAY_TIMEOUT':
      return { code: 'upstream_timeout', outcome: 'dropped' };
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'FST_REPLY_FROM_CONNECT_TIMEOUT':
      return { code: 'upstream_connect_timeout', outcome: 'dropped' };
    case 'ECONNREFUSED':
      return { code: 'upstream_refused', outcome: 'ignore' };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return { code: 'upstream_unreachable', outcome: 'ignore' };
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'FST_REPLY_FROM_CONNECTION_RESET':
    case 'FST_REPLY_FROM_UNDICI_SOCKET':
      return { code: 'upstream_reset', outcome: 'ignore' };
    case 'FST_REPLY_FROM_BAD_GATEWAY':
      return { code: 'bad_upstream_response', outcome: 'ignore' };
    default:
      return { code: 'upstream_reset', outcome: 'ignore' };
  }
}

/**
 * Request headers that describe the client's connection, not the request
 * (RFC 9110 §7.6.1), removed before forwarding. reply-from already drops
 * `connection`, the headers it names and `transfer-encoding`. undici refuses
 * `keep-alive`, `upgrade` and `expect` outright, so forwarding them would turn
 * a client's header into a failed upstream exchange. `expect: 100-continue`
 * has been answered by Node already (the body is on its way); `te` only
 * survives as `trailers`.
 */
function stripHopByHop(headers: Record<string, string | string[] | undefined>): void {
  if (headers['keep-alive'] !== undefined) delete headers['keep-alive'];
  if (headers.upgrade !== undefined) delete headers.upgrade;
  if (headers.expect !== undefined) delete headers.expect;
  if (headers['proxy-connection'] !== undefined) delete headers['proxy-connection'];
  if (headers['proxy-authorization'] !== undefined) delete headers['proxy-authorization'];
  const te = headers.te;
  if (te !== undefined && !(typeof te === 'string' && te.trim().toLowerCase() === 'trailers')) delete headers.te;
}

/** What the circuit breaker learns from a settled request (see the header comment). */
function breakerResult(ctx: RequestCtx, finished: boolean): BreakerResult {
  if (ctx.fault !== null) return ctx.fault === 'deadline_exceeded' || ERROR_STATUS[ctx.fault] < 500 ? 'ignore' : 'failure';
  return finished && ctx.status > 0 ? 'success' : 'ignore';
}

export async function proxyPlugin(app: FastifyInstance, opts: ProxyOptions): Promise<void> {
  const { clock, random } = opts;
  const events = opts.events ?? {};
  const refusalLog = opts.refusalLog ?? new SampledLog(clock, opts.refusalLogPerSecond ?? 20);
  const shadowLog = new SampledLog(clock, opts.refusalLogPerSecond ?? 20);
  const lifecycle: Lifecycle = opts.lifecycle ?? { phase: 'serving' };
  const dispatcher = new RouteDispatcher();

  app.decorateRequest('sluice', null);

  function clientError(reply: FastifyReply, code: ErrorCode): void {
    events.onClientError?.(code);
    reply.hijack();
    writeError(reply.raw, code, reply.request.id);
  }

  // The catch-all route takes every method that is proxied; anything else (TRACE, WebDAV...) lands here.
  app.setNotFoundHandler((_request, reply) => clientError(reply, 'method_not_allowed'));

  function refuse(request: FastifyRequest, reply: FastifyReply, ctx: RequestCtx, r: Refusal, queuedMs?: number): void {
    events.onRefused?.(ctx.route, ctx.lane, r, queuedMs);
    const suppressed = refusalLog.admit();
    if (suppressed >= 0) {
      request.log.warn(
        {
          route: ctx.route.cfg.name,
          lane: ctx.route.laneNames[ctx.lane],
          reason: r.reason,
          status: r.status,
          retryAfterSeconds: r.retryAfterSeconds,
          suppressed,
        },
        'request refused',
      );
    }
    reply.hijack();
    writeRefusal(reply.raw, r, request.id);
  }

  /** The gate admitted the request (now or after its queue): report it, as a would-be refusal on shadow routes. */
  function admitted(request: FastifyRequest, ctx: RequestCtx, hold: Hold): void {
    ctx.hold = hold;
    if (hold.wouldRefuse !== null) wouldRefuse(request, ctx, hold.wouldRefuse);
    else events.onAdmitted?.(ctx.route, ctx.lane, hold.queuedMs);
  }

  function wouldRefuse(request: FastifyRequest, ctx: RequestCtx, r: Refusal): void {
    events.onShadowRefused?.(ctx.route, ctx.lane, r);
    const suppressed = shadowLog.admit();
    if (suppressed >= 0) {
      request.log.info(
        { route: ctx.route.cfg.name, lane: ctx.route.laneNames[ctx.lane], reason: r.reason, status: r.status, shadow: true, suppressed },
        'would refuse',
      );
    }
  }

  function drainRefusal(rt: Runtime): Refusal {
    // The instance is going away: another one can take the retry at once.
    return refusal('draining', retryAfterSeconds(0, rt.config.retryAfter, random));
  }

  function upstreamFault(log: FastifyBaseLogger, ctx: RequestCtx, code: ErrorCode, outcome: Outcome, err: unknown): void {
    ctx.fault = code;
    ctx.outcome = outcome;
    events.onUpstreamError?.(ctx.route, code);
    log.warn({ route: ctx.route.cfg.name, code, err: (err as Error | undefined)?.message }, 'upstream error');
  }

  /** The upstream body failed after its headers were forwarded: a timeout or a broken connection. */
  function bodyFault(log: FastifyBaseLogger, ctx: RequestCtx, err: Error): void {
    if (ctx.reason === DEADLINE) {
      upstreamFault(log, ctx, 'deadline_exceeded', 'ignore', err);
    } else if ((err as { code?: string }).code === 'UND_ERR_BODY_TIMEOUT') {
      if (ctx.bodyTimeout > 0) upstreamFault(log, ctx, 'deadline_exceeded', 'ignore', err);
      else upstreamFault(log, ctx, 'upstream_body_timeout', 'dropped', err);
    } else {
      upstreamFault(log, ctx, 'upstream_body_reset', 'ignore', err);
    }
  }

  function onClose(request: FastifyRequest, ctx: RequestCtx, res: ServerResponse): void {
    const queued = ctx.queued;
    if (queued !== null) {
      // The client left while queued: it leaves the queue now and is never forwarded.
      ctx.queued = null;
      const waited = queued.cancel();
      if (waited >= 0) events.onAbandoned?.(ctx.route, ctx.lane, waited);
      return;
    }
    const hold = ctx.hold;
    if (hold === null) return;
    ctx.hold = null;
    const finished = res.writableFinished;
    let outcome: Outcome;
    if (!finished) {
      // Cut before the end. An upstream body that already failed was the cause (fastify
      // destroys the response then); otherwise the client left: stop the upstream request.
      const failed = ctx.body?.errored;
      if (failed && ctx.fault === null) bodyFault(request.log, ctx, failed);
      ctx.abort(ABORTED);
      outcome = ctx.outcome ?? 'ignore';
    } else {
      outcome = ctx.outcome ?? (ctx.route.overloadStatuses.has(ctx.status) ? 'dropped' : 'success');
    }
    ctx.body = null;
    if (ctx.deadlineTimer !== null) {
      ctx.deadlineTimer.cancel();
      ctx.deadlineTimer = null;
    }
    hold.settle(outcome, breakerResult(ctx, finished), ctx.rttMs >= 0 ? ctx.rttMs : undefined);
    events.onSettled?.(ctx.route, ctx.lane, outcome);
  }

  /**
   * Errors that reach fastify: an upstream body that failed before its first
   * byte went out (the status line is not sent yet, so the client can still
   * get a proper 502/504), or a bug. Either way a JSON answer with a stable
   * code, never fastify's default body with the error's internals.
   */
  app.setErrorHandler((error, request, reply) => {
    const ctx = request.sluice;
    if (ctx === null || ((error as { statusCode?: number }).statusCode ?? 500) < 500) {
      reply.send(error);
      return;
    }
    if (ctx.fault === null) {
      const failed = ctx.body?.errored;
      if (failed) bodyFault(request.log, ctx, failed);
      else request.log.error({ err: error, route: ctx.route.cfg.name }, 'request failed');
    }
    const code: ErrorCode = ctx.fault ?? 'internal_error';
    if (ctx.outcome === null) ctx.outcome = 'ignore';
    reply.hijack();
    const res = reply.raw;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // The upstream's headers were staged for the response that failed: none of them belong to ours.
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    writeError(res, code, request.id);
  });

  app.addHook('onRequest', (request, reply, done) => {
    // A method that is never proxied goes to the not-found handler: nothing to admit.
    if (request.is404) {
      done();
      return;
    }
    const raw: IncomingMessage = request.raw;
    const res = reply.raw;
    const phase = lifecycle.phase;
    if (phase !== 'serving') res.setHeader('connection', 'close');
    const path = pathOf(raw.url ?? '/');
    if (isAmbiguousPath(path)) {
      clientError(reply, 'bad_path');
      return;
    }
    const rt = opts.runtime();
    const route = rt.table.match(raw.method ?? 'GET', raw.headers.host, path);
    if (route === undefined) {
      clientError(reply, 'no_route');
      return;
    }
    const clientKey = rt.clientKey(raw.headers, request.ip);
    const lane = classify(rt.config.classify, { method: raw.method ?? 'GET', path, headers: raw.headers, clientKey });
    const ctx = new RequestCtx(route, lane);
    request.sluice = ctx;

    if (phase !== 'serving' && phase !== 'draining') {
      refuse(request, reply, ctx, drainRefusal(rt));
      return;
    }

    let budget = Infinity;
    const dl = route.cfg.deadline;
    if (dl !== undefined) {
      const value = raw.headers[dl.header];
      if (value !== undefined) {
        budget = parseBudgetMs(value, dl.format);
        if (Number.isNaN(budget)) {
          clientError(reply, 'bad_deadline');
          return;
        }
      }
    }

    const entry = route.gate.enter(lane, clientKey, budget);
    switch (entry.kind) {
      case 'refused':
        refuse(request, reply, ctx, entry);
        return;
      case 'hold':
        admitted(request, ctx, entry);
        res.once('close', () => onClose(request, ctx, res));
        done();
        return;
      case 'queued':
        ctx.queued = entry;
        res.once('close', () => onClose(request, ctx, res));
        entry.wait((later, queuedMs) => {
          ctx.queued = null;
          if (later.kind === 'refused') {
            refuse(request, reply, ctx, later, queuedMs);
            return;
          }
          admitted(request, ctx, later);
          done();
        });
        return;
    }
  });

  await app.register(httpProxy, {
    upstream: '',
    // Any method a client may send; admission happens in onRequest.
    httpMethods: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
    undici: dispatcher as never,
    disableRequestLogging: true,
    // Keep the Location header as the upstream wrote it.
    internalRewriteLocationHeader: false,
    handler(request, reply, dest, options) {
      const ctx = request.sluice as RequestCtx;
      const now = clock.now();
      ctx.dispatchedAt = now;
      const deadline = (ctx.hold as Hold).deadline;
      if (deadline !== Infinity) {
        // The upstream gets what is left of the caller's budget, and no longer to answer.
        const left = Math.max(1, Math.floor(deadline - now));
        const t = ctx.route.cfg.timeouts;
        ctx.budgetMs = left;
        if (left < t.bodyMs) ctx.bodyTimeout = left;
        if (left < t.headersMs) {
          // undici's own timeouts tick in half seconds: the budget gets a timer of
          // its own, and undici's headersTimeout stays as the backstop.
          ctx.headersTimeout = left;
          ctx.deadlineTimer = clock.setTimer(() => ctx.abort(DEADLINE), left);
        }
      }
      dispatcher.dispatching = ctx;
      try {
        return reply.from(dest, options);
      } finally {
        dispatcher.dispatching = null;
      }
    },
    replyOptions: {
      getUpstream: (request) => (request.sluice as RequestCtx).route.cfg.upstream,
      // A load shedder must never amplify load: no retries, not even reply-from's GET-on-503.
      retryDelay: () => null,
      rewriteRequestHeaders: (request, headers) => {
        stripHopByHop(headers);
        headers['x-request-id'] = request.id;
        const ctx = request.sluice as RequestCtx;
        if (ctx.budgetMs > 0) {
          const dl = ctx.route.cfg.deadline as NonNullable<RequestCtx['route']['cfg']['deadline']>;
          headers[dl.header] = formatBudget(ctx.budgetMs, dl.format);
        }
        return headers;
      },
      rewriteHeaders: (headers, request) => {
        if (request !== undefined) headers['x-request-id'] = request.id;
        // Hop-by-hop headers describe the upstream connection, not the client's
        // (RFC 9110 §7.6.1): an upstream's `connection: close` must not close the
        // client's keep-alive connection, nor its keep-alive timeout be advertised.
        if (headers.connection !== undefined) delete headers.connection;
        if (headers['keep-alive'] !== undefined) delete headers['keep-alive'];
        // Admitted before the drain began: still, do not keep the connection.
        if (lifecycle.phase !== 'serving') headers['connection'] = 'close';
        return headers;
      },
      onResponse: (request, reply, res) => {
        const ctx = request.sluice as RequestCtx;
        ctx.rttMs = clock.now() - ctx.dispatchedAt;
        ctx.status = res.statusCode;
        ctx.body = res.stream as Readable;
        if (ctx.deadlineTimer !== null) {
          ctx.deadlineTimer.cancel();
          ctx.deadlineTimer = null;
        }
        events.onUpstreamResponse?.(ctx.route, res.statusCode, ctx.rttMs);
        reply.send(res.stream);
      },
      onError: (reply, { error }) => {
        const request = reply.request;
        const ctx = request.sluice as RequestCtx;
        if (ctx.aborted && ctx.reason !== DEADLINE) return; // the client left; nobody to answer
        if (lifecycle.phase === 'expired') {
          // The drain ran out of time and closed the pools under this request.
          ctx.outcome = 'ignore';
          request.log.warn({ route: ctx.route.cfg.name }, 'request cut: drain timeout');
          reply.hijack();
          writeRefusal(reply.raw as ServerResponse, drainRefusal(opts.runtime()), request.id);
          return;
        }
        const c = classifyUpstreamError(error);
        // A timeout shortened to the caller's budget is the caller's deadline, not the upstream's fault.
        if (ctx.aborted || (c.code === 'upstream_timeout' && ctx.headersTimeout > 0)) {
          upstreamFault(request.log, ctx, 'deadline_exceeded', 'ignore', DEADLINE);
        } else if (ERROR_STATUS[c.code] < 500) {
          // Rejected locally for what the client sent: the client's error, not an upstream fault.
          ctx.fault = c.code;
          ctx.outcome = 'ignore';
          events.onClientError?.(c.code);
        } else {
          upstreamFault(request.log, ctx, c.code, c.outcome, error);
        }
        reply.hijack();
        writeError(reply.raw as ServerResponse, ctx.fault as ErrorCode, request.id);
      },
    },
  });
}

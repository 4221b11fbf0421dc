/**
 * The proxy port: route, classify, admit / queue / refuse, forward, settle
 * (../shared/DESIGN.md §1).
 *
 *   onRequest hook   match route -> classify lane + client key -> rate ->
 *                    limiter.acquire: permit (continue), ticket (continue
 *                    later), refusal (answered here, nothing forwarded)
 *   handler          @fastify/http-proxy -> reply-from -> the route's undici pool
 *   res 'close'      the single settlement point: it fires exactly once per
 *                    response, whether it finished, the client left, or the
 *                    upstream broke, so every permit settles exactly once and
 *                    every ticket leaves its queue.
 *
 * Shadow routes ask limiter.acquireShadow instead: the request always starts
 * at once (never queued, never refused); a refusal enforce mode would have
 * given is reported (onShadowRefused, a sampled "would refuse" log line)
 * instead of onAdmitted. It settles like any other permit.
 *
 * Drain (Lifecycle.phase, set by the app): once draining, every response
 * asks the client to close its connection, so keep-alive clients move to
 * other instances; once the listener is closed, requests still arriving on
 * open connections are refused with 503 draining; when the drain timeout
 * expires, upstream failures caused by closing the pools answer 503 draining.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import httpProxy from '@fastify/http-proxy';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Clock } from '../core/clock.js';
import type { Outcome, Permit, ShadowPermit, Ticket } from '../core/limiter/limiter.js';
import { refusal, type Refusal } from '../core/limiter/refusal.js';
import { retryAfterSeconds } from '../core/retry-after.js';
import type { Random } from '../core/clock.js';
import { SampledLog } from '../observability/sampled-log.js';
import { writeError, writeRefusal, type ErrorCode } from './responses.js';
import { classify, isAmbiguousPath, pathOf } from './routes.js';
import type { RouteRuntime, Runtime } from './runtime.js';
import { RouteDispatcher, UpstreamSignal } from './upstream.js';

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
}

/** What happened upstream, for admitted requests. */
export interface UpstreamEvents {
  /** Response headers arrived `rttMs` after dispatch. */
  onUpstreamResponse?(route: RouteRuntime, status: number, rttMs: number): void;
  onUpstreamError?(route: RouteRuntime, code: ErrorCode): void;
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

/** Per-request state; it doubles as the upstream abort signal. */
class RequestCtx extends UpstreamSignal {
  permit: Permit | null = null;
  ticket: Ticket | null = null;
  /** Clock time the request entered a queue (-1: never queued). */
  queuedAt = -1;
  dispatchedAt = 0;
  rttMs = -1;
  status = 0;
  /** Set when the upstream failed, so settlement knows the outcome. */
  outcome: Outcome | null = null;
  constructor(
    readonly route: RouteRuntime,
    readonly lane: number,
  ) {
    super();
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    sluice: RequestCtx | null;
  }
}

/** reply-from error codes -> our answer and what the limit should learn. */
function classifyUpstreamError(err: unknown): { code: ErrorCode; outcome: Outcome } {
  const e = err as { code?: string; cause?: { code?: string } } | undefined;
  const code = e?.cause?.code ?? e?.code ?? '';
  switch (code) {
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

export async function proxyPlugin(app: FastifyInstance, opts: ProxyOptions): Promise<void> {
  const { clock, random } = opts;
  const events = opts.events ?? {};
  const refusalLog = opts.refusalLog ?? new SampledLog(clock, opts.refusalLogPerSecond ?? 20);
  const shadowLog = new SampledLog(clock, opts.refusalLogPerSecond ?? 20);
  const lifecycle: Lifecycle = opts.lifecycle ?? { phase: 'serving' };
  const dispatcher = new RouteDispatcher();

  app.decorateRequest('sluice', null);

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

  /** Shadow mode: decide as enforce would, report a would-be refusal, and start the request now. */
  function admitShadow(request: FastifyRequest, ctx: RequestCtx, clientKey: string, rateRefusal: Refusal | null): void {
    const permit: ShadowPermit = ctx.route.limiter.acquireShadow(ctx.lane, clientKey);
    ctx.permit = permit;
    const r = rateRefusal ?? permit.wouldRefuse;
    if (r !== null) wouldRefuse(request, ctx, r);
    else events.onAdmitted?.(ctx.route, ctx.lane, 0);
  }

  function drainRefusal(rt: Runtime): Refusal {
    // The instance is going away: another one can take the retry at once.
    return refusal('draining', retryAfterSeconds(0, rt.config.retryAfter, random));
  }

  function onClose(ctx: RequestCtx, res: ServerResponse): void {
    ctx.route.poolUse.active--;
    if (ctx.ticket !== null) {
      // The client left while queued: it leaves the queue now and is never forwarded.
      ctx.ticket.cancel();
      ctx.ticket = null;
      events.onAbandoned?.(ctx.route, ctx.lane, clock.now() - ctx.queuedAt);
      return;
    }
    const permit = ctx.permit;
    if (permit === null) return;
    ctx.permit = null;
    let outcome: Outcome;
    if (!res.writableFinished) {
      // The client left (or the response broke) before the end: stop the upstream request.
      ctx.abort(ABORTED);
      outcome = ctx.outcome ?? 'ignore';
    } else {
      outcome = ctx.outcome ?? (ctx.route.overloadStatuses.has(ctx.status) ? 'dropped' : 'success');
    }
    permit.settle(outcome, ctx.rttMs >= 0 ? ctx.rttMs : undefined);
    events.onSettled?.(ctx.route, ctx.lane, outcome);
  }

  app.addHook('onRequest', (request, reply, done) => {
    const raw: IncomingMessage = request.raw;
    const res = reply.raw;
    const phase = lifecycle.phase;
    if (phase !== 'serving') res.setHeader('connection', 'close');
    const path = pathOf(raw.url ?? '/');
    if (isAmbiguousPath(path)) {
      reply.hijack();
      writeError(res, 'bad_path', request.id);
      return;
    }
    const rt = opts.runtime();
    const route = rt.table.match(raw.method ?? 'GET', raw.headers.host, path);
    if (route === undefined) {
      reply.hijack();
      writeError(res, 'no_route', request.id);
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

    let rateRefusal: Refusal | null = null;
    if (rt.clientRate !== null) {
      const wait = rt.clientRate.take(clientKey, clock.now());
      if (wait > 0) {
        rateRefusal = refusal('client_rate', retryAfterSeconds(wait, rt.config.retryAfter, random));
        if (!route.shadow) {
          refuse(request, reply, ctx, rateRefusal);
          return;
        }
      }
    }

    if (route.shadow) {
      admitShadow(request, ctx, clientKey, rateRefusal);
      route.poolUse.active++;
      res.once('close', () => onClose(ctx, res));
      done();
      return;
    }

    const result = route.limiter.acquire(lane, clientKey, (later) => {
      ctx.ticket = null;
      if (later.kind === 'refused') {
        refuse(request, reply, ctx, later, clock.now() - ctx.queuedAt);
        return;
      }
      ctx.permit = later;
      events.onAdmitted?.(route, lane, later.queuedMs);
      done();
    });
    switch (result.kind) {
      case 'permit':
        ctx.permit = result;
        route.poolUse.active++;
        res.once('close', () => onClose(ctx, res));
        events.onAdmitted?.(route, lane, 0);
        done();
        return;
      case 'queued':
        ctx.ticket = result;
        ctx.queuedAt = clock.now();
        route.poolUse.active++;
        res.once('close', () => onClose(ctx, res));
        return;
      case 'refused':
        refuse(request, reply, ctx, result);
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
      ctx.dispatchedAt = clock.now();
      dispatcher.dispatching = { pool: ctx.route.pool, signal: ctx };
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
        headers['x-request-id'] = request.id;
        return headers;
      },
      rewriteHeaders: (headers, request) => {
        if (request !== undefined) headers['x-request-id'] = request.id;
        // Admitted before the drain began: still, do not keep the connection.
        if (lifecycle.phase !== 'serving') headers['connection'] = 'close';
        return headers;
      },
      onResponse: (request, reply, res) => {
        const ctx = request.sluice as RequestCtx;
        ctx.rttMs = clock.now() - ctx.dispatchedAt;
        ctx.status = res.statusCode;
        events.onUpstreamResponse?.(ctx.route, res.statusCode, ctx.rttMs);
        reply.send(res.stream);
      },
      onError: (reply, { error }) => {
        const request = reply.request;
        const ctx = request.sluice as RequestCtx;
        if (ctx.aborted) return; // the client left; nobody to answer
        if (lifecycle.phase === 'expired') {
          // The drain ran out of time and closed the pools under this request.
          ctx.outcome = 'ignore';
          request.log.warn({ route: ctx.route.cfg.name }, 'request cut: drain timeout');
          reply.hijack();
          writeRefusal(reply.raw as ServerResponse, drainRefusal(opts.runtime()), request.id);
          return;
        }
        const { code, outcome } = classifyUpstreamError(error);
        ctx.outcome = outcome;
        events.onUpstreamError?.(ctx.route, code);
        request.log.warn({ route: ctx.route.cfg.name, code, err: (error as Error).message }, 'upstream error');
        reply.hijack();
        writeError(reply.raw as ServerResponse, code, request.id);
      },
    },
  });
}

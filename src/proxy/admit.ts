/**
 * Admission on the raw request, before fastify builds anything
 * (../shared/DESIGN.md §1): method, path, route, lane, client key, drain,
 * deadline, then the route's gate decides.
 *
 *   never-proxied method → 405   ambiguous path → 400 bad_path
 *   no route → 404               closing listener → 503 draining
 *   malformed deadline → 400     gate.enter → Hold: forward now
 *                                           Queued: forward or refuse later
 *                                           Refusal: prebuilt 503/429
 *
 * Every answer Sluice writes here comes from prebuilt bytes (./responses.ts).
 * A request that holds or waits for something gets one 'close' listener on
 * its response, the single point where its state ends: a queued request
 * leaves its queue (the client left), an admitted one settles its hold
 * (./forward.ts settle). It fires exactly once per response, whether it
 * finished, the client left, or the upstream broke.
 *
 * Shadow routes: the gate admits everything; a would-be refusal is reported
 * (onShadowRefused, a sampled "would refuse" log line) instead of onAdmitted.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Clock, Random } from '../core/clock.js';
import type { Hold, Queued } from '../core/gate/gate.js';
import { refusal, type Refusal } from '../core/limiter/refusal.js';
import { retryAfterSeconds } from '../core/retry-after.js';
import { parseBudgetMs } from './deadline.js';
import type { ErrorCode } from './errors.js';
import type { ProxyEvents } from './events.js';
import { settle } from './forward.js';
import type { Lifecycle } from './lifecycle.js';
import { ANSWERED, Exchange, type FrontRequest, type RequestState } from './request-ctx.js';
import type { Answers } from './responses.js';
import { classify, isAmbiguousPath, pathOf } from './routes.js';
import type { RouteRuntime, Runtime } from './runtime.js';

/** The methods Sluice forwards; anything else (TRACE, WebDAV...) is answered 405. CONNECT never gets here. */
export const PROXIED_METHODS: readonly string[] = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];
const PROXIED = new Set(PROXIED_METHODS);

/** A log sampler: >= 0 (the lines suppressed since the last one written) when a line may be written, else -1. */
export interface LogSampler {
  admit(): number;
}

export interface AdmitDeps {
  /** The runtime in force; it may be swapped between requests (reload). */
  readonly runtime: () => Runtime;
  readonly lifecycle: Lifecycle;
  readonly clock: Clock;
  readonly random: Random;
  readonly events: ProxyEvents;
  readonly log: Logger;
  readonly refusalLog: LogSampler;
  readonly shadowLog: LogSampler;
  readonly answers: Answers;
  /** Hands an admitted request to fastify and @fastify/http-proxy (its Exchange attached). */
  readonly forward: (req: IncomingMessage, res: ServerResponse) => void;
}

/** The state of one request that holds or waits for something, and its single end. */
class Pending {
  state: RequestState;
  constructor(
    readonly route: RouteRuntime,
    readonly lane: number,
    queued: Queued,
  ) {
    this.state = { kind: 'queued', queued };
  }
}

export type Admit = (req: IncomingMessage, res: ServerResponse, requestId: string) => void;

export function createAdmit(deps: AdmitDeps): Admit {
  const { lifecycle, events, answers, log } = deps;
  const settleDeps = { events, log };
  const closing = () => lifecycle.phase !== 'serving';

  function clientError(res: ServerResponse, code: ErrorCode, requestId: string): void {
    events.onClientError?.(code);
    answers.error(res, code, requestId, closing());
  }

  function refuse(res: ServerResponse, route: RouteRuntime, lane: number, r: Refusal, requestId: string, queuedMs?: number): void {
    events.onRefused?.(route, lane, r, queuedMs);
    const suppressed = deps.refusalLog.admit();
    if (suppressed >= 0) {
      const { reason, status, retryAfterSeconds } = r;
      log.warn({ requestId, route: route.cfg.name, lane: route.laneNames[lane], reason, status, retryAfterSeconds, suppressed }, 'request refused');
    }
    answers.refusal(res, r, requestId, closing(), deps.runtime().rateLimitPolicy);
  }

  /** Admitted (now or after the queue): reported, and its Exchange attached to the request for the forward plugin. */
  function admitted(req: IncomingMessage, route: RouteRuntime, lane: number, hold: Hold, requestId: string): Exchange {
    const r = hold.wouldRefuse;
    if (r === null) events.onAdmitted?.(route, lane, hold.queuedMs);
    else {
      events.onShadowRefused?.(route, lane, r);
      const suppressed = deps.shadowLog.admit();
      if (suppressed >= 0) {
        log.info({ requestId, route: route.cfg.name, lane: route.laneNames[lane], reason: r.reason, status: r.status, shadow: true, suppressed }, 'would refuse');
      }
    }
    const ex = new Exchange(route, lane, requestId, hold);
    (req as FrontRequest).exchange = ex;
    return ex;
  }

  function onClose(p: Pending, res: ServerResponse): void {
    const s = p.state;
    p.state = ANSWERED;
    if (s.kind === 'queued') {
      // The client left while queued: it leaves the queue now and is never forwarded.
      const waited = s.queued.cancel();
      if (waited >= 0) events.onAbandoned?.(p.route, p.lane, waited);
    } else if (s.kind === 'admitted') {
      settle(s, res, settleDeps);
    }
  }

  /** The caller's budget from the route's deadline header: Infinity without one, NaN when malformed. */
  function budgetOf(route: RouteRuntime, req: IncomingMessage): number {
    const dl = route.cfg.deadline;
    const value = dl === undefined ? undefined : req.headers[dl.header];
    return value === undefined ? Infinity : parseBudgetMs(value, (dl as NonNullable<typeof dl>).format);
  }

  return function admit(req, res, requestId) {
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
    if (req.headers.host === undefined && req.httpVersionMinor === 1 && req.httpVersionMajor === 1) return clientError(res, 'bad_request', requestId);
    const method = req.method ?? 'GET';
    if (!PROXIED.has(method)) return clientError(res, 'method_not_allowed', requestId);
    const path = pathOf(req.url ?? '/');
    if (isAmbiguousPath(path)) return clientError(res, 'bad_path', requestId);
    const rt = deps.runtime();
    const route = rt.table.match(method, req.headers.host, path);
    if (route === undefined) return clientError(res, 'no_route', requestId);
    const clientKey = rt.clientKey(req.headers, req.socket.remoteAddress ?? '');
    const lane = classify(rt.config.classify, { method, path, headers: req.headers, clientKey });
    const phase = lifecycle.phase;
    if (phase === 'closing' || phase === 'expired') {
      // The instance is going away: another one can take the retry at once.
      return refuse(res, route, lane, refusal('draining', retryAfterSeconds(0, rt.config.retryAfter, deps.random)), requestId);
    }
    const budget = budgetOf(route, req);
    if (Number.isNaN(budget)) return clientError(res, 'bad_deadline', requestId);

    const entry = route.gate.enter(lane, clientKey, budget);
    if (entry.kind === 'refused') return refuse(res, route, lane, entry, requestId);
    if (entry.kind === 'hold') {
      const ex = admitted(req, route, lane, entry, requestId);
      res.once('close', () => settle(ex, res, settleDeps));
      deps.forward(req, res);
      return;
    }
    const p = new Pending(route, lane, entry);
    res.once('close', () => onClose(p, res));
    entry.wait((later, queuedMs) => {
      if (p.state.kind !== 'queued') return;
      if (later.kind === 'refused') {
        p.state = ANSWERED;
        refuse(res, route, lane, later, requestId, queuedMs);
      } else {
        p.state = admitted(req, route, lane, later, requestId);
        deps.forward(req, res);
      }
    });
  };
}

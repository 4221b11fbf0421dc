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
 * (./settle.ts). It fires exactly once per response, whether it
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
import { isGrpc } from '../protocols/grpc.js';
import { parseBudgetMs } from './deadline.js';
import { clientAddress, plainAddress } from './client-address.js';
import type { ErrorCode } from './errors.js';
import type { ProxyEvents } from './events.js';
import type { Lifecycle } from './lifecycle.js';
import { NEVER_PROXIED } from './methods.js';
import { ANSWERED, Exchange, type FrontFields, type FrontRequest, type RequestState } from './request-ctx.js';
import { headProblem } from './request-head.js';
import type { Answers } from './responses.js';
import { classify, isAmbiguousPath, pathOf } from './routes.js';
import type { RouteRuntime, Runtime } from './runtime.js';
import { settle, type SettleDeps } from './settle.js';

const NEVER = new Set(NEVER_PROXIED);

/** Set on a connection whose bytes can no longer be trusted to start a request (see admit). */
const DISTRUSTED = Symbol('sluice.distrusted');
type MarkedSocket = IncomingMessage['socket'] & { [DISTRUSTED]?: boolean };

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
  /** Last check before the gate (WebSocket upgrades: a socket slot of the route's maxOpen, ./websocket.ts): null, or the refusal. */
  readonly beforeGate?: (route: RouteRuntime, req: IncomingMessage, res: ServerResponse) => Refusal | null;
}

/** A queued request's state, and its single end. */
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

/** What admission learned of a request that matched a route. */
interface Matched {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly route: RouteRuntime;
  readonly lane: number;
  readonly requestId: string;
}

export class Admission {
  private readonly settleDeps: SettleDeps;

  constructor(private readonly deps: AdmitDeps) {
    this.settleDeps = { events: deps.events, log: deps.log };
  }

  /** Admission for one request: answered here, or forwarded (now or after its queue). */
  admit(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    const f = req as unknown as FrontFields;
    if (f.h2) {
      // Each HTTP/2 stream has its own framing: a bad head spoils nothing else on the connection.
      f.grpc = isGrpc(req.headers['content-type']);
    } else if ((req.socket as MarkedSocket)[DISTRUSTED] === true) {
      // A request pipelined behind a malformed head: its framing cannot be trusted, the
      // connection closes after the answer to the first; this one is never served.
      return;
    }
    const rt = this.deps.runtime();
    const bad = headProblem(req, rt.config.server.maxHeaderCount, rt.config.server.http2.maxHeaderListBytes);
    if (bad !== null) {
      if (!f.h2) (req.socket as MarkedSocket)[DISTRUSTED] = true;
      return this.clientError(res, bad, requestId, true);
    }
    const method = req.method ?? 'GET';
    if (NEVER.has(method)) return this.clientError(res, 'method_not_allowed', requestId);
    const path = pathOf(req.url ?? '/');
    if (isAmbiguousPath(path)) return this.clientError(res, 'bad_path', requestId);
    const route = rt.table.match(method, req.headers.host, path);
    if (route === undefined) return this.clientError(res, 'no_route', requestId);
    const clientKey = rt.clientKey(req.headers, identify(req as FrontRequest, route));
    const m: Matched = { req, res, route, lane: classify(rt.config.classify, { method, path, headers: req.headers, clientKey }), requestId };
    (req as FrontRequest).route = route;
    (req as FrontRequest).lane = m.lane;
    const phase = this.deps.lifecycle.phase;
    if (phase === 'closing' || phase === 'expired') {
      // The instance is going away: another one can take the retry at once.
      return this.refuse(m, refusal('draining', retryAfterSeconds(0, rt.config.retryAfter, this.deps.random)));
    }
    const budget = budgetOf(route, req);
    if (Number.isNaN(budget)) return this.clientError(res, 'bad_deadline', requestId);
    const before = this.deps.beforeGate?.(route, req, res) ?? null;
    if (before !== null) return this.refuse(m, before);
    const entry = route.gate.enter(m.lane, clientKey, budget);
    if (entry.kind === 'refused') this.refuse(m, entry);
    else if (entry.kind === 'hold') this.forward(m, entry);
    else this.wait(m, entry);
  }

  private forward(m: Matched, hold: Hold): void {
    const ex = this.admitted(m, hold);
    m.res.once('close', () => settle(ex, m.res, this.settleDeps));
    this.deps.forward(m.req, m.res);
  }

  private wait(m: Matched, queued: Queued): void {
    const p = new Pending(m.route, m.lane, queued);
    m.res.once('close', () => this.onClose(p, m.res));
    queued.wait((later, queuedMs) => {
      if (p.state.kind !== 'queued') return;
      if (later.kind === 'refused') {
        p.state = ANSWERED;
        this.refuse(m, later, queuedMs);
      } else {
        p.state = this.admitted(m, later);
        this.deps.forward(m.req, m.res);
      }
    });
  }

  /** The single end of a queued request's state: it leaves the queue (the client left), or its exchange settles. */
  private onClose(p: Pending, res: ServerResponse): void {
    const s = p.state;
    p.state = ANSWERED;
    if (s.kind === 'queued') {
      const waited = s.queued.cancel();
      if (waited >= 0) this.deps.events.onAbandoned?.(p.route, p.lane, waited);
    } else if (s.kind === 'admitted') {
      settle(s, res, this.settleDeps);
    }
  }

  /** Admitted (now or after the queue): reported, and its Exchange attached to the request for the forward plugin. */
  private admitted(m: Matched, hold: Hold): Exchange {
    const { route, lane, requestId } = m;
    const r = hold.wouldRefuse;
    if (r === null) this.deps.events.onAdmitted?.(route, lane, hold.queuedMs);
    else {
      this.deps.events.onShadowRefused?.(route, lane, r);
      const suppressed = this.deps.shadowLog.admit();
      if (suppressed >= 0) {
        this.deps.log.info({ requestId, route: route.cfg.name, lane: route.laneNames[lane], reason: r.reason, status: r.status, shadow: true, suppressed }, 'would refuse');
      }
    }
    const ex = new Exchange(route, lane, requestId, hold);
    const f = m.req as unknown as FrontFields;
    f.exchange = ex;
    ex.grpc = f.grpc;
    return ex;
  }

  private refuse(m: Matched, r: Refusal, queuedMs?: number): void {
    const { route, lane, requestId } = m;
    this.deps.events.onRefused?.(route, lane, r, queuedMs);
    const suppressed = this.deps.refusalLog.admit();
    if (suppressed >= 0) {
      const { reason, status, retryAfterSeconds } = r;
      this.deps.log.warn({ requestId, route: route.cfg.name, lane: route.laneNames[lane], reason, status, retryAfterSeconds, suppressed }, 'request refused');
    }
    const fr = m.req as FrontRequest;
    fr.answer = r.reason;
    if (queuedMs !== undefined) fr.queuedMs = queuedMs;
    this.deps.answers.refusal(m.res, r, requestId, this.closing(), this.deps.runtime().rateLimitPolicy);
  }

  /** `close`: the connection cannot be trusted past this request (a malformed head). */
  private clientError(res: ServerResponse, code: ErrorCode, requestId: string, close = false): void {
    this.deps.events.onClientError?.(code);
    (res.req as FrontRequest).answer = code;
    this.deps.answers.error(res, code, requestId, close || this.closing());
  }

  private closing(): boolean {
    return this.deps.lifecycle.phase !== 'serving';
  }
}

/** Who the client is, by the route's trusted proxies (./client-address.ts); kept on the request for headers and logs. */
function identify(req: FrontRequest, route: RouteRuntime): string {
  const peer = plainAddress(req.socket.remoteAddress ?? '');
  const trusted = route.headerPolicy.trusted;
  req.peer = peer;
  req.peerTrusted = !trusted.none && trusted.has(peer);
  req.clientIp = req.peerTrusted ? clientAddress(peer, true, req.headers['x-forwarded-for'], trusted) : peer;
  return req.clientIp;
}

/** The caller's budget from the route's deadline header: Infinity without one, NaN when malformed. */
function budgetOf(route: RouteRuntime, req: IncomingMessage): number {
  const dl = route.cfg.deadline;
  const value = dl === undefined ? undefined : req.headers[dl.header];
  return value === undefined ? Infinity : parseBudgetMs(value, (dl as NonNullable<typeof dl>).format);
}

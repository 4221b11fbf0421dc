/**
 * A request's state on the proxy port, one discriminated union:
 *
 *   queued ──▶ admitted ──▶ (settled at the response's close)
 *     │            ▲
 *     └──▶ answered ◀── (refused at once, or after its queue; an error answer)
 *
 *   queued    waiting in a lane queue: holds the gate's Queued (cancel it
 *             when the client leaves)
 *   admitted  an Exchange: the gate's Hold plus what forwarding learns
 *             (dispatch time, RTT, status, the upstream body, a fault);
 *             attached to the raw request (FrontRequest.exchange), where
 *             the forward plugin finds it without a lookup
 *   answered  Sluice wrote the answer itself; nothing is held
 *
 * The Exchange doubles as the upstream abort signal and as the dispatcher's
 * per-request options (./upstream.ts), so forwarding allocates nothing more.
 */
import { IncomingMessage } from 'node:http';
import { Http2ServerRequest } from 'node:http2';
import type { Readable } from 'node:stream';
import type { Pool } from 'undici';
import type { Timer } from '../core/clock.js';
import type { Hold, Queued } from '../core/gate/gate.js';
import type { Fault } from './faults.js';
import type { ClientSide } from './headers.js';
import type { RouteRuntime } from './runtime.js';
import { UpstreamSignal, type BodyPipe, type Dispatching } from './upstream.js';

/** What the front and admission learn of a request, on both request classes. */
export interface FrontFields extends ClientSide {
  exchange: Exchange | null;
  /** The client sent `Expect: 100-continue`: it gets `100 Continue` once admitted, never before. */
  expectsContinue: boolean;
  peer: string;
  peerTrusted: boolean;
  clientIp: string;
  /** An HTTP/2 stream (FrontH2Request). */
  readonly h2: boolean;
  /** A gRPC call (HTTP/2, content-type application/grpc...): Sluice's own answers are gRPC answers. */
  grpc: boolean;
  /** What admission matched (for the access log; an admitted request's Exchange has them too). */
  route: RouteRuntime | null;
  lane: number;
  /** The code of the answer Sluice wrote itself (a refusal reason or an error code); null otherwise. */
  answer: string | null;
  /** How long it waited in its lane's queue before a refusal. */
  queuedMs: number;
}

/**
 * The front's request class (http.createServer's IncomingMessage option):
 * what the front and admission learn of a request are fields every request
 * has from its construction, so all requests keep one shape (adding a
 * property later would make Node's own hot code see requests of several
 * shapes).
 */
export class FrontRequest extends IncomingMessage implements FrontFields {
  exchange: Exchange | null = null;
  expectsContinue = false;
  /** The socket's address in plain form (set by admission). */
  peer = '';
  peerTrusted = false;
  /** The client's address (./client-address.ts): the peer, or behind trusted proxies the first untrusted hop. */
  clientIp = '';
  /** The client's connection: 'https' on a TLS listener (FrontTlsRequest). */
  readonly proto: 'http' | 'https' = 'http';
  readonly h2 = false;
  grpc = false;
  /** What admission matched (for the access log; an admitted request's Exchange has them too). */
  route: RouteRuntime | null = null;
  lane = -1;
  /** The code of the answer Sluice wrote itself (a refusal reason or an error code); null otherwise. */
  answer: string | null = null;
  /** How long it waited in its lane's queue before a refusal. */
  queuedMs = 0;

  /** Host, after ./request-head.ts put an absolute-form target's authority there. */
  get authority(): string {
    return this.headers.host ?? '';
  }
}

/** The request class of a TLS listener's HTTP/1.1 connections. */
export class FrontTlsRequest extends FrontRequest {
  override readonly proto = 'https' as const;
}

/**
 * The same fields on an HTTP/2 stream's request (http2's
 * Http2ServerRequest option). `:authority` is the request's Host
 * (RFC 9113 §8.3.1): it is copied into `host` at construction (and a lone
 * `host` into `:authority`, which Node's `authority` reads), so routing,
 * classification and forwarding read one field whatever the protocol.
 * `proto` is the connection's (TLS or not), never the client's `:scheme`.
 */
export class FrontH2Request extends Http2ServerRequest implements FrontFields {
  exchange: Exchange | null = null;
  expectsContinue = false;
  peer = '';
  peerTrusted = false;
  clientIp = '';
  readonly proto: 'http' | 'https';
  readonly h2 = true;
  grpc = false;
  route: RouteRuntime | null = null;
  lane = -1;
  answer: string | null = null;
  queuedMs = 0;

  constructor(...args: ConstructorParameters<typeof Http2ServerRequest>) {
    super(...args);
    const h = this.headers;
    const authority = h[':authority'];
    if (authority !== undefined) h.host = authority;
    else if (h.host !== undefined) h[':authority'] = h.host;
    this.proto = this.stream.session?.encrypted === true ? 'https' : 'http';
  }
}

/** The exchange of a request the front admitted (fastify only ever sees those). */
export function exchangeOf(req: object): Exchange {
  return (req as FrontRequest).exchange as Exchange;
}

export interface Waiting {
  readonly kind: 'queued';
  readonly queued: Queued;
}

export interface Answered {
  readonly kind: 'answered';
}

export const ANSWERED: Answered = { kind: 'answered' };

/** An admitted request's one upstream exchange. */
export class Exchange extends UpstreamSignal implements Dispatching {
  readonly kind = 'admitted' as const;
  /** Per-request timeouts below the route's (the caller's budget); 0 = the route's own. */
  headersTimeout = 0;
  bodyTimeout = 0;
  /** Budget left when dispatched (ms), forwarded upstream in the deadline header; 0 = none. */
  budgetMs = 0;
  /** Fires when the budget runs out before the upstream's headers arrive. */
  deadlineTimer: Timer | null = null;
  dispatchedAt = 0;
  /** Dispatch to response headers (ms); -1 until they arrive. */
  rttMs = -1;
  /** The upstream's status; 0 until its headers arrive. */
  status = 0;
  /** The upstream response body while it streams, to tell an upstream failure from a client abort. */
  body: Readable | null = null;
  /** What went wrong, once known; settlement reads outcome and breaker result from it. */
  fault: Fault | null = null;
  /** The client sent `TE: trailers`: the upstream's trailers (undici fills them at the body's end) go to it. */
  wantsTrailers = false;
  /** The client's body when it has one: streamed to the upstream as it arrives, never parsed or buffered. */
  requestBody: BodyPipe | null = null;
  upstreamTrailers: Record<string, string | string[] | undefined> | null = null;
  /** A gRPC call (./grpc-sample.ts): when its request ended (-1: not yet), and a trailers-only status. */
  grpc = false;
  requestEndedAt = -1;
  grpcStatus: string | string[] | undefined = undefined;

  constructor(
    readonly route: RouteRuntime,
    readonly lane: number,
    readonly requestId: string,
    readonly hold: Hold,
  ) {
    super();
  }

  get pool(): Pool {
    return this.route.pool;
  }

  get signal(): UpstreamSignal {
    return this;
  }

  clearDeadlineTimer(): void {
    if (this.deadlineTimer !== null) {
      this.deadlineTimer.cancel();
      this.deadlineTimer = null;
    }
  }
}

export type RequestState = Waiting | Exchange | Answered;

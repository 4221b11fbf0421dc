/**
 * Upstream connection pools, one undici Pool per route, so each route gets
 * its own connect/headers/body timeouts and a removed route's connections can
 * be drained on their own.
 *
 * reply-from accepts any object with `request(opts, cb)` as its undici
 * instance. It calls that method synchronously from inside `reply.from()`,
 * so the proxy handler names the request's context in `dispatching` just
 * around that call; this dispatcher reads it to choose the route's pool, to
 * attach the context as the abort signal (a client that leaves aborts its
 * upstream request) and to shorten the timeouts to the caller's deadline.
 */
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { Client, Pool, type Dispatcher } from 'undici';
import type { RouteConfig } from '../config/types.js';

/**
 * The minimal EventEmitter-shaped abort signal undici accepts. One per
 * request (it is the request context's base class): cheaper than an
 * AbortController and its EventTarget.
 */
export class UpstreamSignal {
  aborted = false;
  reason: Error | undefined = undefined;
  private listener: (() => void) | null = null;

  on(_event: 'abort', listener: () => void): this {
    this.listener = listener;
    return this;
  }
  once(event: 'abort', listener: () => void): this {
    return this.on(event, listener);
  }
  addListener(event: 'abort', listener: () => void): this {
    return this.on(event, listener);
  }
  removeListener(_event: 'abort', listener: () => void): this {
    if (this.listener === listener) this.listener = null;
    return this;
  }
  abort(reason: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const l = this.listener;
    this.listener = null;
    l?.();
  }
}

/**
 * The client's body on its way to undici, counted (the access log's bytesIn).
 * undici destroys the body it was given when the upstream ends the exchange
 * before the upload does (a 401 or 413 to an upload in progress); the
 * client's request, piped in, survives that and still gets the answer.
 */
export class BodyPipe extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    done(null, chunk);
  }
}

export interface Dispatching {
  readonly pool: Pool;
  readonly signal: UpstreamSignal;
  /**
   * Per-request timeouts in ms, used when below the pool's (a caller's
   * remaining deadline budget); 0 = the route's own.
   */
  readonly headersTimeout: number;
  readonly bodyTimeout: number;
  /** Keep the upstream's trailers (the client takes them): undici hands them over with the response. */
  readonly wantsTrailers: boolean;
  /** The client's request stream when it has a body (fastify never reads bodies: every method is bodyless to it). */
  readonly requestBody: Readable | null;
  upstreamTrailers: Record<string, string | string[] | undefined> | null;
}

/** Streams per HTTP/2 upstream connection before the pool opens another (the peer's SETTINGS may lower it). */
const H2_STREAMS_PER_CONNECTION = 100;

type Trailers = readonly (string | Buffer | string[])[] | Record<string, string | string[] | undefined>;

/** Node's HTTP/2 trailers object as the flat [name, value, ...] list undici's HTTP/1.1 side hands over. */
function flatTrailers(t: Trailers): readonly (string | Buffer | string[])[] {
  if (Array.isArray(t)) return t as readonly (string | Buffer | string[])[];
  const flat: string[] = [];
  for (const [name, value] of Object.entries(t)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) flat.push(name, String(v));
  }
  return flat;
}

/**
 * undici's HTTP/2 client (7.x, client-h2.js) hands the response trailers to
 * `onComplete` as Node's headers object, where its request API expects the
 * flat list: every trailer is silently lost (gRPC's grpc-status with it).
 * This client flattens them on the way; nothing else differs, and only
 * `http2: true` routes use it.
 */
class H2Client extends Client {
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const h = handler as { onComplete?: (t: Trailers) => void };
    const complete = h.onComplete;
    if (complete !== undefined) h.onComplete = function (this: unknown, t: Trailers) {
      complete.call(this, flatTrailers(t));
    };
    return super.dispatch(opts, handler);
  }
}

/**
 * A route's pool. With `http2: true` the upstream is spoken to in HTTP/2
 * by undici's own client (allowH2; measured against node:http2 in
 * bench/h2-upstream.ts): https:// by ALPN (h2 offered, http/1.1 accepted),
 * http:// by prior knowledge (h2c); up to H2_STREAMS_PER_CONNECTION
 * requests share a connection. Request trailers are not sent on HTTP/2
 * (undici does not yet); response trailers are (H2Client).
 */
export function createPool(route: RouteConfig): Pool {
  const h2 = route.http2;
  return new Pool(route.upstream, {
    connect: { timeout: route.timeouts.connectMs, ...(h2 && route.upstream.startsWith('http:') && { useH2c: true }) },
    headersTimeout: route.timeouts.headersMs,
    bodyTimeout: route.timeouts.bodyMs,
    // Concurrency is bounded by the route's limiter, not by the pool.
    connections: null,
    pipelining: h2 ? H2_STREAMS_PER_CONNECTION : 1,
    keepAliveTimeout: 4_000,
    ...(h2 && { allowH2: true, maxConcurrentStreams: H2_STREAMS_PER_CONNECTION, factory: (origin: string | URL, o: object) => new H2Client(origin, o) }),
  });
}

export class RouteDispatcher {
  dispatching: Dispatching | null = null;

  request(opts: Dispatcher.RequestOptions, cb: (err: Error | null, data?: Dispatcher.ResponseData) => void): void {
    const d = this.dispatching;
    if (d === null) {
      cb(new Error('sluice: upstream request outside a route context'));
      return;
    }
    opts.signal = d.signal as unknown as Dispatcher.RequestOptions['signal'];
    if (d.requestBody !== null) opts.body = d.requestBody;
    if (d.headersTimeout > 0) opts.headersTimeout = d.headersTimeout;
    if (d.bodyTimeout > 0) opts.bodyTimeout = d.bodyTimeout;
    if (!d.wantsTrailers) {
      d.pool.request(opts, cb);
      return;
    }
    // reply-from passes only status, headers and body on; the trailers object (filled
    // when the body ends) is kept here. Only clients that take trailers pay for the closure.
    d.pool.request(opts, (err, data) => {
      if (data !== undefined) d.upstreamTrailers = data.trailers;
      cb(err, data);
    });
  }
}

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
import { Pool, type Dispatcher } from 'undici';
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

export function createPool(route: RouteConfig): Pool {
  return new Pool(route.upstream, {
    connect: { timeout: route.timeouts.connectMs },
    headersTimeout: route.timeouts.headersMs,
    bodyTimeout: route.timeouts.bodyMs,
    // Concurrency is bounded by the route's limiter, not by the pool.
    connections: null,
    pipelining: 1,
    keepAliveTimeout: 4_000,
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

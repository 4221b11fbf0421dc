/**
 * HTTP/2 from clients: the session server behind the proxy listener. It
 * never listens itself: the listener hands it the connections that speak
 * h2 (ALPN over TLS, the preface in plaintext: ./sniff.ts) with
 * `accept(socket)`. Every stream becomes a request through Node's
 * compatibility API (Http2ServerRequest/Response, which fastify and
 * reply-from take as they take HTTP/1.1's), with its own admission: a
 * refused stream is answered and the connection lives on.
 *
 * Bounds (`server.http2`), sent in the server's SETTINGS:
 *   maxConcurrentStreams   streams open at once per connection; a client
 *                          that opens more gets them refused (RST_STREAM
 *                          REFUSED_STREAM, by nghttp2)
 *   maxHeaderListBytes     a request's decoded header list
 *   header fields          server.maxHeaderCount (+ the pseudo-headers),
 *                          past which admission answers 431 as for HTTP/1.1
 *
 * Rapid reset (CVE-2023-44487). A client that opens streams and cancels
 * them at once makes the server start work (admission, an upstream
 * request) that nobody waits for, as fast as it can send frames, without
 * ever exceeding the concurrent-stream bound. Each connection keeps an
 * excess count: +1 for every stream reset before its response began (the
 * client cancelled it), -1 (down to 0) for every other stream that ends. A connection whose excess passes
 * `maxExcessResets` is sent GOAWAY ENHANCE_YOUR_CALM and destroyed;
 * `rapidResetCloses` counts them. Permits cannot leak: a reset stream's
 * response emits 'close', the single place its request settles or leaves
 * its queue (proxy/admit.ts). Other connections are not starved: the work
 * one connection can cause before it is closed is bounded by the excess
 * allowance, not by the client's sending rate. (nghttp2 has its own,
 * looser limit on RST_STREAM rate; this one is tied to completions.)
 *
 * Idle sessions: a session with no frames for server.keepAliveTimeoutMs
 * is closed gracefully (GOAWAY; open streams finish).
 */
import http2, {
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Http2ServerConfig } from '../config/types.js';

const { NGHTTP2_NO_ERROR, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

type Listener = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

export interface H2ServerOptions {
  readonly config: Http2ServerConfig;
  /** Header fields a request may have (server.maxHeaderCount); Node refuses past its own pair limit. */
  readonly maxHeaderCount: number;
  readonly idleTimeoutMs: number;
  /** The request classes (subclasses of Node's, carrying the front's fields). */
  readonly Request: typeof http2.Http2ServerRequest;
  readonly onRequest: Listener;
  /** A stream that sent `expect: 100-continue`. */
  readonly onCheckContinue: Listener;
}

/** What /admin/state and /metrics show of HTTP/2 clients. */
export interface H2Stats {
  readonly sessions: number;
  readonly sessionsTotal: number;
  readonly streamsTotal: number;
  /** Streams the client reset before they completed. */
  readonly streamsResetTotal: number;
  /** Connections closed because they reset streams faster than they completed them. */
  readonly rapidResetCloses: number;
}

/** A session's rapid-reset bookkeeping. */
interface Guard {
  excess: number;
  closed: boolean;
}

const GUARD = Symbol('sluice.h2guard');
type GuardedSession = ServerHttp2Session & { [GUARD]?: Guard };

function settingsOf(c: Http2ServerConfig): http2.Settings {
  return { maxConcurrentStreams: c.maxConcurrentStreams, maxHeaderListSize: c.maxHeaderListBytes, enablePush: false };
}

export class H2Sessions {
  private readonly server: http2.Http2Server;
  private readonly sessions = new Set<ServerHttp2Session>();
  private maxExcess: number;
  private sessionsTotal = 0;
  private streamsTotal = 0;
  private streamsReset = 0;
  private rapidResetCloses = 0;

  constructor(opts: H2ServerOptions) {
    this.maxExcess = opts.config.maxExcessResets;
    this.server = http2.createServer(
      {
        settings: settingsOf(opts.config),
        // Node's own pair limit (128 by default) would refuse a stream before admission could
        // answer 431; above ours by the pseudo-headers and one more, so ours decides.
        maxHeaderListPairs: opts.maxHeaderCount + 6,
        Http2ServerRequest: opts.Request,
      },
      opts.onRequest,
    );
    this.server.on('checkContinue', opts.onCheckContinue);
    this.server.on('session', (s: ServerHttp2Session) => this.track(s, opts.idleTimeoutMs));
    this.server.on('stream', (stream: ServerHttp2Stream) => this.watch(stream));
  }

  /** A connection that speaks h2 (its first bytes may already be buffered on it). */
  accept(socket: Socket | TLSSocket): void {
    this.server.emit('connection', socket);
  }

  /** server.http2 on reload: new SETTINGS for every open session and the next ones. */
  reconfigure(c: Http2ServerConfig): void {
    this.maxExcess = c.maxExcessResets;
    const settings = settingsOf(c);
    this.server.updateSettings(settings);
    for (const s of this.sessions) if (!s.destroyed && !s.closed) s.settings(settings);
  }

  /** GOAWAY to every session: no new streams; open ones finish, then the connection closes. */
  closeIdle(): void {
    for (const s of this.sessions) if (!s.closed && !s.destroyed) s.close();
  }

  /** Destroys every session at once (streams still open are reset). */
  closeAll(): void {
    for (const s of this.sessions) s.destroy();
  }

  stats(): H2Stats {
    return {
      sessions: this.sessions.size,
      sessionsTotal: this.sessionsTotal,
      streamsTotal: this.streamsTotal,
      streamsResetTotal: this.streamsReset,
      rapidResetCloses: this.rapidResetCloses,
    };
  }

  private track(s: GuardedSession, idleTimeoutMs: number): void {
    s[GUARD] = { excess: 0, closed: false };
    this.sessions.add(s);
    this.sessionsTotal++;
    s.once('close', () => this.sessions.delete(s));
    // A misbehaving peer's protocol error is the session's end, never the process's.
    s.on('error', () => undefined);
    s.setTimeout(idleTimeoutMs, () => s.close());
  }

  /** Every stream: counted, and its end judged for the rapid-reset rule. */
  private watch(stream: ServerHttp2Stream): void {
    this.streamsTotal++;
    stream.on('error', () => undefined);
    // Node detaches a stream from its session before 'close': the session is taken now.
    const s = stream.session as GuardedSession | undefined;
    stream.once('close', () => {
      const g = s?.[GUARD];
      if (g === undefined || g.closed) return;
      // A reset after the response began (an upstream cut mid-body) is not the client's doing.
      if (stream.rstCode === NGHTTP2_NO_ERROR || stream.headersSent) {
        if (g.excess > 0) g.excess--;
        return;
      }
      this.streamsReset++;
      if (++g.excess <= this.maxExcess) return;
      g.closed = true;
      this.rapidResetCloses++;
      (s as GuardedSession).goaway(NGHTTP2_ENHANCE_YOUR_CALM);
      (s as GuardedSession).destroy();
    });
  }
}

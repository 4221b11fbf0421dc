/**
 * WebSocket upgrades on the proxy listener (its 'upgrade' event), for
 * routes with `websocket: { maxOpen, idleTimeoutMs }`.
 *
 *   GET + Upgrade: websocket on a websocket route
 *     admission, as for any request (./admit.ts), on a ServerResponse of
 *     its own on the raw socket: refusals (503/429 + Retry-After, the JSON
 *     contract) and errors are written before any 101; just before the
 *     gate a socket slot is reserved (core/limiter/open-sockets.ts): at
 *     maxOpen, 503 websocket_limit
 *     admitted → the upstream handshake (./ws-handshake.ts)
 *       101            the request's permit is settled at once: limit
 *                      outcome ignore (no RTT sample), breaker success (a
 *                      101 is an answer, never a failure); the 101 head goes
 *                      to the client, the slot opens, the bytes flow
 *                      (./ws-relay.ts) outside admission
 *       other status   relayed as an ordinary response, then the
 *                      connection closes; the permit is settled ignore /
 *                      success when the answer is through
 *       fault          the fault table, answered 502/504 (./settle.ts
 *                      settles it at the response's close)
 *   any other upgrade (h2c, a WebSocket on a route without websocket:, no
 *   route)
 *     an ordinary request again (./upgrade-replay.ts): what it was before
 *     the listener took upgrades
 *
 * Open WebSockets hold no request permit; they are bounded per route by
 * maxOpen (per process), closed when idle, closed with 1001 when the
 * instance drains (closeAll). Their counts are kept by route name, so a
 * reload that keeps the route keeps them.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { RouteConfig } from '../config/types.js';
import { OpenSockets, type OpenSocketsSnapshot, type Slot, type SocketCloseReason } from '../core/limiter/open-sockets.js';
import type { Refusal } from '../core/limiter/refusal.js';
import { Admission, type AdmitDeps } from './admit.js';
import { upstreamFault } from './faults.js';
import { responseHeaders } from './headers.js';
import { exchangeOf, type Exchange, type FrontRequest } from './request-ctx.js';
import { pathOf } from './routes.js';
import type { RouteRuntime } from './runtime.js';
import { report } from './settle.js';
import { GOING_AWAY } from './ws-frames.js';
import { handshake, switchingHead } from './ws-handshake.js';
import { WsRelay } from './ws-relay.js';
import { replayAsRequest, whenIdle } from './upgrade-replay.js';

/** One route's WebSockets as /admin/state and /metrics show them. */
export interface WebSocketState extends OpenSocketsSnapshot {
  readonly idleTimeoutMs: number;
}

type UpgradeDeps = Omit<AdmitDeps, 'forward' | 'beforeGate'>;

/** What an admitted upgrade carries from the listener to its handshake. */
interface Pending {
  readonly slot: Slot;
  /** Bytes the client sent after its head. */
  readonly head: Buffer;
  /** The access log watches the response's 'close': an open WebSocket's record is written when it closes. */
  readonly logged: boolean;
}

/** The access log's watch on a request (./access.ts), when it is sampled; returns whether it watches. */
export type AccessWatch = (req: FrontRequest, res: ServerResponse, requestId: string) => boolean;

/** Before reserve(): the listener saw a WebSocket upgrade for a websocket route. */
const NO_SLOT: Slot = { open: () => false, close: () => undefined, release: () => undefined };

function emptySnapshot(maxOpen: number): OpenSocketsSnapshot {
  return { open: 0, reserved: 0, maxOpen, opened: 0, refused: 0, released: 0, closed: { client: 0, upstream: 0, idle: 0, drain: 0, error: 0 } };
}

function wantsWebSocket(req: IncomingMessage): boolean {
  const u = req.headers.upgrade;
  if (req.method !== 'GET' || u === undefined) return false;
  for (const token of u.toLowerCase().split(',')) if (token.trim() === 'websocket') return true;
  return false;
}

/** The open socket's end: its slot closes, the registry forgets it. Kept apart so the closure holds only these. */
function onEnd(slot: Slot, relays: Set<WsRelay>, relay: { current: WsRelay | null }, logged: ServerResponse | null): (why: SocketCloseReason) => void {
  return (why) => {
    slot.close(why);
    if (relay.current !== null) relays.delete(relay.current);
    // The access log's record of this WebSocket (status 101, its lifetime, the bytes written to the client).
    logged?.emit('close');
  };
}

export class WebSockets {
  private readonly routes = new Map<string, OpenSockets>();
  private readonly relays = new Set<WsRelay>();
  private readonly pending = new WeakMap<IncomingMessage, Pending>();
  private deps: UpgradeDeps | null = null;

  /** Takes the server's upgrades; `requestId` names each request as the front does. */
  attach(server: http.Server, deps: UpgradeDeps, requestId: (req: IncomingMessage) => string, access: AccessWatch = () => false): void {
    this.deps = deps;
    const admission = new Admission({
      ...deps,
      forward: (req, res) => this.forward(req as FrontRequest, res),
      beforeGate: (route, req, res) => this.reserve(route, req, res),
    });
    server.on('upgrade', (req: FrontRequest, socket: Duplex, head: Buffer) => {
      socket.on('error', () => undefined);
      whenIdle(socket, () => {
        if (socket.destroyed) return;
        if (!this.isWebSocketRoute(req, deps)) return replayAsRequest(server, req, socket, head);
        const res = new http.ServerResponse(req);
        res.shouldKeepAlive = false;
        res.assignSocket(socket as Socket);
        // The connection is no HTTP connection any more: it ends after whatever answer is written.
        res.once('finish', () => socket.end());
        const id = requestId(req);
        this.pending.set(req, { slot: NO_SLOT, head, logged: access(req, res, id) });
        admission.admit(req, res, id);
      });
    });
  }

  /** Closes every open WebSocket with 1001 (`why`: drain); returns how many. */
  closeAll(why: SocketCloseReason = 'drain'): number {
    const n = this.relays.size;
    for (const relay of this.relays) relay.close(GOING_AWAY, 'server shutting down', why);
    return n;
  }

  /** Open WebSockets, all routes. */
  get openCount(): number {
    return this.relays.size;
  }

  /** A route's WebSockets; null for a route without websocket: that never had one open. */
  view(cfg: RouteConfig): WebSocketState | null {
    const ws = cfg.websocket;
    const os = this.routes.get(cfg.name);
    if (ws === undefined && (os === undefined || os.open === 0)) return null;
    return { ...(os?.snapshot() ?? emptySnapshot(ws?.maxOpen ?? 0)), idleTimeoutMs: ws?.idleTimeoutMs ?? 0 };
  }

  private isWebSocketRoute(req: IncomingMessage, deps: UpgradeDeps): boolean {
    if (!wantsWebSocket(req)) return false;
    const route = deps.runtime().table.match('GET', req.headers.host, pathOf(req.url ?? '/'));
    return route?.cfg.websocket !== undefined;
  }

  private of(cfg: RouteConfig, maxOpen: number): OpenSockets {
    let os = this.routes.get(cfg.name);
    const d = this.deps as UpgradeDeps;
    if (os === undefined) this.routes.set(cfg.name, (os = new OpenSockets(maxOpen, d.clock, d.random)));
    os.maxOpen = maxOpen;
    return os;
  }

  /** Admission's last step before the gate: a socket slot of the route's maxOpen, or the refusal. */
  private reserve(route: RouteRuntime, req: IncomingMessage, res: ServerResponse): Refusal | null {
    const ws = route.cfg.websocket;
    const p = this.pending.get(req);
    if (ws === undefined || p === undefined) return null;
    const slot = this.of(route.cfg, ws.maxOpen).reserve((this.deps as UpgradeDeps).runtime().config.retryAfter);
    if ('kind' in slot) return slot;
    this.pending.set(req, { ...p, slot });
    // Whatever ends the request before its socket opens gives the slot back (no-op once open):
    // an answer of Sluice's or the upstream's written in full, or the client gone.
    const release = () => slot.release();
    res.once('finish', release);
    res.once('close', release);
    return null;
  }

  /** An admitted upgrade: the upstream handshake. */
  private forward(req: FrontRequest, res: ServerResponse): void {
    const ex = exchangeOf(req);
    const p = this.pending.get(req);
    const cfg = ex.route.cfg;
    if (p === undefined || p.slot === NO_SLOT || cfg.websocket === undefined) {
      // Admission matched another route than the listener did (an absolute-form target naming
      // another host): nothing reserved a socket, the upgrade cannot be proxied.
      const d = this.deps as UpgradeDeps;
      d.events.onClientError?.('bad_request');
      return d.answers.error(res, 'bad_request', ex.requestId, true);
    }
    const t = { upstream: cfg.upstream, preserveHost: cfg.preserveHost, policy: ex.route.headerPolicy, timeouts: cfg.timeouts, requestId: ex.requestId };
    const cancel = handshake(req, t, {
      onSwitch: (upRes, upSocket, upHead) => {
        ex.removeListener('abort', cancel);
        this.open(ex, res, p, switchingHead(upRes, t.policy, ex.requestId), upSocket, upHead);
      },
      onAnswer: (upRes) => this.answer(ex, res, upRes),
      onFault: (err) => {
        const d = this.deps as UpgradeDeps;
        report(d, ex, upstreamFault(err), err);
        d.answers.error(res, ex.fault?.code ?? 'upstream_reset', ex.requestId, true);
      },
    });
    ex.on('abort', cancel);
    ex.dispatchedAt = (this.deps as UpgradeDeps).clock.now();
  }

  /** The upstream answered something else than 101: relayed as it is; the permit settles when it is through. */
  private answer(ex: Exchange, res: ServerResponse, upRes: IncomingMessage): void {
    const d = this.deps as UpgradeDeps;
    ex.status = upRes.statusCode ?? 502;
    ex.body = upRes;
    d.events.onUpstreamResponse?.(ex.route, ex.lane, ex.status, d.clock.now() - ex.dispatchedAt);
    const headers = responseHeaders({ ...upRes.headers, 'x-request-id': ex.requestId }, ex.route.headerPolicy, false);
    res.writeHead(ex.status, headers as OutgoingHttpHeaders);
    upRes.once('end', () => {
      // A handshake answer says nothing about the route's request latency: no RTT sample.
      if (ex.hold.settle('ignore', 'success')) d.events.onSettled?.(ex.route, ex.lane, 'ignore');
    });
    upRes.pipe(res);
  }

  /** 101: the permit goes, the slot opens, the bytes flow. */
  private open(ex: Exchange, res: ServerResponse, p: Pending, head101: string, upSocket: Socket, upHead: Buffer): void {
    const d = this.deps as UpgradeDeps;
    const { route, lane } = ex;
    d.events.onUpstreamResponse?.(route, lane, 101, d.clock.now() - ex.dispatchedAt);
    // An open WebSocket holds no request permit and is no RTT sample; a 101 is the upstream answering.
    if (ex.hold.settle('ignore', 'success')) d.events.onSettled?.(route, lane, 'ignore');
    const client = res.socket as Socket | null;
    if (client === null || client.destroyed || !p.slot.open()) {
      upSocket.destroy();
      return;
    }
    res.detachSocket(client);
    res.statusCode = 101;
    this.pending.delete(res.req);
    client.write(head101);
    const holder: { current: WsRelay | null } = { current: null };
    const idleTimeoutMs = (route.cfg.websocket as NonNullable<RouteConfig['websocket']>).idleTimeoutMs;
    const end = onEnd(p.slot, this.relays, holder, p.logged ? res : null);
    holder.current = new WsRelay(client, upSocket, { idleTimeoutMs, clientHead: p.head, upstreamHead: upHead, onEnd: end });
    this.relays.add(holder.current);
    // Opened while the instance drains (its handshake began before): it goes at once.
    if (d.lifecycle.phase === 'closing' || d.lifecycle.phase === 'expired') holder.current.close(GOING_AWAY, 'server shutting down', 'drain');
  }
}

/**
 * The access log's facts (log.access): one record per request, handed to
 * observability as ProxyEvents.onAccess when the response closes (finished,
 * cut, or the client left), which writes it as one JSON line.
 *
 * Cost: nothing for a request that is not logged. Whether one is is decided
 * when it arrives (log.access.enabled, then log.access.sample against the
 * injected random); only then does it get a 'close' listener and a record.
 * What the record reads was set on the way at no extra cost: the route and
 * lane and the code of Sluice's own answer on the FrontRequest (admission),
 * the rest on the Exchange (forwarding).
 *
 *   requestId, route, lane, method, path   as admitted (path without query)
 *   status                                 what the client got (res.statusCode)
 *   reason                                 the code of Sluice's own answer (a
 *                                          refusal reason, an error code, an
 *                                          upstream fault), null when the
 *                                          upstream's answer went through
 *   clientIp                               ./client-address.ts
 *   queueMs, upstreamMs, durationMs        queue wait; dispatch to response
 *                                          headers (null: no upstream answer);
 *                                          arrival to close
 *   bytesIn                                the request head as sent (line and
 *                                          fields) plus the body bytes read and
 *                                          forwarded
 *   bytesOut                               bytes written to the client's
 *                                          connection for this response
 * A WebSocket (./websocket.ts) that opened has its record written when it
 * closes: status 101, durationMs its lifetime, bytesOut everything written
 * to the client (bytesIn stays the upgrade's head).
 * Requests Node's parser refused, and CONNECT, have no request object: their
 * record (method and path null) is made by ./front.ts from the socket.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Clock, Random } from '../core/clock.js';
import { clientAddress, plainAddress } from './client-address.js';
import type { ErrorCode } from './errors.js';
import { errorStatus } from './errors.js';
import type { AccessRecord, ProxyEvents } from './events.js';
import type { FrontRequest } from './request-ctx.js';
import { pathOf } from './routes.js';
import type { Runtime } from './runtime.js';


export interface AccessDeps {
  readonly runtime: () => Runtime;
  readonly clock: Clock;
  readonly random: Random;
  readonly events: ProxyEvents;
}

const round1 = (ms: number) => Math.round(ms * 10) / 10;

/** Whether this request is to be logged (log.access.enabled, then sampled). */
export function sampled(deps: AccessDeps): boolean {
  const a = deps.runtime().config.log.access;
  return a.enabled && deps.events.onAccess !== undefined && (a.sample >= 1 || deps.random() < a.sample);
}

/** The request line and header section as the client sent them (`Name: value` lines). */
function headBytes(req: FrontRequest, url: string): number {
  let n = (req.method?.length ?? 0) + url.length + 12; // "M U HTTP/1.1\r\n"
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) n += (raw[i] as string).length + (raw[i + 1] as string).length + 4;
  return n + 2;
}

function clientIpOf(req: FrontRequest, rt: Runtime): string {
  if (req.clientIp !== '') return req.clientIp;
  // No route matched: the top-level forwarding's trusted proxies decide.
  const peer = plainAddress(req.socket?.remoteAddress ?? '');
  return rt.trusted.has(peer) ? clientAddress(peer, true, req.headers['x-forwarded-for'], rt.trusted) : peer;
}

/** Logs `req` when its response closes. `requestId`: the id the front gave it. */
export function watchAccess(req: FrontRequest, res: ServerResponse, requestId: string, deps: AccessDeps): void {
  const startedAt = deps.clock.now();
  const socket = req.socket;
  const writtenBefore = socket.bytesWritten;
  const url = req.url ?? '/';
  const bytesHead = headBytes(req, url);
  res.once('close', () => {
    const ex = req.exchange;
    const route = ex?.route ?? req.route;
    const lane = ex?.lane ?? req.lane;
    deps.events.onAccess?.({
      requestId,
      route: route?.cfg.name ?? null,
      lane: route === null || lane < 0 ? null : (route.laneNames[lane] ?? null),
      method: req.method ?? null,
      path: pathOf(req.url ?? url),
      status: res.statusCode,
      reason: req.answer ?? ex?.fault?.code ?? null,
      clientIp: clientIpOf(req, deps.runtime()),
      queueMs: round1(ex === null ? req.queuedMs : ex.hold.queuedMs),
      upstreamMs: ex !== null && ex.rttMs >= 0 ? round1(ex.rttMs) : null,
      durationMs: round1(deps.clock.now() - startedAt),
      bytesIn: bytesHead + (ex?.requestBody?.bytes ?? 0),
      bytesOut: socket.bytesWritten - writtenBefore,
    });
  });
}

/** The record of an answer written on a bare socket (a head Node's parser refused, CONNECT). */
export function socketAccess(socket: Socket, code: ErrorCode, requestId: string, bytesOut: number): AccessRecord {
  return {
    requestId,
    route: null,
    lane: null,
    method: null,
    path: null,
    status: errorStatus(code),
    reason: code,
    clientIp: plainAddress(socket.remoteAddress ?? ''),
    queueMs: 0,
    upstreamMs: null,
    durationMs: 0,
    bytesIn: socket.bytesRead,
    bytesOut,
  };
}

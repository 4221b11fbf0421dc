/**
 * Body idle timeout (server.bodyIdleTimeoutMs): an admitted request whose
 * body goes silent that long holds a slot of the route's limit for nothing.
 * It is answered 408 request_timeout (or, once the response has begun, cut),
 * its upstream request aborted, and its slot released at once; the
 * connection closes (the body's framing is unfinished). It is the client's
 * fault: counted in sluice_client_errors_total{code="request_timeout"},
 * never against the upstream (limit, breaker).
 *
 * Silence is the client socket's own idle timer (socket.setTimeout: any
 * byte in either direction restarts it; Node emits its 'timeout' on the
 * request while the request is incomplete); on HTTP/2 the stream's (the
 * connection carries other streams). Armed when the request is
 * forwarded, disarmed when its body ends. If Sluice itself holds unread
 * body bytes (the upstream reads slower than the client sends), the
 * silence is ours, not the client's: the timer is re-armed.
 *
 * Queued requests are not watched: their bodies are not read yet, and
 * their wait is bounded by the lane's maxWaitMs. A body that trickles
 * (a byte now and then) is not silent: requestTimeoutMs bounds it.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { BODY_IDLE_FAULT } from './faults.js';
import type { ProxyEvents } from './events.js';
import { report } from './settle.js';
import type { FrontFields, FrontRequest } from './request-ctx.js';
import type { Answers } from './responses.js';

const BODY_IDLE = new Error('the request body was silent for server.bodyIdleTimeoutMs');

export interface BodyIdleDeps {
  readonly events: ProxyEvents;
  readonly log: Logger;
  readonly answers: Answers;
}

/** What carries the idle timer: the connection, or on HTTP/2 the request's own stream. */
type Timed = { setTimeout(ms: number): unknown; destroy(): unknown; on(e: 'timeout', l: () => void): unknown; off(e: 'timeout', l: () => void): unknown };

function timedOf(req: FrontRequest): Timed {
  return (req as unknown as FrontFields).h2 ? (req as unknown as { stream: Timed }).stream : req.socket;
}

function onIdle(req: FrontRequest, res: ServerResponse, deps: BodyIdleDeps): void {
  const ex = req.exchange;
  if (ex === null || ex.fault !== null || res.writableFinished) {
    // Answered already; what is left is a silent body on the connection (or stream).
    timedOf(req).destroy();
    return;
  }
  report(deps, ex, BODY_IDLE_FAULT, BODY_IDLE);
  deps.log.debug({ requestId: ex.requestId, route: ex.route.cfg.name }, 'request body idle: 408');
  deps.answers.error(res, 'request_timeout', ex.requestId, true);
  ex.abort(BODY_IDLE);
}

/** Watches an admitted request's body for `ms` of silence. */
export function watchBody(req: FrontRequest, res: ServerResponse, ms: number, deps: BodyIdleDeps): void {
  const h2 = (req as unknown as FrontFields).h2;
  const timed = timedOf(req);
  const onTimeout = () => {
    if (req.complete) return;
    if (req.readableLength > 0) {
      timed.setTimeout(ms);
      return;
    }
    onIdle(req, res, deps);
  };
  timed.setTimeout(ms);
  // HTTP/1.1: Node emits the socket's timeout on the request; HTTP/2: the stream's own.
  if (h2) timed.on('timeout', onTimeout);
  else req.on('timeout', onTimeout);
  req.once('end', () => {
    if (h2) timed.off('timeout', onTimeout);
    else req.off('timeout', onTimeout);
    // Once the response has finished, Node owns the socket's timer (keep-alive): leave it.
    if (!res.writableFinished || h2) timed.setTimeout(0);
  });
}

/**
 * A gRPC call's RTT sample for the limit. Response headers say nothing of a
 * call's latency (a server may send them at once and stream for an hour), and
 * a stream's duration is the client's business. The sample is the time to the
 * first response message, counted from the end of the request, and taken only
 * when the request ended before that message:
 *
 *   unary                    request, then the answer: the upstream's time to
 *                            answer, as an HTTP request's RTT is
 *   server streaming         the time to the first result
 *   client streaming         the time from the last message to the answer
 *   bidi, or any call whose  none: the first message's time depends on the
 *   answer begins while the  client's pace, not on the upstream's capacity
 *   client still sends
 *   trailers only (no        none: an immediate status is no latency
 *   message at all)
 *
 * A call without a sample settles `ignore` for the limit (it holds its permit
 * while it runs, so it still counts as concurrency); overload is learnt from
 * its grpc-status (./settle.ts).
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import type { Clock } from '../core/clock.js';
import type { Exchange } from './request-ctx.js';

/** Notes when the client's request (its last message) ended. */
export function watchGrpcRequest(ex: Exchange, req: IncomingMessage, clock: Clock): void {
  if (req.readableEnded) ex.requestEndedAt = ex.dispatchedAt;
  else req.once('end', () => (ex.requestEndedAt = clock.now()));
}

/** The first response message sets the RTT, if the request had ended before it. */
export function sampleFirstMessage(ex: Exchange, body: Readable, clock: Clock): void {
  body.once('data', () => {
    if (ex.requestEndedAt >= 0) ex.rttMs = clock.now() - Math.max(ex.dispatchedAt, ex.requestEndedAt);
  });
}

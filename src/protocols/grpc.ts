/**
 * gRPC (over HTTP/2: requests whose content-type is application/grpc,
 * application/grpc+proto, application/grpc;...; not gRPC-Web).
 *
 * Sluice's own answers to a gRPC call are gRPC answers, so a gRPC client
 * sees a status it acts on rather than "HTTP 503" mapped to a bare
 * UNAVAILABLE: HTTP 200, trailers-only (one HEADERS frame that ends the
 * stream), `grpc-status`, `grpc-message` = Sluice's code (the reason of a
 * refusal), and for refusals `grpc-retry-pushback-ms` (gRFC A6: the client
 * waits that long before its retry; the same estimate as Retry-After, in ms).
 *
 *   Sluice's answer                         grpc-status
 *   503 refusals (queue_full, circuit_open,  14 UNAVAILABLE
 *     draining, ...), 502 upstream faults
 *   429 refusals (client_share, client_rate) 8 RESOURCE_EXHAUSTED
 *   431 headers_too_large                     8 RESOURCE_EXHAUSTED
 *   504 timeouts, deadline_exceeded, 408      4 DEADLINE_EXCEEDED
 *   404 no_route, 405, 501                    12 UNIMPLEMENTED
 *   400 bad_request, bad_path, bad_deadline,  3 INVALID_ARGUMENT
 *     417
 *   500 internal_error                        13 INTERNAL
 *
 * An upstream's gRPC status says whether it was overloaded: 8 or 14 in its
 * trailers (or trailers-only headers) back the limit off like an overload
 * HTTP status (proxy/settle.ts).
 */

export const GRPC = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

/** Whether a request's content-type is gRPC's (over HTTP/2). */
export function isGrpc(contentType: string | undefined): boolean {
  if (contentType === undefined || !contentType.startsWith('application/grpc')) return false;
  const next = contentType.charCodeAt(16);
  // application/grpc, application/grpc+proto, application/grpc;charset=...; not application/grpc-web.
  return Number.isNaN(next) || next === 43 /* + */ || next === 59 /* ; */;
}

/** The gRPC status of an answer Sluice writes itself, by its HTTP status. */
export function grpcStatusOf(httpStatus: number): number {
  switch (httpStatus) {
    case 429:
    case 431:
      return GRPC.RESOURCE_EXHAUSTED;
    case 502:
    case 503:
      return GRPC.UNAVAILABLE;
    case 408:
    case 504:
      return GRPC.DEADLINE_EXCEEDED;
    case 404:
    case 405:
    case 501:
      return GRPC.UNIMPLEMENTED;
    case 500:
      return GRPC.INTERNAL;
    default:
      return GRPC.INVALID_ARGUMENT;
  }
}

/** An upstream's grpc-status that means it is overloaded (the limit backs off). */
export function isOverloadGrpcStatus(value: string | string[] | undefined): boolean {
  return value === '8' || value === '14';
}

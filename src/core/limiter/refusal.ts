/**
 * Refusal reasons: the stable codes a client sees in the JSON body, each
 * with its one HTTP status (../shared/DESIGN.md §6). 503 means the route is
 * overloaded; 429 means this client is over its own share or rate.
 */

export const REFUSAL_STATUS = {
  queue_full: 503,
  queue_timeout: 503,
  shed_batch: 503,
  deadline: 503,
  circuit_open: 503,
  draining: 503,
  // The route has websocket.maxOpen WebSockets open (core/limiter/open-sockets.ts).
  websocket_limit: 503,
  client_share: 429,
  client_rate: 429,
} as const;

export type RefusalReason = keyof typeof REFUSAL_STATUS;
export type RefusalStatus = (typeof REFUSAL_STATUS)[RefusalReason];

export interface Refusal {
  readonly kind: 'refused';
  readonly status: RefusalStatus;
  readonly reason: RefusalReason;
  /** Whole seconds, >= 1. */
  readonly retryAfterSeconds: number;
}

export function refusal(reason: RefusalReason, retryAfterSeconds: number): Refusal {
  return { kind: 'refused', status: REFUSAL_STATUS[reason], reason, retryAfterSeconds };
}

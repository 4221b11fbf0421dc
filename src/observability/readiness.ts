/**
 * Readiness from backlog: an instance that is up but cannot keep up should
 * stop getting traffic, so /readyz fails while any route's queued work would
 * take longer than `readiness.maxBacklogSeconds` to drain at the route's
 * recent completion rate.
 *
 *   backlog = queued / completionsPerSecond
 *
 * `completionsPerSecond` is the limiter's smoothed rate (1 s buckets, EWMA),
 * so the estimate follows the upstream's real throughput, not the configured
 * limit. Requests waiting while nothing completes is an unbounded backlog
 * (null in JSON, +Inf in metrics): the queue is not draining at all.
 */

/** Estimated seconds to drain `queued` requests; null when requests wait and nothing completes. */
export function backlogSeconds(queued: number, completionsPerSecond: number): number | null {
  if (queued <= 0) return 0;
  if (!(completionsPerSecond > 0)) return null;
  return queued / completionsPerSecond;
}

/** Why an instance is not ready: a stable `reason` code plus details for the operator. */
export interface NotReady {
  readonly reason: string;
  readonly [detail: string]: unknown;
}

export interface BacklogInput {
  readonly name: string;
  readonly queued: number;
  readonly completionsPerSecond: number;
  readonly backlogSeconds: number | null;
}

/** `{ reason: 'backlog', routes: [...] }` naming every route over the budget, or null when all are within it. */
export function backlogVerdict(routes: readonly BacklogInput[], maxBacklogSeconds: number): NotReady | null {
  const over = routes.filter((r) => r.backlogSeconds === null || r.backlogSeconds > maxBacklogSeconds);
  if (over.length === 0) return null;
  return {
    reason: 'backlog',
    maxBacklogSeconds,
    routes: over.map((r) => ({
      route: r.name,
      queued: r.queued,
      completionsPerSecond: round(r.completionsPerSecond),
      backlogSeconds: r.backlogSeconds === null ? null : round(r.backlogSeconds),
    })),
  };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

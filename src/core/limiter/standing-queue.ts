/**
 * Standing-queue detection for adaptive LIFO, CoDel-style (Nichols and
 * Jacobson's CoDel; Facebook, "Fail at Scale"): a queue that drains within
 * an interval is a good queue absorbing a burst; one whose oldest entry has
 * stayed older than `target` for a whole `interval` is a standing queue, and
 * its oldest callers have probably given up. Serving newest first then
 * answers the callers still waiting, while the oldest time out.
 *
 * The oldest entry's age is used rather than the sojourn time of dequeued
 * entries (CoDel's measure), because in LIFO mode the dequeued entries are
 * the newest and would always look fresh. The age only grows between queue
 * events, so checking it at each dequeue is enough.
 */
export const LIFO_TARGET_MS = 5;
export const LIFO_INTERVAL_MS = 100;

export class StandingQueue {
  /** The last time the queue was seen empty or with its oldest entry younger than target. */
  private freshAt = -Infinity;

  /** The queue was empty and now has an entry. */
  formed(now: number): void {
    this.freshAt = now;
  }

  /** At a dequeue: is there a standing queue, given the oldest entry's age? */
  standing(oldestAgeMs: number, now: number): boolean {
    if (oldestAgeMs < LIFO_TARGET_MS) {
      this.freshAt = now;
      return false;
    }
    return now - this.freshAt >= LIFO_INTERVAL_MS;
  }
}

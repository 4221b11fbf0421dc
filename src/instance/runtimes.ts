/**
 * The runtime in force and the routes a reload let go. A retired route's
 * pool may still serve requests admitted before the reload; it closes once
 * nothing uses it any more (its gate's pool count reaches 0), checked on a
 * timer while any remain. A drain waits for every route here, retired ones
 * included.
 */
import type { Clock } from '../core/clock.js';
import type { Logger } from 'pino';
import type { RouteRuntime, Runtime } from '../proxy/runtime.js';
import type { NextRuntime, Retired } from './next-runtime.js';

/** How often retired pools are checked for closing. */
const SWEEP_MS = 100;

export class Runtimes {
  private retired: Retired[] = [];
  private sweeping = false;

  constructor(
    public current: Runtime,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /** Swaps in a reloaded runtime; the routes it let go close their pools once unused. */
  swap(next: NextRuntime): void {
    this.current = next.runtime;
    this.retired.push(...next.retired);
    this.sweep();
  }

  /** Every route the instance still serves requests for, retired ones included. */
  all(): RouteRuntime[] {
    return [...this.current.routes, ...this.retired.map((x) => x.route)];
  }

  /** Requests held or queued anywhere (routes sharing a pool share its count). */
  active(): number {
    let n = 0;
    const seen = new Set<object>();
    for (const r of this.all()) {
      if (seen.has(r.poolUse)) continue;
      seen.add(r.poolUse);
      n += r.poolUse.active;
    }
    return n;
  }

  /** After every pool was closed or destroyed (drain, close). */
  forgetRetired(): void {
    this.retired = [];
  }

  /** Closes retired pools that nothing uses any more; re-arms itself while some remain. */
  private sweep(): void {
    this.sweeping = false;
    this.retired = this.retired.filter(({ route, why }) => {
      if (route.poolUse.active > 0) return true;
      // Graceful: lets anything still in the pool finish. It may already be destroyed by a drain timeout.
      route.pool.close().catch(() => undefined);
      this.log.info({ route: route.cfg.name, upstream: route.cfg.upstream, why }, 'retired upstream pool closed');
      return false;
    });
    if (this.retired.length > 0 && !this.sweeping) {
      this.sweeping = true;
      this.clock.setTimer(() => this.sweep(), SWEEP_MS);
    }
  }
}

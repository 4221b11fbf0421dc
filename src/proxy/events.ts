/**
 * What the proxy reports as it works: admission decisions and upstream
 * outcomes. Observability (metrics, tests) plugs in here; every method is an
 * optional no-op, and the proxy calls them on the hot path, so receivers
 * keep them cheap (plain counters, no label hashing).
 */
import type { BreakerStateName } from '../core/breaker.js';
import type { Outcome } from '../core/limiter/limiter.js';
import type { Refusal } from '../core/limiter/refusal.js';
import type { ErrorCode } from './errors.js';
import type { RouteRuntime } from './runtime.js';

/**
 * Admission decisions. Every request that matched a route ends in exactly one
 * of admitted, refused, shadow-refused or abandoned; every admitted request
 * is later settled exactly once.
 */
export interface AdmissionEvents {
  /** Admitted, after `queuedMs` in the queue (0 when at once). */
  onAdmitted?(route: RouteRuntime, lane: number, queuedMs: number): void;
  /** Refused; `queuedMs` is set when the request waited in the queue first (queue_timeout, deadline). */
  onRefused?(route: RouteRuntime, lane: number, r: Refusal, queuedMs?: number): void;
  /** Shadow mode: `r` would have been the answer; the request is forwarded anyway. Fires instead of onAdmitted. */
  onShadowRefused?(route: RouteRuntime, lane: number, r: Refusal): void;
  /** The client left while queued: it left the queue and was never forwarded. */
  onAbandoned?(route: RouteRuntime, lane: number, queuedMs: number): void;
  onSettled?(route: RouteRuntime, lane: number, outcome: Outcome): void;
  /**
   * Sluice answered a 4xx itself, for the client's own fault: malformed,
   * oversized or too slow requests, bad paths, bad deadlines, no route, a
   * method that is never proxied, headers undici refuses to forward.
   */
  onClientError?(code: ErrorCode): void;
}

/** What happened upstream, for admitted requests. */
export interface UpstreamEvents {
  /** Response headers arrived `rttMs` after dispatch, for a request of lane index `lane`. */
  onUpstreamResponse?(route: RouteRuntime, lane: number, status: number, rttMs: number): void;
  /** Every upstream fault, once per request: before headers (502/504 answered) or mid-body (`upstream_body_*`). */
  onUpstreamError?(route: RouteRuntime, code: ErrorCode): void;
  /** A route's circuit breaker changed state (wired to the breakers through RuntimeDeps). */
  onBreakerState?(route: RouteRuntime, state: BreakerStateName): void;
}

/** One request, as the access log shows it (fields: ./access.ts). */
export interface AccessRecord {
  readonly requestId: string;
  readonly route: string | null;
  readonly lane: string | null;
  readonly method: string | null;
  readonly path: string | null;
  readonly status: number;
  readonly reason: string | null;
  readonly clientIp: string;
  readonly queueMs: number;
  readonly upstreamMs: number | null;
  readonly durationMs: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** The access log (log.access): one record per sampled request, when its response closes (./access.ts). */
export interface AccessEvents {
  onAccess?(record: AccessRecord): void;
}

export interface ProxyEvents extends AdmissionEvents, UpstreamEvents, AccessEvents {}

/** Every ProxyEvents method; a Record so that a new event is a compile error here until it is listed. */
const EVENT_NAMES: Readonly<Record<keyof ProxyEvents, true>> = {
  onAdmitted: true,
  onRefused: true,
  onShadowRefused: true,
  onAbandoned: true,
  onSettled: true,
  onUpstreamResponse: true,
  onUpstreamError: true,
  onBreakerState: true,
  onClientError: true,
  onAccess: true,
};

/** Both receivers get every event, `a` first. Built once; each call costs one extra call per receiver. */
export function teeEvents(a: ProxyEvents, b: ProxyEvents): ProxyEvents {
  const out: ProxyEvents = {};
  for (const key of Object.keys(EVENT_NAMES) as (keyof ProxyEvents)[]) {
    const fa = a[key]?.bind(a) as ((...args: unknown[]) => void) | undefined;
    const fb = b[key]?.bind(b) as ((...args: unknown[]) => void) | undefined;
    if (fa && fb) {
      (out as Record<string, unknown>)[key] = (...args: unknown[]) => {
        fa(...args);
        fb(...args);
      };
    } else if (fa || fb) (out as Record<string, unknown>)[key] = fa ?? fb;
  }
  return out;
}

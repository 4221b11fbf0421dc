/**
 * Records what the proxy reports through ProxyEvents, so tests can check
 * that every fault is reported and every admitted request settles once.
 */
import type { Outcome } from '../../src/core/limiter/limiter.js';
import type { ProxyEvents } from '../../src/proxy/proxy.js';

export interface Recorded {
  admitted: number;
  settled: Outcome[];
  upstreamErrors: string[];
  refused: string[];
  breaker: string[];
  events: ProxyEvents;
  /** Clears everything recorded so far. */
  reset(): void;
}

export function recordEvents(): Recorded {
  const rec: Recorded = {
    admitted: 0,
    settled: [],
    upstreamErrors: [],
    refused: [],
    breaker: [],
    events: {
      onAdmitted: () => void rec.admitted++,
      onSettled: (_route, _lane, outcome) => void rec.settled.push(outcome),
      onUpstreamError: (_route, code) => void rec.upstreamErrors.push(code),
      onRefused: (_route, _lane, r) => void rec.refused.push(r.reason),
      onBreakerState: (_route, state) => void rec.breaker.push(state),
    },
    reset() {
      rec.admitted = 0;
      rec.settled.length = 0;
      rec.upstreamErrors.length = 0;
      rec.refused.length = 0;
      rec.breaker.length = 0;
    },
  };
  return rec;
}

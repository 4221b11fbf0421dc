/**
 * Records what the proxy reports through ProxyEvents, so tests can check
 * that every fault is reported and every admitted request settles once.
 */
import type { Outcome } from '../../src/core/limiter/limiter.js';
import type { ProxyEvents } from '../../src/proxy/events.js';

export interface Recorded {
  /** Requests that started: admitted, plus (shadow mode) would-be refusals, which start too. */
  admitted: number;
  shadowRefused: string[];
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
    shadowRefused: [],
    settled: [],
    upstreamErrors: [],
    refused: [],
    breaker: [],
    events: {
      onAdmitted: () => void rec.admitted++,
      onSettled: (_route, _lane, outcome) => void rec.settled.push(outcome),
      onUpstreamError: (_route, code) => void rec.upstreamErrors.push(code),
      onRefused: (_route, _lane, r) => void rec.refused.push(r.reason),
      onShadowRefused: (_route, _lane, r) => {
        rec.shadowRefused.push(r.reason);
        rec.admitted++;
      },
      onBreakerState: (_route, state) => void rec.breaker.push(state),
    },
    reset() {
      rec.admitted = 0;
      rec.shadowRefused.length = 0;
      rec.settled.length = 0;
      rec.upstreamErrors.length = 0;
      rec.refused.length = 0;
      rec.breaker.length = 0;
    },
  };
  return rec;
}

// Spike: a flash sale. Interactive arrivals ramp from half the demo upstream's
// capacity to 10x within 10 s, hold there for 20 s, and fall back. Sluice
// must keep serving at about capacity, refuse the excess at once with a
// well-formed 503 (never a timeout or a 502), and be back to all-200 once
// the spike is over (`after` scenario, no lingering backlog).
//
//   k6 run loadtests/spike.js

import http from 'k6/http';
import { BASE_URL, CAPACITY, EXPECTED, SUMMARY_TREND_STATS, droppedAtMost, laneParams, record } from './lib.js';

const BASE = Math.max(1, Math.round(CAPACITY * 0.5));
const PEAK = Math.round(CAPACITY * 10);
/** Arrivals the two scenarios plan: 10 s at BASE, 10 s ramp, 20 s at PEAK, 5 s ramp; then 10 s at BASE. */
const PLANNED = 10 * BASE + 5 * (BASE + PEAK) + 20 * PEAK + 2.5 * (PEAK + BASE) + 10 * BASE;

/** @type {import('k6/options').Options} */
export const options = {
  summaryTrendStats: SUMMARY_TREND_STATS,
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      exec: 'spike',
      startRate: BASE,
      timeUnit: '1s',
      // All allocated before the start: VUs created mid-test come too late for a spike, and
      // every arrival without a free VU is dropped. Needed: about PEAK x a refusal's latency
      // plus capacity x a success's (<= 0.8 s); the rest is headroom for a busy machine.
      preAllocatedVUs: 1000,
      maxVUs: 1000,
      stages: [
        { target: BASE, duration: '10s' },
        { target: PEAK, duration: '10s' },
        { target: PEAK, duration: '20s' },
        { target: BASE, duration: '5s' },
      ],
    },
    // Starts 5 s after the spike ends: by then the queues have drained.
    after: {
      executor: 'constant-arrival-rate',
      exec: 'after',
      startTime: '50s',
      rate: BASE,
      timeUnit: '1s',
      duration: '10s',
      preAllocatedVUs: 100,
      maxVUs: 100,
    },
  },
  thresholds: {
    // 200, 429 and 503 are expected; 502/504/other statuses and errors are not.
    http_req_failed: ['rate<0.001'],
    refusal_contract_violations: ['count==0'],
    // Successes wait at most the interactive queue's maxWaitMs (500 ms), then the upstream's
    // 50 ms service and its FIFO behind the few requests the limit keeps queued there.
    'http_req_duration{status:200}': ['p(99)<800'],
    // The spike was offered as planned (at most 1% of arrivals dropped for want of a VU).
    dropped_iterations: [droppedAtMost(0.01, PLANNED)],
    // The spike really overloaded the upstream, and the excess was refused: of the ~45,000
    // arrivals the spike offers in 45 s the upstream can serve at most 45 x CAPACITY (16%).
    'refused{phase:spike}': ['rate>0.8'],
    // ...and once it is over, everything is served again.
    'success{phase:after}': ['rate>0.99'],
  },
};

/** @param {'spike' | 'after'} phase */
function buy(phase) {
  const tags = { phase: phase };
  const res = http.get(`${BASE_URL}/api/checkout`, Object.assign(laneParams('interactive', tags), { responseCallback: EXPECTED }));
  record(res, 'interactive', tags);
}

export function spike() {
  buy('spike');
}

export function after() {
  buy('after');
}

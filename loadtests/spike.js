// Spike: a flash sale. Interactive arrivals ramp from half the demo upstream's
// capacity to 10x within 10 s, hold there for 20 s, and fall back. Sluice
// must keep serving at about capacity, refuse the excess at once with a
// well-formed 503 (never a timeout or a 502), and be back to all-200 once
// the spike is over (`after` scenario, no lingering backlog).
//
//   k6 run loadtests/spike.js

import http from 'k6/http';
import { BASE_URL, CAPACITY, EXPECTED, laneParams, record } from './lib.js';

const BASE = Math.max(1, Math.round(CAPACITY * 0.5));
const PEAK = Math.round(CAPACITY * 10);

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      exec: 'spike',
      startRate: BASE,
      timeUnit: '1s',
      preAllocatedVUs: 100,
      maxVUs: 600,
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
      preAllocatedVUs: 20,
      maxVUs: 100,
    },
  },
  thresholds: {
    // 200, 429 and 503 are expected; 502/504/other statuses and errors are not.
    http_req_failed: ['rate<0.001'],
    refusal_contract_violations: ['count==0'],
    // Successes wait at most the interactive queue's maxWaitMs (500 ms) plus service time.
    'http_req_duration{status:200}': ['p(99)<1500'],
    // The spike really overloaded the upstream, and the excess was refused...
    'refused{phase:spike}': ['rate>0.3'],
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

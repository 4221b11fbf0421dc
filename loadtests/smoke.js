// Smoke: light traffic on both lanes, far below capacity; every request
// must be answered 200, quickly. Run this first: if it fails, the setup
// (demo:serve, BASE_URL) is wrong, not the overload handling.
//
//   k6 run loadtests/smoke.js

import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, CAPACITY, SUMMARY_TREND_STATS, laneParams, record } from './lib.js';

const RATE = Math.max(1, Math.round(CAPACITY * 0.1)); // per lane, requests per second

/** @type {import('k6/options').Options} */
export const options = {
  summaryTrendStats: SUMMARY_TREND_STATS,
  scenarios: {
    interactive: {
      executor: 'constant-arrival-rate',
      exec: 'interactive',
      rate: RATE,
      timeUnit: '1s',
      duration: '20s',
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
    batch: {
      executor: 'constant-arrival-rate',
      exec: 'batch',
      rate: RATE,
      timeUnit: '1s',
      duration: '20s',
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
  },
  thresholds: {
    // Default expected statuses (200-399): any refusal or error fails these.
    http_req_failed: ['rate==0'],
    checks: ['rate==1'],
    success: ['rate==1'],
    // Nothing waits at 0.2x capacity: the upstream's 50 ms service time, plus scheduling on a
    // busy machine (p(99) was 60 ms with the 2 cores at a load average of 5.5).
    'http_req_duration{lane:interactive}': ['p(99)<150'],
    'http_req_duration{lane:batch}': ['p(99)<150'],
    dropped_iterations: ['count==0'],
  },
};

/** @param {'interactive' | 'batch'} lane */
function hit(lane) {
  const res = http.get(`${BASE_URL}/api/smoke/${lane}`, laneParams(lane));
  record(res, lane);
  check(res, { 'status is 200': (r) => r.status === 200 }, { lane: lane });
}

export function interactive() {
  hit('interactive');
}

export function batch() {
  hit('batch');
}

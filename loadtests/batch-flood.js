// Batch flood: interactive users at a steady 0.3x of the demo upstream's
// capacity while a batch job floods the same route at 10x. Batch may use at
// most half of the route's limit, so interactive keeps its success rate and
// its latency, and batch absorbs the refusals (while still getting its
// reserved share through: it is throttled, not starved).
//
//   k6 run loadtests/batch-flood.js

import http from 'k6/http';
import { BASE_URL, CAPACITY, EXPECTED, SUMMARY_TREND_STATS, droppedAtMost, laneParams, record } from './lib.js';

const INTERACTIVE_RATE = Math.max(1, Math.round(CAPACITY * 0.3));
const BATCH_RATE = Math.round(CAPACITY * 10);
/** Arrivals planned: interactive for 40 s, batch for 30 s. */
const PLANNED = 40 * INTERACTIVE_RATE + 30 * BATCH_RATE;

/** @type {import('k6/options').Options} */
export const options = {
  summaryTrendStats: SUMMARY_TREND_STATS,
  scenarios: {
    interactive: {
      executor: 'constant-arrival-rate',
      exec: 'interactive',
      rate: INTERACTIVE_RATE,
      timeUnit: '1s',
      duration: '40s',
      preAllocatedVUs: 100,
      maxVUs: 200,
    },
    batch: {
      executor: 'constant-arrival-rate',
      exec: 'batch',
      startTime: '5s',
      rate: BATCH_RATE,
      timeUnit: '1s',
      duration: '30s',
      // All allocated before the flood starts (VUs created mid-test come too late: arrivals
      // without a free VU are dropped). Needed: the batch queue (100, waiting up to 2 s) plus
      // batch's slots plus BATCH_RATE x a refusal's latency; the rest is headroom.
      preAllocatedVUs: 600,
      maxVUs: 600,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    refusal_contract_violations: ['count==0'],
    // Interactive is unaffected by the flood...
    'success{lane:interactive}': ['rate>0.99'],
    'http_req_duration{lane:interactive,status:200}': ['p(99)<500'],
    // ...because batch absorbs the refusals: it is offered 10x capacity and can get at most
    // what interactive (0.3x) leaves, so at least 93% of it is refused,
    'refused{lane:batch}': ['rate>0.9'],
    // yet batch is throttled, not starved.
    'success{lane:batch}': ['rate>0.01'],
    // The flood was offered as planned (at most 1% of arrivals dropped for want of a VU).
    dropped_iterations: [droppedAtMost(0.01, PLANNED)],
  },
};

export function interactive() {
  const res = http.get(`${BASE_URL}/api/page`, Object.assign(laneParams('interactive'), { responseCallback: EXPECTED }));
  record(res, 'interactive');
}

export function batch() {
  const res = http.get(`${BASE_URL}/api/export`, Object.assign(laneParams('batch'), { responseCallback: EXPECTED }));
  record(res, 'batch');
}

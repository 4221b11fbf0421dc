// Upstream slowdown: interactive at 0.2x and batch at 1x of the demo
// upstream's capacity. After 20 s the upstream's service time triples
// (through its control endpoint), so its capacity drops to a third:
// interactive still fits, batch does not. Interactive must keep the same
// thresholds in both phases (`phase` tag: normal, slow); batch takes the
// loss. teardown() restores the original service time.
//
//   k6 run loadtests/upstream-slowdown.js
//   (CONTROL_URL must reach the demo upstream's /_control directly, not through Sluice)

import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { BASE_URL, CAPACITY, CONTROL_URL, EXPECTED, SUMMARY_TREND_STATS, droppedAtMost, laneParams, record } from './lib.js';

const SLOWDOWN_AT_S = 20;
const INTERACTIVE_RATE = Math.max(1, Math.round(CAPACITY * 0.2));
const BATCH_RATE = Math.max(1, Math.round(CAPACITY * 1));

/** @type {import('k6/options').Options} */
export const options = {
  summaryTrendStats: SUMMARY_TREND_STATS,
  scenarios: {
    interactive: {
      executor: 'constant-arrival-rate',
      exec: 'interactive',
      rate: INTERACTIVE_RATE,
      timeUnit: '1s',
      duration: '50s',
      preAllocatedVUs: 20,
      maxVUs: 200,
    },
    batch: {
      executor: 'constant-arrival-rate',
      exec: 'batch',
      rate: BATCH_RATE,
      timeUnit: '1s',
      duration: '50s',
      preAllocatedVUs: 50,
      maxVUs: 400,
    },
    slowdown: {
      executor: 'shared-iterations',
      exec: 'slowDown',
      startTime: `${SLOWDOWN_AT_S}s`,
      vus: 1,
      iterations: 1,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    refusal_contract_violations: ['count==0'],
    'success{lane:interactive,phase:normal}': ['rate>0.99'],
    'success{lane:interactive,phase:slow}': ['rate>0.99'],
    'http_req_duration{lane:interactive,status:200,phase:normal}': ['p(99)<800'],
    'http_req_duration{lane:interactive,status:200,phase:slow}': ['p(99)<800'],
    // The slowdown really happened and batch took the loss.
    'refused{lane:batch,phase:slow}': ['rate>0.3'],
    'checks{step:control}': ['rate==1'],
    // The load was offered as planned: at most 1% of the 50 s of arrivals dropped for want of a VU.
    dropped_iterations: [droppedAtMost(0.01, 50 * (INTERACTIVE_RATE + BATCH_RATE))],
  },
};

/** Reads the upstream's settings so teardown can restore them. */
export function setup() {
  const res = http.get(CONTROL_URL, { tags: { step: 'control' } });
  check(res, { 'control endpoint answers': (r) => r.status === 200 }, { step: 'control' });
  const settings = JSON.parse(String(res.body));
  return { serviceTimeMs: Number(settings.serviceTimeMs) };
}

/** The phase a request belongs to, by when it is sent (the scenarios all start at 0 s). */
function phase() {
  return Date.now() - exec.scenario.startTime >= SLOWDOWN_AT_S * 1000 ? 'slow' : 'normal';
}

/** @param {'interactive' | 'batch'} lane */
function hit(lane) {
  const tags = { phase: phase() };
  const params = Object.assign(laneParams(lane, tags), { responseCallback: EXPECTED });
  const res = http.get(`${BASE_URL}/api/${lane === 'batch' ? 'export' : 'page'}`, params);
  record(res, lane, tags);
}

export function interactive() {
  hit('interactive');
}

export function batch() {
  hit('batch');
}

/** @param {{ serviceTimeMs: number }} data */
export function slowDown(data) {
  setServiceTime(data.serviceTimeMs * 3);
}

/** @param {{ serviceTimeMs: number }} data */
export function teardown(data) {
  setServiceTime(data.serviceTimeMs);
}

/** @param {number} ms */
function setServiceTime(ms) {
  const res = http.post(CONTROL_URL, JSON.stringify({ serviceTimeMs: ms }), {
    headers: { 'content-type': 'application/json' },
    tags: { step: 'control' },
  });
  check(res, { 'service time changed': (r) => r.status === 200 }, { step: 'control' });
}

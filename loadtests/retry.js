// Retry: well-behaved clients. A short burst at 2x the demo upstream's
// capacity gets part of its requests refused; every refused client waits
// what Retry-After says plus random jitter (up to as long again, so retries
// do not return in lockstep) and tries again, up to MAX_ATTEMPTS times.
// Checks: every 503/429 carries an integer Retry-After and a JSON reason;
// most retries succeed; nearly every refused client gets through in the end.
//
//   k6 run loadtests/retry.js

import http from 'k6/http';
import { sleep } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import { BASE_URL, CAPACITY, EXPECTED, SUMMARY_TREND_STATS, droppedAtMost, laneParams, record, retryAfterSeconds } from './lib.js';

const MAX_ATTEMPTS = 8;
const CALM = Math.max(1, Math.round(CAPACITY * 0.3));
const BURST = Math.round(CAPACITY * 2);
/** Arrivals planned by the stages below: 5 s calm, 1 s ramp, 3 s burst, 1 s ramp, 20 s calm. */
const PLANNED = 5 * CALM + (CALM + BURST) / 2 + 3 * BURST + (BURST + CALM) / 2 + 20 * CALM;

/** The first attempt of a request was refused (the burst really overloaded the route). */
const firstRefused = new Rate('first_attempt_refused');
/** A retry (second attempt or later) was answered 200. */
const retryOk = new Rate('retry_ok');
/** A request whose first attempt was refused got a 200 within MAX_ATTEMPTS. */
const recovered = new Rate('recovered');
/** Attempts needed per request that succeeded. */
const attempts = new Trend('attempts');

/** @type {import('k6/options').Options} */
export const options = {
  summaryTrendStats: SUMMARY_TREND_STATS,
  scenarios: {
    clients: {
      executor: 'ramping-arrival-rate',
      exec: 'client',
      startRate: CALM,
      timeUnit: '1s',
      // Refused clients sleep between attempts (Retry-After x 1..2, up to 8 attempts), so they
      // hold VUs for seconds; all are allocated before the start, since VUs created mid-test
      // come too late and arrivals without a free VU are dropped.
      preAllocatedVUs: 1000,
      maxVUs: 1000,
      stages: [
        { target: CALM, duration: '5s' },
        { target: BURST, duration: '1s' },
        { target: BURST, duration: '3s' },
        { target: CALM, duration: '1s' },
        { target: CALM, duration: '20s' },
      ],
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    refusal_contract_violations: ['count==0'],
    // The burst offers ~1,150 arrivals in 5 s to a route that serves 160/s and queues 50:
    // ~450 of the ~2,500 arrivals (18%) cannot be served on their first attempt.
    first_attempt_refused: ['rate>0.1'],
    // Retries that come back while the burst lasts may be refused again.
    retry_ok: ['rate>0.5'],
    // Calm follows for 20 s and a client tries 8 times: every refused client gets through.
    recovered: ['rate>0.99'],
    // The clients arrived as planned (at most 1% of arrivals dropped for want of a VU).
    dropped_iterations: [droppedAtMost(0.01, PLANNED)],
  },
};

export function client() {
  let refusedOnce = false;
  let ok = false;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const res = http.get(`${BASE_URL}/api/checkout`, Object.assign(laneParams('interactive'), { responseCallback: EXPECTED }));
    const outcome = record(res, 'interactive');
    if (attempt === 1) firstRefused.add(outcome === 'refused');
    else retryOk.add(outcome === 'ok');
    if (outcome === 'ok') {
      ok = true;
      attempts.add(attempt);
      break;
    }
    if (outcome === 'failed') break; // not a refusal: nothing says when to come back
    refusedOnce = true;
    const wait = retryAfterSeconds(res);
    if (wait < 1 || attempt === MAX_ATTEMPTS) break; // a missing Retry-After is counted by record(): do not guess
    sleep(wait * (1 + Math.random()));
  }
  if (refusedOnce) recovered.add(ok);
}

// Shared helpers for the k6 scripts in this folder (plain JavaScript for k6
// v0.42 or newer; local import only). See loadtests/README.md.
//
// Every script classifies each answer the same way:
//   200          success
//   429 / 503    a refusal by Sluice: it must carry an integer Retry-After
//                (whole seconds, >= 1) and a JSON body naming the reason,
//                otherwise `refusal_contract_violations` counts it
//   anything else (502/504, other statuses, connection errors) a failure
// Each request is tagged with its `lane`, so thresholds can be set per lane.

import { check } from 'k6';
import http from 'k6/http';
import { Counter, Rate } from 'k6/metrics';

/** The Sluice proxy under test (no trailing slash). */
export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
/** The demo upstream's control endpoint (service time, workers). */
export const CONTROL_URL = __ENV.CONTROL_URL || 'http://127.0.0.1:3000/_control';
/** Requests per second the demo upstream can serve (workers x 1000 / serviceTimeMs); demo:serve prints it. */
export const CAPACITY = Number(__ENV.CAPACITY || 160);

/** Share of requests answered 200, per lane. */
export const success = new Rate('success');
/** Share of requests refused by Sluice (429/503), per lane. */
export const refused = new Rate('refused');
/** Refusals by lane, status and reason. */
export const refusals = new Counter('refusals');
/** Refusals without an integer Retry-After or without a JSON reason: must stay 0. */
export const refusalContractViolations = new Counter('refusal_contract_violations');

const LANE_HEADERS = {
  interactive: {},
  batch: { 'x-priority': 'batch' },
};

/**
 * Builds request params for a lane: the lane's headers and tags. `extraTags`
 * are added to the request's tags (e.g. a phase).
 * @param {'interactive' | 'batch'} lane
 * @param {Record<string, string>} [extraTags]
 * @returns {import('k6/http').Params}
 */
export function laneParams(lane, extraTags) {
  return { headers: LANE_HEADERS[lane], tags: withTags({ lane: lane }, extraTags) };
}

/**
 * @param {Record<string, string>} tags
 * @param {Record<string, string>} [extra]
 * @returns {Record<string, string>}
 */
function withTags(tags, extra) {
  if (extra) for (const k of Object.keys(extra)) tags[k] = extra[k];
  return tags;
}

/**
 * The Retry-After header as whole seconds, or -1 when missing or not an integer >= 1.
 * @param {import('k6/http').RefinedResponse<any>} res
 */
export function retryAfterSeconds(res) {
  const v = res.headers['Retry-After'];
  return typeof v === 'string' && /^[1-9][0-9]*$/.test(v) ? Number(v) : -1;
}

/**
 * The `reason` of a refusal's JSON body, or '' when the body is not that JSON.
 * @param {import('k6/http').RefinedResponse<any>} res
 */
export function refusalReason(res) {
  try {
    const body = JSON.parse(String(res.body));
    return body && typeof body.reason === 'string' && typeof body.error === 'string' ? body.reason : '';
  } catch (_e) {
    return '';
  }
}

/**
 * Records one answer in the shared metrics and checks the refusal contract.
 * Returns 'ok', 'refused' or 'failed'.
 * @param {import('k6/http').RefinedResponse<any>} res
 * @param {'interactive' | 'batch'} lane
 * @param {Record<string, string>} [extraTags] added to the metrics' tags (e.g. a phase)
 * @returns {'ok' | 'refused' | 'failed'}
 */
export function record(res, lane, extraTags) {
  const tags = withTags({ lane: lane }, extraTags);
  const ok = res.status === 200;
  const isRefusal = res.status === 429 || res.status === 503;
  success.add(ok, tags);
  refused.add(isRefusal, tags);
  if (ok) return 'ok';
  if (!isRefusal) {
    check(res, { 'answered 200 or a refusal': () => false }, tags);
    return 'failed';
  }
  const reason = refusalReason(res);
  const contract = check(
    res,
    {
      'refusal has integer Retry-After >= 1': (r) => retryAfterSeconds(r) >= 1,
      'refusal has a JSON reason': () => reason !== '',
    },
    tags,
  );
  if (!contract) refusalContractViolations.add(1, tags);
  refusals.add(1, withTags({ lane: lane, status: String(res.status), reason: reason || 'unknown' }, extraTags));
  return 'refused';
}

/**
 * The trend statistics k6 prints in its end-of-test summary: p(99) included,
 * since the latency thresholds are on p(99) (k6's default stops at p(95)).
 */
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'];

/**
 * A `dropped_iterations` threshold: at most `share` of the `planned` arrivals
 * may be dropped. k6 drops an arrival when every VU is busy; past that share
 * the load was not what the script says, and its other thresholds mean little.
 * @param {number} share
 * @param {number} planned
 * @returns {string}
 */
export function droppedAtMost(share, planned) {
  return 'count<=' + Math.floor(share * planned);
}

/** Successes and Sluice's refusals are expected answers; everything else counts in http_req_failed. */
export const EXPECTED = http.expectedStatuses(200, 429, 503);

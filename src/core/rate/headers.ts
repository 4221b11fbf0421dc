/**
 * IETF rate-limit header fields (draft-ietf-httpapi-ratelimit-headers-11):
 * what Sluice tells a client about its `clients.rate` quota.
 *
 *   RateLimit-Policy: "client";q=<quota>;w=<window seconds>
 *   RateLimit:        "client";r=<available now>;t=<seconds>
 *
 * Both are Structured Field Lists (RFC 9651) of one Item: the policy's name
 * as an sf-string, with Integer parameters.
 *
 * From a token bucket (perSecond, burst)
 * - Policy: the window is the time a drained bucket takes to fill again,
 *   w = max(1, ceil(burst / perSecond)) whole seconds, and the quota what
 *   the bucket lets through in it at the sustained rate, q = floor(perSecond
 *   * w) (>= burst, so a client may spend its whole burst at once). The value
 *   depends only on the config: it is built once.
 * - RateLimit on an admitted response: r = the requests the client may still
 *   send at once; t = the seconds until one more is added (rounded up), the
 *   effective window within which it can use no more than r.
 * - RateLimit on a 429 client_rate: r = 0 and t = the Retry-After of the
 *   same response. The draft asks that Retry-After never point earlier than
 *   the end of the effective window; equal, it cannot.
 *
 * No partition key (pk): the client key is often an API key, which the
 * draft says a server should not echo back.
 */

export const RATE_POLICY_NAME = 'client';

/** The RateLimit-Policy value for clients.rate. */
export function rateLimitPolicy(perSecond: number, burst: number): string {
  const w = Math.max(1, Math.ceil(burst / perSecond - 1e-9));
  const q = Math.max(Math.floor(burst), Math.floor(perSecond * w + 1e-9));
  return `"${RATE_POLICY_NAME}";q=${q};w=${w}`;
}

/** The RateLimit value: `remaining` requests available now, the next one in `waitSeconds` (or the Retry-After of a 429). */
export function rateLimitField(remaining: number, waitSeconds: number): string {
  const r = Math.max(0, Math.floor(remaining));
  const t = Math.max(0, Math.ceil(waitSeconds - 1e-9));
  return `"${RATE_POLICY_NAME}";r=${r};t=${t}`;
}

/**
 * Adds our item to a field the upstream may have set already: lists may be
 * combined (RFC 9651 §3.1), and an intermediary must not remove the
 * upstream's own limits (draft §7.2), only add a stricter one.
 */
export function appendListField(existing: string | string[] | number | undefined, item: string): string {
  if (existing === undefined) return item;
  const prior = Array.isArray(existing) ? existing.join(', ') : String(existing);
  return prior.trim() === '' ? item : `${prior}, ${item}`;
}

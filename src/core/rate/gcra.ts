/**
 * GCRA, the generic cell rate algorithm (ITU-T I.371; "leaky bucket as a
 * meter"): a client's rate limit as ONE number per client, its theoretical
 * arrival time (TAT), so a shared store needs one key and one round trip
 * per request (the Lua script in ../../ratestore/redis.ts runs this same
 * step inside Redis).
 *
 * The algorithm
 *   T   = 1000 / perSecond         emission interval (ms per request)
 *   tat = max(stored TAT, now)     a TAT in the past is a full bucket
 *   allowAt = tat + T - burst * T  earliest time this request conforms
 *   now >= allowAt: allowed, TAT := tat + T
 *   now <  allowAt: refused, TAT unchanged; retry in allowAt - now
 *
 * It is exactly the token bucket of ./client-rate.ts (a bucket of
 * `burst` refilled at perSecond): tokens = burst - (tat - now) / T, so
 * "allowed" is "tokens >= 1", what remains after the request is
 * floor(tokens - 1), and the wait of a refused one is (1 - tokens) * T.
 * The stored TAT may expire at tat + T - now: after that it is in the past
 * and means the same as no key at all.
 */

export interface RateVerdict {
  readonly kind: 'allowed' | 'limited';
  /** Requests the client may still send at once (0 when limited). */
  readonly remaining: number;
  /**
   * Seconds until the client may send another request: for a limited one,
   * until its next request conforms (the Retry-After estimate); for an
   * allowed one, until one more request is added to `remaining`.
   */
  readonly waitSeconds: number;
}

export interface GcraStep {
  readonly verdict: RateVerdict;
  /** The TAT to store (unchanged when limited). */
  readonly tat: number;
}

/** One request of a client whose stored TAT is `tat` (null: none) at `now` (ms). Pure. */
export function gcraStep(tat: number | null, now: number, perSecond: number, burst: number): GcraStep {
  const interval = 1000 / perSecond;
  const t = tat === null || tat < now ? now : tat;
  const next = t + interval;
  const allowAt = next - burst * interval;
  if (allowAt > now) return { verdict: limited((allowAt - now) / 1000), tat: t };
  const ahead = (now - allowAt) / interval;
  // A tiny epsilon: (burst - 1) * interval / interval must not floor to burst - 2.
  const remaining = Math.floor(ahead + 1e-9);
  return { verdict: allowed(remaining, ((1 - Math.max(0, ahead - remaining)) * interval) / 1000), tat: next };
}

export function allowed(remaining: number, waitSeconds: number): RateVerdict {
  return { kind: 'allowed', remaining, waitSeconds };
}

export function limited(waitSeconds: number): RateVerdict {
  return { kind: 'limited', remaining: 0, waitSeconds };
}

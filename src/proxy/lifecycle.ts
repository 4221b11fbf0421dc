/**
 * Where the instance is in a graceful drain (set by instance/drain.ts, read
 * by the proxy on every request).
 *   serving    normal
 *   draining   readiness fails; requests are still served, each response asks the client to close its connection
 *   closing    the listener is closed; requests on connections still open are refused (503 draining)
 *   expired    the drain timeout passed; what is left is being cut
 */
export type Phase = 'serving' | 'draining' | 'closing' | 'expired';

export interface Lifecycle {
  phase: Phase;
}

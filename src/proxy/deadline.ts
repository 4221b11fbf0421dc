/**
 * Request deadlines carried in a header (route `deadline:`), as a relative
 * budget: the time the caller is still willing to wait.
 *
 *   ms            "250"          integer milliseconds, digits only
 *   grpc-timeout  "250m", "2S"   at most 8 digits and a unit, as in the gRPC
 *                                 HTTP/2 protocol: H hours, M minutes,
 *                                 S seconds, m ms, u µs, n ns
 *
 * Anything else (a sign, a fraction, spaces inside, a repeated header joined
 * with commas, an unknown unit) is malformed: the caller gets 400
 * bad_deadline instead of a guess. Budgets above MAX_BUDGET_MS are clamped to
 * it: such a deadline can never be the binding limit, and timers cannot be
 * armed that far out (setTimeout overflows past 2^31-1 ms and fires at once).
 */
import type { DeadlineConfig } from '../config/types.js';

/** About 24.8 days: the longest delay a Node timer accepts. */
export const MAX_BUDGET_MS = 2_147_483_647;

const MS = /^\d+$/;
const GRPC = /^(\d{1,8})([HMSmun])$/;
const GRPC_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** The budget in ms (>= 0, possibly fractional for grpc u/n), or NaN when the value is malformed. */
export function parseBudgetMs(value: string | string[] | undefined, format: DeadlineConfig['format']): number {
  if (typeof value !== 'string') return Number.NaN;
  if (format === 'ms') return MS.test(value) ? Math.min(MAX_BUDGET_MS, Number(value)) : Number.NaN;
  const m = GRPC.exec(value);
  if (m === null) return Number.NaN;
  return Math.min(MAX_BUDGET_MS, Number(m[1]) * (GRPC_UNIT_MS[m[2] as string] as number));
}

/** The remaining budget as the header value forwarded upstream (whole ms, at least 1). */
export function formatBudget(ms: number, format: DeadlineConfig['format']): string {
  const whole = Math.max(1, Math.floor(ms));
  if (format === 'ms') return String(whole);
  // grpc-timeout allows 8 digits: fall back to coarser units, rounding down.
  if (whole <= 99_999_999) return `${whole}m`;
  const s = Math.floor(whole / 1000);
  if (s <= 99_999_999) return `${s}S`;
  return `${Math.floor(whole / 60_000)}M`;
}

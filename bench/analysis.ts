/**
 * Pure helpers that turn raw benchmark data into the numbers in the report
 * (kept apart from the process plumbing so they can be unit-tested).
 */
import type { LoadResult } from './loadgen.js';

/** What the settle time needs of a trace sample. */
export interface LimitSample {
  /** Seconds since the run's t0. */
  readonly t: number;
  readonly limit: number;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** (max - min) / median, as a percentage: how far repeated measurements spread. */
export function spreadPct(xs: readonly number[]): number {
  if (xs.length < 2) return Number.NaN;
  return ((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 100;
}

/**
 * Answers per second of one stream over the run's steady part: whole seconds
 * from `skip` (warm-up) to the end of the offered duration.
 */
export function steadyRate(r: LoadResult, stream: string, what: 'ok' | 'refused' | 'answered', skip: number): number {
  const last = Math.floor(r.durationMs / 1000);
  const rows = r.seconds.filter((s) => s.t >= skip && s.t < last);
  if (rows.length === 0) return Number.NaN;
  let n = 0;
  for (const row of rows) {
    const s = row.streams[stream];
    if (s === undefined) continue;
    n += what === 'ok' ? s.ok : what === 'refused' ? s.refused : s.ok + s.refused + s.other;
  }
  return n / rows.length;
}

export function sumValues(rec: Record<string, number>): number {
  let n = 0;
  for (const v of Object.values(rec)) n += v;
  return n;
}

export interface Settle {
  readonly at: number;
  readonly finalLimit: number;
  /** Seconds after the change until the limit first came within the band; null when it never did. */
  readonly reachS: number | null;
  /** Seconds after the change until the limit stayed within the band to the end of the phase; null when it never settled. */
  readonly settleS: number | null;
}

/**
 * How the limit converged after a change at `from`: the phase's final value
 * is the median of its last quarter, the band max(1, 10%) around it.
 * reach = first sample in the band; settle = from then on always in the band
 * until the phase ends (the usual settling time: later dips out of the band,
 * e.g. an algorithm probing for more, push it back).
 */
export function settleTime(trace: readonly LimitSample[], from: number, to: number): Settle {
  const inPhase = trace.filter((s) => s.t >= from && s.t < to);
  if (inPhase.length === 0) return { at: from, finalLimit: Number.NaN, reachS: null, settleS: null };
  const finalLimit = median(inPhase.slice(-Math.max(1, Math.floor(inPhase.length / 4))).map((s) => s.limit));
  const band = Math.max(1, 0.1 * finalLimit);
  let reachedAt: number | null = null;
  let settledAt: number | null = null;
  for (const s of inPhase) {
    if (Math.abs(s.limit - finalLimit) <= band) {
      reachedAt ??= s.t;
      settledAt ??= s.t;
    } else settledAt = null;
  }
  const since = (t: number | null): number | null => (t === null ? null : Math.max(0, t - from));
  return { at: from, finalLimit, reachS: since(reachedAt), settleS: since(settledAt) };
}

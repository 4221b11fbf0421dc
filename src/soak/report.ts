/**
 * The soak verdict: is memory (and are file descriptors) flat under
 * sustained overload?
 *
 * Memory is sampled right after a full GC (see child.ts), so heap used is the
 * live heap, not the GC's sawtooth.
 *
 * File descriptors: the raw count follows the connections the load generator
 * keeps open (it opens more when latency rises and lets idle ones go), which
 * is load, not a leak. So the verdict is on the descriptors that are NOT an
 * open connection (fds - client connections - upstream pool connections):
 * listeners, pipes, files, and any socket that leaked. The raw count is
 * reported too.
 *
 * "Flat" means: over the last 80% of the run (the first 20% is warm-up:
 * pools fill, JIT settles, queues reach their steady size) the series grows
 * less than 5%. Growth is measured on a least-squares line through the
 * window, not between two single samples, so a GC sawtooth or one noisy
 * second neither hides a leak nor invents one:
 *
 *   growth = (fit(end) - fit(start)) / fit(start)
 */
import type { ChildSample } from './child.js';

/** One second of the run: the child's numbers (child.ts) and the load's. */
export interface Sample extends Omit<ChildSample, 'kind'> {
  /** Seconds since the load started. */
  readonly t: number;
  readonly offered: number;
  readonly ok: number;
  readonly refused: number;
}

export interface Trend {
  readonly start: number; // fitted value at the window's start
  readonly end: number; // fitted value at the window's end
  readonly growth: number; // (end - start) / start
  readonly min: number;
  readonly max: number;
  readonly flat: boolean;
}

export const WARMUP_SHARE = 0.2;
export const FLAT_GROWTH = 0.05;

/** The trend of `value` over the samples after warm-up. */
export function trend(samples: readonly Sample[], value: (s: Sample) => number): Trend {
  const from = Math.floor(samples.length * WARMUP_SHARE);
  const w = samples.slice(from);
  if (w.length < 2) return { start: 0, end: 0, growth: 0, min: 0, max: 0, flat: true };
  const n = w.length;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let sxy = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const s of w) {
    const y = value(s);
    sx += s.t;
    sy += y;
    sxx += s.t * s.t;
    sxy += s.t * y;
    min = Math.min(min, y);
    max = Math.max(max, y);
  }
  const denom = n * sxx - sx * sx;
  const slope = denom === 0 ? 0 : (n * sxy - sx * sy) / denom;
  const intercept = (sy - slope * sx) / n;
  const t0 = (w[0] as Sample).t;
  const t1 = (w[n - 1] as Sample).t;
  const start = intercept + slope * t0;
  const end = intercept + slope * t1;
  const growth = start > 0 ? (end - start) / start : 0;
  return { start, end, growth, min, max, flat: growth < FLAT_GROWTH };
}

export interface SoakResult {
  readonly command: string;
  readonly minutes: number;
  readonly capacityPerSecond: number;
  readonly offeredPerSecond: number;
  readonly samples: readonly Sample[];
  readonly upstreamServed: number;
}

export interface Verdict {
  readonly rss: Trend;
  readonly heapUsed: Trend;
  /** Reported, not judged: buffers come and go with the traffic. */
  readonly external: Trend;
  /** Descriptors that are not an open connection: judged. */
  readonly otherFds: Trend;
  /** All descriptors: reported, not judged (they follow the load's connections). */
  readonly fds: Trend;
  readonly flat: boolean;
}

export function verdict(samples: readonly Sample[]): Verdict {
  const rss = trend(samples, (s) => s.rss);
  const heapUsed = trend(samples, (s) => s.heapUsed);
  const external = trend(samples, (s) => s.external);
  const otherFds = trend(samples, (s) => s.fds - s.connections);
  const fds = trend(samples, (s) => s.fds);
  return { rss, heapUsed, external, otherFds, fds, flat: rss.flat && heapUsed.flat && otherFds.flat };
}

const MB = 1024 * 1024;

/** A Markdown report: verdict, the trend of each series, then a sampled timeline. */
export function formatReport(r: SoakResult, v: Verdict): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const mb = (x: number) => `${(x / MB).toFixed(1)} MB`;
  const row = (name: string, t: Trend, f: (x: number) => string) =>
    `| ${name} | ${f(t.start)} | ${f(t.end)} | ${pct(t.growth)} | ${f(t.min)} | ${f(t.max)} | ${t.flat ? 'flat' : 'GROWING'} |`;
  const totals = r.samples.reduce((a, s) => ({ offered: a.offered + s.offered, ok: a.ok + s.ok, refused: a.refused + s.refused }), {
    offered: 0,
    ok: 0,
    refused: 0,
  });
  const every = Math.max(1, Math.floor(r.samples.length / 40));
  const timeline = r.samples
    .filter((_, i) => i % every === 0 || i === r.samples.length - 1)
    .map((s) => `| ${s.t} | ${mb(s.rss)} | ${mb(s.heapUsed)} | ${s.fds} | ${s.connections} | ${s.inflight} | ${s.queued} | ${s.offered} | ${s.ok} | ${s.refused} |`);
  return [
    `# Soak report`,
    ``,
    `Verdict: **${v.flat ? 'FLAT' : 'NOT FLAT'}** (RSS, heap used and the descriptors that are not an open connection must each grow less than ${pct(FLAT_GROWTH)} over the last ${pct(1 - WARMUP_SHARE)} of the run, on a least-squares fit).`,
    ``,
    `- command: \`${r.command}\``,
    `- duration: ${r.minutes} min, ${r.samples.length} samples (one per second, from the Sluice process)`,
    `- upstream capacity ${r.capacityPerSecond} req/s, offered ${r.offeredPerSecond} req/s (${(r.offeredPerSecond / r.capacityPerSecond).toFixed(1)}x)`,
    `- requests: ${totals.offered} offered, ${totals.ok} ok, ${totals.refused} refused (429/503); upstream served ${r.upstreamServed}`,
    ``,
    `| series | fit start | fit end | growth | min | max | |`,
    `|---|---|---|---|---|---|---|`,
    row('RSS', v.rss, mb),
    row('heap used (live, after GC)', v.heapUsed, mb),
    `| external (not judged) | ${mb(v.external.start)} | ${mb(v.external.end)} | ${pct(v.external.growth)} | ${mb(v.external.min)} | ${mb(v.external.max)} | buffers in flight |`,
    row('fds other than connections', v.otherFds, (x) => x.toFixed(0)),
    `| all open fds (not judged) | ${v.fds.start.toFixed(0)} | ${v.fds.end.toFixed(0)} | ${pct(v.fds.growth)} | ${v.fds.min} | ${v.fds.max} | follows the load's connections |`,
    ``,
    `## Timeline`,
    ``,
    `| t (s) | RSS | heap used | fds | connections | inflight | queued | offered/s | ok/s | refused/s |`,
    `|---|---|---|---|---|---|---|---|---|---|`,
    ...timeline,
    ``,
  ].join('\n');
}

/**
 * The demo's side-by-side table: per phase and lane, the run without
 * admission control (bare @fastify/http-proxy) next to the run through
 * Sluice, every column labelled (see ./compare.ts for what each measures),
 * then one line per phase saying what changed for interactive traffic.
 */
import { capacityOf, LANES, type DemoSetup, type LaneResult, type PhaseResult, type TargetResult } from './phases.js';

export const SIDE_COLUMNS = ['ok %', 'refused %', 'gave up %', 'p99 ok ms', 'useful/s'] as const;

const pct = (x: number) => x.toFixed(1);
const num = (x: number | null) => (x === null ? '-' : String(Math.round(x)));

function laneCells(l: LaneResult): string[] {
  return [pct(l.okPct), pct(l.refusedPct), pct(l.gaveUpPct), num(l.p99OkMs), l.usefulPerSecond.toFixed(1)];
}

function upstreamCell(p: PhaseResult): string {
  const useful = p.upstream.usefulPct === null ? '-' : `${pct(p.upstream.usefulPct)}% useful`;
  return `served ${p.upstream.servedPerSecond.toFixed(1)}/s, ${useful}`;
}

/** What each phase is, in words, with its numbers. */
export function describePhases(setup: DemoSetup): string[] {
  const capacity = capacityOf(setup);
  return setup.phases.map((p) => {
    const service = setup.serviceMs * p.serviceFactor;
    const cap = capacity / p.serviceFactor;
    const offered = p.load * capacity;
    return (
      `  ${p.name.padEnd(9)} ${p.seconds} s: ${offered.toFixed(0)} req/s offered (${Math.round(setup.interactiveShare * 100)}% interactive) ` +
      `to ${setup.workers} workers x ${service} ms = ${cap.toFixed(0)} req/s capacity (${(offered / cap).toFixed(1)}x)`
    );
  });
}

/** Column widths over `rows`; `line` pads cells to them (the first `left` columns left-aligned). */
function columns(rows: readonly string[][], left: number): (cells: readonly string[]) => string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return (cells) => cells.map((c, i) => (i < left ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
}

export function formatComparison(bare: TargetResult, sluice: TargetResult): string {
  const head = ['phase', 'lane', 'offered/s', '|', ...SIDE_COLUMNS, '|', ...SIDE_COLUMNS];
  // A lane row, or an upstream row (its two wide cells are placed at the bars afterwards).
  const rows: (string[] | { b: string; s: string })[] = [head];
  bare.phases.forEach((b, i) => {
    const s = sluice.phases[i] as PhaseResult;
    for (const [j, lane] of LANES.entries()) {
      const offered = b.lanes[lane].offered / b.phase.seconds;
      rows.push([j === 0 ? b.phase.name : '', lane, offered.toFixed(0), '|', ...laneCells(b.lanes[lane]), '|', ...laneCells(s.lanes[lane])]);
    }
    rows.push({ b: upstreamCell(b), s: upstreamCell(s) });
  });
  const line = columns(rows.filter((r): r is string[] => Array.isArray(r)), 2);
  const header = line(head);
  const bar = header.indexOf('|');
  const bar2 = header.lastIndexOf('|');
  const prefix = line(['', 'upstream', '']);
  // Text up to a bar's column (at least one space before it).
  const at = (text: string, col: number) => (text.length < col ? text.padEnd(col) : `${text} `);
  const out = rows.map((r) => (Array.isArray(r) ? line(r).trimEnd() : `${at(`${at(prefix, bar)}| ${r.b}`, bar2)}| ${r.s}`));
  const title = `${at(`${at('', bar)}| without admission control: ${bare.description}`, bar2)}| with ${sluice.description}`;
  return [title, ...out].join('\n');
}

/** One line per phase: interactive ok % and p99 with and without Sluice. */
export function formatVerdict(bare: TargetResult, sluice: TargetResult): string[] {
  return bare.phases.map((b, i) => {
    const s = (sluice.phases[i] as PhaseResult).lanes.interactive;
    const x = b.lanes.interactive;
    return `  ${b.phase.name.padEnd(9)} interactive ok ${pct(s.okPct)}% with Sluice vs ${pct(x.okPct)}% without; p99 ok ${num(s.p99OkMs)} ms vs ${num(x.p99OkMs)} ms`;
  });
}

export const TABLE_NOTES = [
  'ok % = 2xx of the arrivals in the phase; refused % = 429/503 answered at once with Retry-After;',
  'gave up % = no answer within the client timeout; p99 ok ms = of the 2xx, from the intended send time;',
  'useful/s = answers per second that reached a client still waiting; upstream: requests the upstream',
  'served per second and the share of them that reached a waiting client (the rest was work for nobody).',
];

/**
 * Deterministic virtual-time simulation of issue 10's scenarios
 * (bench/scenarios.ts, the same definitions `npm run bench` runs against real
 * processes): the real Limiter and limits in front of a modelled upstream
 * with an unbounded FIFO (./helpers/sim.ts), on a manual clock, seed 1.
 *
 * Every scenario runs with the default controller and with the comparator
 * told the truth (algorithm fixed, limit = the true worker count, same
 * lanes); bench/judge.ts grades each phase against the goal. The tables are
 * printed as diagnostics, also for the other adaptive algorithms (not
 * checked: they are the controllers the issue measured failing).
 *
 * The check is every goal of every phase. Goals the default controller does
 * not meet are listed in KNOWN_MISSES with what was measured; the test
 * fails when one of them is met (so the list only shrinks) as well as when
 * any other goal is missed. Nothing is left out silently: the list is the
 * report.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { judge, measureRun, scenarioRows, SCENARIO_HEADER, type PhaseMeasure, type Verdict } from '../bench/judge.js';
import { SCENARIOS, type Scenario } from '../bench/scenarios.js';
import { simulate, type Controller } from './helpers/sim.js';

/** `scenario | phase | goal` of each goal the default controller misses at seed 1, with the numbers. */
const KNOWN_MISSES: Record<string, string> = {
  'lognormal | lognormal | limit within ±20% of optimum (1 s means)':
    'on a lognormal service (CoV 0.5) the standing queue is sized to the RTT noise (up to 10% of U) and the limit averages noisy windows: its 1-second means reach 19.8 for a band ending at 19.2 (mean 17.6, CoV within 10%, useful work and latency met)',
};

const truthRuns = new Map<string, PhaseMeasure[]>();

function grade(s: Scenario, controller: Controller): { ours: PhaseMeasure[]; truth: PhaseMeasure[]; verdicts: Verdict[] } {
  let truth = truthRuns.get(s.id);
  if (truth === undefined) {
    truth = measureRun(s, simulate(s, { kind: 'truth' }));
    truthRuns.set(s.id, truth);
  }
  const ours = measureRun(s, simulate(s, controller));
  return { ours, truth, verdicts: judge(s, ours, truth) };
}

function print(t: TestContext, s: Scenario, label: string, g: ReturnType<typeof grade>): void {
  t.diagnostic(`${s.title} — ${label} / told the truth`);
  t.diagnostic(`  ${SCENARIO_HEADER.join(' | ')}`);
  for (const row of scenarioRows(s, g.ours, g.truth, g.verdicts)) t.diagnostic(`  ${row.join(' | ')}`);
}

test('simulation: the default controller meets the goal in every scenario and phase, but for the known misses', (t) => {
  const missed = new Map<string, string>();
  let checked = 0;
  for (const s of SCENARIOS) {
    const g = grade(s, { kind: 'adaptive', algorithm: null });
    print(t, s, 'default (little)', g);
    for (const v of g.verdicts) {
      checked++;
      if (!v.met) missed.set(`${s.id} | ${v.phase} | ${v.goal}`, v.measured);
    }
  }
  t.diagnostic(`${checked} goal checks, ${missed.size} missed:`);
  for (const [k, v] of missed) t.diagnostic(`  ${k}: ${v}${k in KNOWN_MISSES ? ` (known: ${KNOWN_MISSES[k]})` : ''}`);
  assert.deepEqual([...missed.keys()].filter((k) => !(k in KNOWN_MISSES)), [], 'goals missed that were met');
  assert.deepEqual(Object.keys(KNOWN_MISSES).filter((k) => !missed.has(k)), [], 'known misses that are now met: take them off the list');
});

for (const algorithm of ['gradient', 'vegas', 'aimd']) {
  test(`simulation: ${algorithm}, for comparison (diagnostics only)`, (t) => {
    let missed = 0;
    let checked = 0;
    for (const s of SCENARIOS) {
      const g = grade(s, { kind: 'adaptive', algorithm });
      print(t, s, algorithm, g);
      checked += g.verdicts.length;
      missed += g.verdicts.filter((v) => !v.met).length;
    }
    t.diagnostic(`${algorithm}: ${missed} of ${checked} goal checks missed`);
  });
}

/**
 * Deterministic virtual-time simulation of issue 10's scenarios
 * (bench/scenarios.ts, the same definitions `npm run bench` runs against real
 * processes): the real Limiter and limits in front of a modelled upstream
 * with an unbounded FIFO (./helpers/sim.ts), on a manual clock.
 *
 * Every scenario runs with the default controller and with the comparator
 * told the truth (algorithm fixed, limit = the true worker count, same
 * lanes); bench/judge.ts grades each phase against the goal. The table is
 * printed as diagnostics.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { judge, measureRun, scenarioRows, SCENARIO_HEADER, type PhaseMeasure, type Verdict } from '../bench/judge.js';
import { SCENARIOS, type Scenario } from '../bench/scenarios.js';
import { simulate, type Controller } from './helpers/sim.js';

interface Graded {
  readonly ours: PhaseMeasure[];
  readonly truth: PhaseMeasure[];
  readonly verdicts: Verdict[];
}

const truthRuns = new Map<string, PhaseMeasure[]>();

function grade(s: Scenario, controller: Controller): Graded {
  let truth = truthRuns.get(s.id);
  if (truth === undefined) {
    truth = measureRun(s, simulate(s, { kind: 'truth' }));
    truthRuns.set(s.id, truth);
  }
  const ours = measureRun(s, simulate(s, controller));
  return { ours, truth, verdicts: judge(s, ours, truth) };
}

function print(t: TestContext, s: Scenario, label: string, g: Graded): void {
  t.diagnostic(`${s.title} — ${label} / told the truth`);
  t.diagnostic(`  ${SCENARIO_HEADER.join(' | ')}`);
  for (const row of scenarioRows(s, g.ours, g.truth, g.verdicts)) t.diagnostic(`  ${row.join(' | ')}`);
}

for (const algorithm of (process.env.SIM_ALGORITHMS ?? 'little,gradient,vegas,aimd').split(',')) {
  test(`simulation: ${algorithm} against told the truth, every scenario (diagnostics)`, (t) => {
    for (const s of SCENARIOS) {
      const g = grade(s, { kind: 'adaptive', algorithm });
      print(t, s, algorithm, g);
    }
    assert.ok(true);
  });
}

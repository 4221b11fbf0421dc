/**
 * `npm run bench [-- options]`: runs the benchmark scenarios, writes each
 * one's JSON into bench/results/ and appends a section to the report.
 *
 *   --quick            every scenario for a few seconds (CI smoke test: it must
 *                      finish and write its report; no speed is asserted).
 *                      Its report goes to bench/results/REPORT-quick.md unless --report says otherwise.
 *   --only LIST        comma-separated: cost (wrk: CPU per request, unloaded latency), overhead,
 *                      refusal, control (= overload, batch flood, capacity change), adaptive (issue 10's
 *                      scenarios: the default limit vs one told the truth; about 9 minutes), queue (fair queue cost),
 *                      quota (Redis quota check cost; needs redis-server), workers (workers: 2 vs 1),
 *                      websocket (open WebSockets: RSS per socket, messages outside admission; N
 *                      bounded by `ulimit -n`),
 *                      h2 (HTTP/2 vs HTTP/1.1 CPU per request, h2 refusals, HTTP/2 upstreams; needs h2load)
 *   --algorithm NAME   limit algorithm for the control and adaptive scenarios (default: the config schema's default)
 *   --scenarios LIST   adaptive: only these scenario ids of bench/scenarios.ts (e.g. slower,two-instances)
 *   --baseline DIR     another checkout of Sluice, built (DIR/dist/cli.js): the cost scenario
 *                      measures it in the same run, alternating, as "baseline" (before/after)
 *   --access-log       the cost scenario runs this build's Sluice with log.access enabled (every
 *                      request logged); with --baseline pointing at the same build (access log
 *                      off) that measures what the access log costs per request
 *   --no-pin           do not pin processes to cores with taskset
 *   --report FILE      append to FILE instead of the default report
 *
 * Placement on a 2-core machine, in the cost and throughput scenarios (0-2)
 * only: the proxy under test (Sluice or the bare proxy) alone on core 1, the
 * load generator and the upstream on core 0. The control scenarios (3-5) run
 * unpinned (see control.ts).
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { closeHttp, table, type BenchContext, type ScenarioOutput } from './common.js';
import { adaptiveScenarios } from './adaptive.js';
import { controlScenarios } from './control.js';
import { costScenario } from './cost.js';
import { h2Scenario } from './h2.js';
import { ROOT, canPin, type Placement } from './processes.js';
import { queueScenario } from './queueing.js';
import { quotaScenario } from './quota.js';
import { throughputScenarios } from './throughput.js';
import { webSocketScenario } from './websockets.js';
import { workersScenario } from './workers.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    algorithm: { type: 'string' },
    baseline: { type: 'string' },
    'access-log': { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
    scenarios: { type: 'string' },
    report: { type: 'string' },
  },
});

const GROUPS = ['cost', 'overhead', 'refusal', 'control', 'adaptive', 'queue', 'quota', 'workers', 'websocket', 'h2'] as const;

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

function machine(placement: Placement): string[] {
  const cpus = os.cpus();
  const commit = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  const dirty = git(['status', '--porcelain', '--untracked-files=no']) ? ' (with uncommitted changes)' : '';
  const pin =
    placement.proxy === null
      ? 'none (processes float over all cores)'
      : `taskset in scenarios 0-2: proxy under test alone on CPU ${placement.proxy}, load generator and upstream on CPU ${placement.loadgen}; scenarios 3-5 unpinned`;
  return [
    `- machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`,
    `- node ${process.version}, commit ${commit}${dirty}`,
    `- pinning: ${pin}`,
    `- load average at start: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (other work on the machine makes numbers noisier)`,
  ];
}

function stampOf(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}-${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

async function main(): Promise<void> {
  const quick = values.quick ?? false;
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : [...GROUPS];
  for (const o of only) if (!(GROUPS as readonly string[]).includes(o)) throw new Error(`--only: unknown "${o}" (one of ${GROUPS.join(', ')})`);
  const pin = !values['no-pin'] && os.cpus().length >= 2 && canPin();
  const placement: Placement = pin ? { proxy: 1, loadgen: 0, upstream: 0 } : { proxy: null, loadgen: null, upstream: null };
  const started = new Date();
  const stamp = stampOf(started);
  const resultsDir = `${ROOT}bench/results`;
  const report = values.report ?? (quick ? `${resultsDir}/REPORT-quick.md` : `${ROOT}bench/REPORT.md`);
  const chartsDir = quick && values.report === undefined ? `${resultsDir}/charts` : `${ROOT}bench/charts`;
  mkdirSync(resultsDir, { recursive: true });
  mkdirSync(dirname(report), { recursive: true });
  const ctx: BenchContext = {
    quick,
    placement,
    stamp,
    resultsDir,
    chartsDir,
    chartsLink: relative(dirname(report), chartsDir) || '.',
    algorithm: values.algorithm ?? null,
    baseline: values.baseline ? `${values.baseline.replace(/\/$/, '')}/dist/cli.js` : null,
    accessLog: values['access-log'],
    log: (msg) => process.stdout.write(`${msg}\n`),
  };
  const header = machine(placement);
  ctx.log(`bench ${quick ? '(quick) ' : ''}${stamp}\n${header.join('\n')}`);

  const outputs: ScenarioOutput[] = [];
  let algorithm = '';
  if (only.includes('cost')) outputs.push(await costScenario(ctx));
  if (only.includes('overhead') || only.includes('refusal')) {
    outputs.push(...(await throughputScenarios(ctx, { overhead: only.includes('overhead'), refusal: only.includes('refusal') })));
  }
  if (only.includes('control')) {
    const c = await controlScenarios(ctx);
    outputs.push(...c.outputs);
    algorithm = c.algorithm;
  }
  if (only.includes('adaptive')) outputs.push(await adaptiveScenarios(ctx, values.scenarios?.split(',').map((x) => x.trim())));
  if (only.includes('queue')) outputs.push(await queueScenario(ctx));
  if (only.includes('quota')) outputs.push(await quotaScenario(ctx));
  if (only.includes('workers')) outputs.push(await workersScenario(ctx));
  if (only.includes('websocket')) outputs.push(await webSocketScenario(ctx));
  if (only.includes('h2')) outputs.push(await h2Scenario(ctx));
  await closeHttp();

  for (const o of outputs) writeFileSync(`${resultsDir}/${stamp}-${o.id}.json`, `${JSON.stringify(o.json, null, 1)}\n`);
  const elapsedS = Math.round((Date.now() - started.getTime()) / 1000);
  const argv = process.argv.slice(2);
  const targets = outputs.flatMap((o) => o.targets);
  const section = [
    `## ${started.toISOString().replace(/\.\d+Z$/, 'Z')}: ${quick ? 'quick smoke run (numbers are not meaningful)' : 'full run'}`,
    '',
    `- command: \`npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}\` (${elapsedS} s)`,
    ...header,
    `- load average at end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    algorithm ? `- limit algorithm in the control scenarios: \`${algorithm}\`${ctx.algorithm === null ? ' (the config schema default)' : ' (--algorithm)'}` : '',
    `- raw results: \`bench/results/${stamp}-*.json\` (not committed)`,
    '',
    '### Targets',
    '',
    table(
      ['target', 'measured', 'met'],
      targets.map((t) => [t.target, t.measured, t.met === null ? '-' : t.met ? 'yes' : '**no**']),
    ),
    '',
    ...outputs.flatMap((o) => [`### ${o.title}`, '', o.markdown, '']),
  ]
    .filter((l, i, a) => !(l === '' && a[i - 1] === ''))
    .join('\n');
  if (!existsSync(report)) {
    writeFileSync(
      report,
      '# Sluice benchmark report\n\nEach `npm run bench` appends a section (newest last). How to run and read it: README.md, "Load tests and benchmarks".\n\n',
    );
  }
  appendFileSync(report, `${section}\n`);
  ctx.log(`\nreport: ${relative(process.cwd(), report)}; results: ${relative(process.cwd(), resultsDir)}/${stamp}-*.json; ${elapsedS} s`);
  for (const t of targets) ctx.log(`  ${t.met === null ? '-' : t.met ? 'met' : 'NOT met'}  ${t.target}: ${t.measured}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

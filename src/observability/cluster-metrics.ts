/**
 * /metrics with workers > 1: one exposition for the instance, from the
 * primary's own registry and every worker's (each worker answers with
 * `registry.getMetricsAsJSON()`, one collect pass: a consistent snapshot of
 * that worker; the primary asks all of them at once for each scrape).
 * prom-client's AggregatorRegistry.aggregate combines them series by series
 * by each metric's `aggregator` (sum for counters, histograms and counts;
 * see state-gauges.ts for the gauges), so every series appears once.
 *
 * Counters stay monotonic when a worker goes away:
 * - a worker that does not answer in time (busy, stopped) is counted with
 *   its last answer;
 * - a worker that died leaves its last answer's counters and histograms in
 *   a "graveyard" that is added to every later scrape (its gauges go: what
 *   it held died with it). What it counted after its last scrape is lost,
 *   so a summed counter never goes down, it only misses those.
 *
 * One combination runs before the aggregators: the circuit breaker state
 * gauge (one-hot per route) becomes the worst worker's state, so "1 for the
 * state the breaker is in" stays true (a route is open if any worker's
 * breaker is open).
 */
import { AggregatorRegistry, Gauge, type Registry } from 'prom-client';
import { CounterFamily } from './families.js';
import { BREAKER_STATES } from './state-gauges.js';
import type { WorkerStatus } from './state.js';

/** One metric as Registry.getMetricsAsJSON() returns it (its `type` is a string at run time). */
export interface MetricJson {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: string;
  readonly values: readonly { readonly value: number; readonly labels: Readonly<Record<string, string | number>>; readonly metricName?: string }[];
}

/** A registry's metrics (one worker's answer). */
export type RegistryJson = readonly MetricJson[];

const BREAKER_STATE = 'sluice_circuit_breaker_state';

function seriesKey(v: MetricJson['values'][number]): string {
  const labels = Object.keys(v.labels)
    .sort()
    .map((k) => `${k}=${String(v.labels[k])}`)
    .join(',');
  return `${v.metricName ?? ''}{${labels}}`;
}

/** Counters and histograms summed series by series (what a dead worker leaves behind). */
function sumCumulative(into: Map<string, { meta: MetricJson; values: Map<string, MetricJson['values'][number]> }>, reg: RegistryJson): void {
  for (const m of reg) {
    if (m.type !== 'counter' && m.type !== 'histogram') continue;
    let entry = into.get(m.name);
    if (entry === undefined) {
      entry = { meta: m, values: new Map() };
      into.set(m.name, entry);
    }
    for (const v of m.values) {
      const key = seriesKey(v);
      const had = entry.values.get(key);
      entry.values.set(key, { ...v, value: (had?.value ?? 0) + v.value });
    }
  }
}

/** The breaker state gauge of every registry → one metric: per route, 1 for the worst state any worker is in. */
function worstBreakerState(regs: readonly RegistryJson[]): MetricJson | undefined {
  let meta: MetricJson | undefined;
  const worst = new Map<string, number>();
  for (const reg of regs) {
    for (const m of reg) {
      if (m.name !== BREAKER_STATE) continue;
      meta ??= m;
      for (const v of m.values) {
        if (v.value !== 1) continue;
        const route = String(v.labels['route']);
        const rank = BREAKER_STATES.indexOf(String(v.labels['state']) as (typeof BREAKER_STATES)[number]);
        worst.set(route, Math.max(worst.get(route) ?? 0, rank));
      }
    }
  }
  if (meta === undefined) return undefined;
  const values = [...worst].flatMap(([route, rank]) => BREAKER_STATES.map((state, i) => ({ labels: { route, state }, value: i === rank ? 1 : 0 })));
  return { ...meta, aggregator: 'first', values };
}

export class ClusterMetrics {
  /** Each live worker's last answer, by worker key (its pid). */
  private readonly last = new Map<number, RegistryJson>();
  private readonly graveyard = new Map<string, { meta: MetricJson; values: Map<string, MetricJson['values'][number]> }>();

  constructor(private readonly own: Registry) {}

  get contentType(): string {
    return this.own.contentType;
  }

  /**
   * The exposition of this scrape. `answers`: every live worker's answer to
   * this scrape by key, null when it did not answer in time (its last one
   * is used).
   */
  async render(answers: ReadonlyMap<number, RegistryJson | null>): Promise<string> {
    const regs: RegistryJson[] = [await (this.own.getMetricsAsJSON() as unknown as Promise<RegistryJson>)];
    for (const [key, answer] of answers) {
      if (answer !== null) this.last.set(key, answer);
      const reg = answer ?? this.last.get(key);
      if (reg !== undefined) regs.push(reg);
    }
    regs.push(this.graveyardJson());
    const breaker = worstBreakerState(regs);
    const rest = regs.map((reg) => reg.filter((m) => m.name !== BREAKER_STATE));
    if (breaker !== undefined) rest.push([breaker]);
    return AggregatorRegistry.aggregate(rest as object[]).metrics();
  }

  /** A worker is gone: its counters and histograms (as last scraped) stay in every later sum. */
  retire(key: number): void {
    const reg = this.last.get(key);
    this.last.delete(key);
    if (reg !== undefined) sumCumulative(this.graveyard, reg);
  }

  private graveyardJson(): RegistryJson {
    return [...this.graveyard.values()].map(({ meta, values }) => ({ ...meta, values: [...values.values()] }));
  }
}

const WORKER_STATUSES: readonly WorkerStatus[] = ['starting', 'ready', 'down', 'draining'];

/**
 * The primary's own series about its workers: sluice_workers{state} (how many
 * are in each state now) and sluice_worker_deaths_total. Returns the
 * function that counts a death.
 */
export function registerWorkerMetrics(r: Registry, statuses: () => readonly WorkerStatus[]): { died(): void } {
  new Gauge({
    name: 'sluice_workers',
    help: 'Worker processes serving the proxy port, by state (starting, ready, down: dead and waiting for its replacement, draining); workers > 1 only.',
    labelNames: ['state'],
    registers: [r],
    collect() {
      const now = statuses();
      for (const s of WORKER_STATUSES) this.set({ state: s }, now.filter((x) => x === s).length);
    },
  });
  const deaths = new CounterFamily('sluice_worker_deaths_total', 'Worker processes that exited unexpectedly (each is replaced after a backoff); workers > 1 only.', []);
  const cell = deaths.cell();
  r.registerMetric(deaths.asMetric());
  return { died: () => void cell.value++ };
}

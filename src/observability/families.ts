/**
 * Counter and histogram families whose hot path is a plain field update.
 *
 * Why not prom-client's Counter/Histogram: their `labels(...)` children still
 * hash the label object on every `inc`/`observe` (prom-client 15), and the
 * proxy counts several things per request. Here a child ("cell") is looked
 * up once, when a route is bound, and the request path only does `cell.value++`
 * or `hist.observe(v)` (a short linear scan over the bucket bounds).
 *
 * Both classes implement the metric contract prom-client's Registry reads
 * (`name`, `help`, `type`, `get()`, `reset()`), so they are registered on and
 * rendered by a normal prom-client Registry next to its own metrics, with
 * prom-client's escaping and exposition format.
 *
 * Cells are created on first `cell(...)` for a label set and then kept for
 * the life of the family: counters are monotonic, so a route that disappears
 * in a reload keeps its last totals rather than resetting (a reset would look
 * like a counter restart to `rate()`), and a route that comes back continues.
 * The number of cells is bounded by the configured routes x lanes x the fixed
 * label values each family uses.
 */
import type { Metric } from 'prom-client';

type Labels = Readonly<Record<string, string>>;

interface ExportedValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface MetricObject {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: ExportedValue[];
  aggregator: 'sum';
}

export interface CounterCell {
  value: number;
}

abstract class Family<C> {
  /** Called at scrape time before the cells are read: lets a family mirror a plain counter kept elsewhere. */
  collect: (() => void) | undefined = undefined;

  /** Cells by their label values joined with \u0000, in creation order (stable output). */
  protected readonly cells = new Map<string, { labels: Labels; cell: C }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  protected abstract create(): C;

  /** The cell for these label values (in `labelNames` order), created on first use. Not for the hot path. */
  cell(...values: string[]): C {
    if (values.length !== this.labelNames.length) {
      throw new RangeError(`${this.name}: expected ${this.labelNames.length} label values, got ${values.length}`);
    }
    const key = values.join('\u0000');
    let entry = this.cells.get(key);
    if (entry === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i] as string));
      entry = { labels, cell: this.create() };
      this.cells.set(key, entry);
    }
    return entry.cell;
  }

  /** The cell for these label values if it exists. */
  peek(...values: string[]): C | undefined {
    return this.cells.get(values.join('\u0000'))?.cell;
  }

  /** Registers on a prom-client Registry (which only reads the metric contract implemented here). */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}

export class CounterFamily extends Family<CounterCell> {
  readonly type = 'counter' as const;

  protected create(): CounterCell {
    return { value: 0 };
  }

  async get(): Promise<MetricObject> {
    this.collect?.();
    const values: ExportedValue[] = [];
    for (const { labels, cell } of this.cells.values()) values.push({ value: cell.value, labels: { ...labels } });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' };
  }

  /** Registry.resetMetrics(): counters restart from zero (the cells stay bound). */
  reset(): void {
    for (const { cell } of this.cells.values()) cell.value = 0;
  }
}

/** One histogram child: per-bucket counts (not cumulative), count and sum. */
export class HistogramCell {
  readonly counts: Float64Array;
  count = 0;
  sum = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(v: number): void {
    // NaN would poison the sum forever; a negative duration is a clock bug upstream of us.
    if (!(v >= 0)) return;
    this.count++;
    this.sum += v;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= (b[i] as number)) {
        this.counts[i] = (this.counts[i] as number) + 1;
        return;
      }
    }
  }
}

export class HistogramFamily extends Family<HistogramCell> {
  readonly type = 'histogram' as const;
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    const sorted = [...buckets].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b === sorted[i - 1]))) {
      throw new RangeError(`${name}: buckets must be distinct finite numbers`);
    }
    this.buckets = Object.freeze(sorted);
  }

  protected create(): HistogramCell {
    return new HistogramCell(this.buckets);
  }

  async get(): Promise<MetricObject> {
    this.collect?.();
    const values: ExportedValue[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const { labels, cell } of this.cells.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        cumulative += cell.counts[i] as number;
        values.push({ metricName: bucketName, labels: { ...labels, le: this.buckets[i] as number }, value: cumulative });
      }
      values.push({ metricName: bucketName, labels: { ...labels, le: '+Inf' }, value: cell.count });
      values.push({ metricName: `${this.name}_sum`, labels: { ...labels }, value: cell.sum });
      values.push({ metricName: `${this.name}_count`, labels: { ...labels }, value: cell.count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' };
  }

  reset(): void {
    for (const { cell } of this.cells.values()) {
      cell.counts.fill(0);
      cell.count = 0;
      cell.sum = 0;
    }
  }
}

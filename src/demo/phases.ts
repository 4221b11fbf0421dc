/**
 * The demo's phases and its bookkeeping: what a setup is (./compare.ts runs
 * it), which phase a moment falls in, and what every request's fate adds up
 * to per phase and lane — ok %, refused % (429/503 answered at once with
 * Retry-After), gave-up % (no answer within the client's timeout), p99 of the
 * ok answers, useful/s (answers per second that reached a client still
 * waiting) — by the phase in which the request arrived; and per phase the
 * upstream's work: what it served per second and which share of it reached
 * a waiting client (the rest was done for a client that had already left).
 */
import type { RequestResult } from './load.js';

export interface Phase {
  readonly name: string;
  readonly seconds: number;
  /** Offered load as a multiple of the upstream's starting capacity (workers / service time). */
  readonly load: number;
  /** The service time as a multiple of the starting one (the workers stay). */
  readonly serviceFactor: number;
}

export interface DemoSetup {
  readonly workers: number;
  readonly serviceMs: number;
  /** Share of the offered load in the interactive lane; the rest is batch. */
  readonly interactiveShare: number;
  readonly clientTimeoutMs: number;
  readonly phases: readonly Phase[];
  /** Sluice's limit algorithm; null: the config's default. */
  readonly algorithm: string | null;
}

export const DEMO_PHASES: readonly Phase[] = [
  { name: 'normal', seconds: 4, load: 0.5, serviceFactor: 1 },
  { name: 'overload', seconds: 10, load: 3, serviceFactor: 1 },
  { name: 'slowdown', seconds: 10, load: 0.5, serviceFactor: 3 },
];

export const LANES = ['interactive', 'batch'] as const;
export type Lane = (typeof LANES)[number];
export type TargetName = 'bare' | 'sluice';

export interface LaneResult {
  readonly offered: number;
  readonly okPct: number;
  readonly refusedPct: number;
  readonly gaveUpPct: number;
  /** ms; null when nothing was ok. */
  readonly p99OkMs: number | null;
  readonly usefulPerSecond: number;
}

export interface PhaseResult {
  readonly phase: Phase;
  readonly lanes: Readonly<Record<Lane, LaneResult>>;
  readonly upstream: { readonly servedPerSecond: number; readonly usefulPct: number | null };
}

export interface TargetResult {
  readonly target: TargetName;
  /** What the target was: "bare @fastify/http-proxy", "sluice, limit little starting at 16 (2..64)". */
  readonly description: string;
  readonly phases: readonly PhaseResult[];
}

/** The upstream's starting capacity in requests per second. */
export function capacityOf(setup: DemoSetup): number {
  return (setup.workers * 1000) / setup.serviceMs;
}

/** Which phase a time (ms since the run started) falls in; the last one after the end. */
export function phaseAt(setup: DemoSetup, ms: number): number {
  let end = 0;
  for (let i = 0; i < setup.phases.length; i++) {
    end += (setup.phases[i] as Phase).seconds * 1000;
    if (ms < end) return i;
  }
  return setup.phases.length - 1;
}

/** The requests of one lane in one phase. */
class LaneTally {
  offered = 0;
  ok = 0;
  refused = 0;
  gaveUp = 0;
  readonly okLatency: number[] = [];

  add(r: RequestResult): void {
    this.offered++;
    if (r.status !== null && r.status >= 200 && r.status < 300) {
      this.ok++;
      this.okLatency.push(r.latencyMs as number);
    } else if (r.status === 429 || r.status === 503) this.refused++;
    else if (r.kind === 'timeout') this.gaveUp++;
  }

  result(seconds: number, usefulInPhase: number): LaneResult {
    const pct = (n: number) => (this.offered === 0 ? 0 : Math.round((1000 * n) / this.offered) / 10);
    const sorted = [...this.okLatency].sort((a, b) => a - b);
    const p99 = sorted.length === 0 ? null : Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(0.99 * sorted.length) - 1)] as number);
    return { offered: this.offered, okPct: pct(this.ok), refusedPct: pct(this.refused), gaveUpPct: pct(this.gaveUp), p99OkMs: p99, usefulPerSecond: Math.round((10 * usefulInPhase) / seconds) / 10 };
  }
}

/** Every arrival's fate, by phase and lane; and the ok answers by the phase in which they arrived at the client. */
export class Tally {
  private readonly lanes: Map<Lane, LaneTally>[];
  /** ok answers per phase and lane, by the time they reached the client. */
  private readonly useful: Map<Lane, number>[];

  constructor(private readonly setup: DemoSetup) {
    this.lanes = setup.phases.map(() => new Map(LANES.map((l) => [l, new LaneTally()])));
    this.useful = setup.phases.map(() => new Map(LANES.map((l) => [l, 0])));
  }

  readonly add = (r: RequestResult): void => {
    const lane = r.stream as Lane;
    this.lanes[phaseAt(this.setup, r.atMs)]?.get(lane)?.add(r);
    if (r.status !== null && r.status >= 200 && r.status < 300) {
      const doneAt = r.atMs + (r.latencyMs as number);
      const total = this.setup.phases.reduce((n, p) => n + p.seconds * 1000, 0);
      if (doneAt < total) {
        const u = this.useful[phaseAt(this.setup, doneAt)] as Map<Lane, number>;
        u.set(lane, (u.get(lane) as number) + 1);
      }
    }
  };

  /** `served[i]`: what the upstream served during phase i. */
  results(served: readonly number[]): PhaseResult[] {
    return this.setup.phases.map((phase, i) => {
      const useful = this.useful[i] as Map<Lane, number>;
      const lanes = {} as Record<Lane, LaneResult>;
      for (const l of LANES) lanes[l] = (this.lanes[i]?.get(l) as LaneTally).result(phase.seconds, useful.get(l) as number);
      const usefulTotal = LANES.reduce((n, l) => n + (useful.get(l) as number), 0);
      const s = served[i] ?? 0;
      return {
        phase,
        lanes,
        upstream: { servedPerSecond: Math.round((10 * s) / phase.seconds) / 10, usefulPct: s === 0 ? null : Math.round((1000 * Math.min(s, usefulTotal)) / s) / 10 },
      };
    });
  }
}


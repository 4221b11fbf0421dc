/**
 * The primary process of workers > 1: it owns the admin listener, the config
 * (load, validate, reload), signals and the drain; its workers
 * (./workers.ts) serve the proxy port. It never handles a proxied request
 * itself: node:cluster accepts each connection here and hands it to the
 * next worker (round robin), after which the worker owns it.
 *
 *   /metrics      every worker's registry and the primary's own, combined
 *                 (observability/cluster-metrics.ts), one ask per scrape
 *   /admin/state  the routes summed over the workers, and each worker
 *   /readyz       fails while draining, while no worker serves, or while any
 *                 worker is backlogged (observability/cluster-view.ts)
 *   live page     its history samples the summed view once a second
 *
 * Reload, everywhere or nowhere: the primary reads and validates the file
 * once; every serving worker prepares its share (builds the next runtime,
 * changes nothing); only when all of them could within PREPARE_TIMEOUT_MS
 * does the primary make it the config in force and tell them to commit.
 * Otherwise each is told to abort and the running config stays everywhere.
 * A worker that died meanwhile is no obstacle: its replacement starts with
 * the config in force; one that started during the reload catches up when it
 * is ready (onStale). Reloads run one at a time.
 *
 * Drain (SIGTERM): readiness fails at once here; every worker drains as one
 * process would (readiness grace, close, wait, expire) and exits; then the
 * admin listener closes, last.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../../config/types.js';
import { buildAdmin } from '../../observability/admin.js';
import { ClusterMetrics, registerWorkerMetrics, type RegistryJson } from '../../observability/cluster-metrics.js';
import { ClusterTotals, clusterNotReady, sumListeners, sumRoutes, type WorkerSample } from '../../observability/cluster-view.js';
import type { Snapshot } from '../../observability/history.js';
import { createLogger } from '../../observability/logger.js';
import { Metrics } from '../../observability/metrics.js';
import type { NotReady } from '../../observability/readiness.js';
import { InstanceInfo, type AdminState, type ReloadResult, type WorkerState } from '../../observability/state.js';
import type { DrainReport } from '../drain.js';
import { listenOn } from '../listen.js';
import { readReload, reloaded, type ReadReload } from '../reload.js';
import { WorkerSet, type AskResult } from './workers.js';

/** How long a worker may take to answer a sample (state, readiness), a scrape, a prepare, a commit. */
const SAMPLE_TIMEOUT_MS = 1000;
const METRICS_TIMEOUT_MS = 2000;
const PREPARE_TIMEOUT_MS = 5000;
const COMMIT_TIMEOUT_MS = 5000;
/** On top of the workers' own drain (grace + drain timeout + their flush) before stragglers are killed. */
const DRAIN_MARGIN_MS = 5000;

export interface PrimaryOptions {
  /** The worker entry, dist/worker.js. */
  readonly workerEntry: string;
  /** sluice_info{version}. */
  readonly version: string;
}

/** What cli.ts runs, as it runs a one-process Sluice. */
export interface Primary {
  readonly logger: Logger;
  listen(): Promise<{ proxyUrl: string; adminUrl: string }>;
  reload(): Promise<ReloadResult>;
  drain(): Promise<DrainReport>;
}

interface Sampled {
  readonly notReady: string | NotReady | null;
  readonly state: AdminState;
  /** The history's input: the summed routes with their summed totals. */
  readonly routes: Snapshot['routes'];
}

const NO_CHANGES = { added: [], removed: [], changed: [], unchanged: [], limitReset: [] };

class PrimaryProcess implements Primary {
  readonly logger: Logger;
  private current: Config;
  private generation = 0;
  private draining = false;
  private readonly metrics: Metrics;
  private readonly clusterMetrics: ClusterMetrics;
  private readonly totals = new ClusterTotals();
  private readonly workers: WorkerSet;
  private readonly admin: FastifyInstance;
  private readonly info: InstanceInfo;
  /** Reloads (and catch-ups) run one at a time, in order. */
  private chain: Promise<unknown> = Promise.resolve();
  private drained: Promise<DrainReport> | null = null;

  constructor(
    private readonly started: Config,
    opts: PrimaryOptions,
  ) {
    this.logger = createLogger(started.log);
    this.current = started;
    this.info = new InstanceInfo({ now: () => performance.now() }, opts.version);
    this.metrics = new Metrics({ version: opts.version, routes: () => [] });
    this.clusterMetrics = new ClusterMetrics(this.metrics.registry);
    const workerMetrics = registerWorkerMetrics(this.metrics.registry, () => this.workers.views().map((v) => v.status));
    this.workers = new WorkerSet({
      count: started.workers,
      exec: opts.workerEntry,
      log: this.logger,
      current: () => ({ config: this.current, generation: this.generation }),
      onDeath: (_index, pid) => {
        workerMetrics.died();
        this.clusterMetrics.retire(pid);
        this.totals.retire(pid);
      },
      onStale: (index) => void this.serialized(() => this.catchUp(index)),
    });
    this.admin = buildAdmin({
      logger: this.logger,
      access: () => this.current.admin,
      state: async () => (await this.sample()).state,
      notReadyReason: async () => (this.draining ? 'draining' : (await this.sample()).notReady),
      metrics: { contentType: this.clusterMetrics.contentType, render: () => this.renderMetrics() },
      snapshot: async () => {
        const s = await this.sample();
        return { ready: !this.draining && s.notReady === null, draining: this.draining, notReady: s.notReady, routes: s.routes, listener: s.state.listener };
      },
      reload: () => this.reload(),
    });
  }

  async listen(): Promise<{ proxyUrl: string; adminUrl: string }> {
    const proxyUrl = await this.workers.start();
    // A ListenError (one line: listener, address, cause) if the admin port cannot open; the workers end with this process.
    const adminUrl = await listenOn(this.admin, 'admin', this.started.admin.host, this.started.admin.port);
    return { proxyUrl, adminUrl };
  }

  reload(): Promise<ReloadResult> {
    return this.serialized(async () => {
      const read = readReload(this.current.file, this.started, this.draining, this.logger);
      const result = 'result' in read ? read : await this.applyEverywhere(read, this.workers.ready());
      if (result.result === 'success') this.logger.level = this.current.log.level;
      this.metrics.configReloaded(result.result);
      this.info.reloaded(result);
      return result;
    });
  }

  drain(): Promise<DrainReport> {
    return (this.drained ??= this.drainAll());
  }

  // ------------------------------------------------------------ the view

  /** One ask to every serving worker: the summed view, each worker's, readiness, the history's input. */
  private async sample(): Promise<Sampled> {
    const views = this.workers.views();
    const answers = await this.workers.askAll(this.workers.live(), { what: 'sample' }, SAMPLE_TIMEOUT_MS);
    const states: WorkerState[] = views.map((v) => {
      const a = answers.get(v.index);
      const value = a?.ok === true ? a.value : null;
      const status = v.status !== 'draining' && a !== undefined && !a.ok ? 'unresponsive' : v.status;
      return { ...v, status, notReady: value?.notReady ?? null, routes: value?.state.routes ?? [] };
    });
    const byPid = new Map<number, WorkerSample['totals'] | null>();
    for (const v of views) {
      const a = answers.get(v.index);
      if (v.pid !== null && a !== undefined && this.workers.alive(v.pid)) byPid.set(v.pid, a.ok ? a.value.totals : null);
    }
    const summed = this.totals.sum(byPid);
    const routes = sumRoutes(states.map((w) => w.routes));
    const listeners = [...answers.values()].flatMap((a) => (a.ok ? [a.value.state.listener] : []));
    return {
      notReady: clusterNotReady(this.draining, states),
      state: { ...this.info.view(), ready: !this.draining, draining: this.draining, listener: sumListeners(this.current, listeners), routes, workers: states },
      routes: routes.map((view) => ({ view, totals: summed[view.name] })),
    };
  }

  private async renderMetrics(): Promise<string> {
    const live = new Set(this.workers.live());
    const views = this.workers.views().filter((v) => live.has(v.index) && v.pid !== null);
    const answers = await this.workers.askAll(views.map((v) => v.index), { what: 'metrics' }, METRICS_TIMEOUT_MS);
    const byPid = new Map<number, RegistryJson | null>();
    for (const v of views) {
      const a = answers.get(v.index) as AskResult<RegistryJson>;
      // A worker that died during the scrape is in the graveyard already: its answer is not added again.
      if (this.workers.alive(v.pid as number)) byPid.set(v.pid as number, a.ok ? a.value : null);
    }
    return this.clusterMetrics.render(byPid);
  }

  // ------------------------------------------------------------ reload

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Prepare in every worker of `indexes`; commit only if all could, else abort everywhere. */
  private async applyEverywhere(read: ReadReload, indexes: readonly number[]): Promise<ReloadResult> {
    const { workers, logger: log } = this;
    const prepared = await workers.askAll(indexes, { what: 'prepare', config: read.config }, PREPARE_TIMEOUT_MS);
    // A worker that is gone is no obstacle (its replacement starts with the config in force).
    const failed = [...prepared].filter(([, r]) => !r.ok && r.kind !== 'gone');
    if (failed.length > 0) {
      await workers.askAll(indexes, { what: 'abort' }, PREPARE_TIMEOUT_MS);
      const message = failed.map(([i, r]) => `worker ${i}: ${r.ok ? '' : `${r.kind}: ${r.error}`}`).join('\n');
      log.error({ file: read.config.file, failed: message.split('\n') }, 'config reload failed in a worker; no worker switched, keeping the running config');
      return { result: 'error', reason: 'workers', file: read.config.file, message, problems: [] };
    }
    this.current = read.config;
    this.generation++;
    await this.commit(indexes);
    const first = [...prepared.values()].find((r) => r.ok);
    return reloaded(read, first?.ok === true ? first.value : NO_CHANGES, log);
  }

  /** Every prepared worker commits; one that does not cannot be left on an older config: it is replaced. */
  private async commit(indexes: readonly number[]): Promise<void> {
    const committed = await this.workers.askAll(indexes, { what: 'commit' }, COMMIT_TIMEOUT_MS);
    for (const [i, r] of committed) {
      if (r.ok) this.workers.committed(i, this.generation);
      else if (r.kind !== 'gone') {
        this.logger.error({ worker: i, error: r.error }, 'worker did not commit the reload; replacing it');
        this.workers.kill(i);
      }
    }
  }

  /** A worker came up with an older config (a reload ran while it started): it takes the one in force, or is replaced. */
  private async catchUp(index: number): Promise<void> {
    if (this.draining || this.workers.generationOf(index) === this.generation) return;
    const prepared = await this.workers.ask(index, { what: 'prepare', config: this.current }, PREPARE_TIMEOUT_MS);
    if (prepared.ok) await this.commit([index]);
    else if (prepared.kind !== 'gone') {
      this.logger.error({ worker: index, error: prepared.error }, 'worker could not take the config in force; replacing it');
      this.workers.kill(index);
    }
  }

  // ------------------------------------------------------------ drain

  private async drainAll(): Promise<DrainReport> {
    const t0 = performance.now();
    this.draining = true;
    const { readinessGraceMs, drainTimeoutMs } = this.current.shutdown;
    this.logger.info({ readinessGraceMs, drainTimeoutMs, workers: this.current.workers }, 'draining: readiness fails; every worker drains');
    const reports = await this.workers.drain(readinessGraceMs + drainTimeoutMs + DRAIN_MARGIN_MS);
    await this.admin.close();
    const report: DrainReport = {
      refusedQueued: reports.reduce((n, r) => n + r.refusedQueued, 0),
      cut: reports.reduce((n, r) => n + r.cut, 0),
      durationMs: Math.round(performance.now() - t0),
    };
    this.logger.info({ ...report, workers: reports.length }, 'drained');
    return report;
  }
}

export function startPrimary(started: Config, opts: PrimaryOptions): Primary {
  return new PrimaryProcess(started, opts);
}

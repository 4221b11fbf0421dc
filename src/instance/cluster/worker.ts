/**
 * The worker's side of workers > 1 (the entry is src/worker.ts): waits for
 * the primary's start (the validated config and its place among the
 * workers), builds its share of the instance, serves the proxy port (the
 * primary holds the listening socket and hands connections round-robin) and
 * answers the primary's asks: its state and totals, its metrics, and a
 * reload in two steps (prepare, then commit or abort).
 *
 * Signals are the primary's business: SIGINT (a terminal's Ctrl-C reaches
 * the whole process group), SIGTERM and SIGHUP are ignored here; the
 * primary drains and reloads every worker itself. A worker whose primary is
 * gone exits (node:cluster ends a worker whose IPC channel closes).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../../config/types.js';
import type { WorkerShare } from '../../core/split.js';
import type { WorkerSample } from '../../observability/cluster-view.js';
import type { RegistryJson } from '../../observability/cluster-metrics.js';
import type { Metrics } from '../../observability/metrics.js';
import type { NotReady } from '../../observability/readiness.js';
import type { AdminState } from '../../observability/state.js';
import type { DrainReport } from '../drain.js';
import { listenOn } from '../listen.js';
import type { PreparedReload } from '../reload.js';
import { isOurs, type Answers, type Ask, type FromWorker, type ToWorker } from './protocol.js';

/** What the worker side needs of a built instance (app.ts's Sluice has it). */
export interface WorkerApp {
  readonly proxy: FastifyInstance;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'registry' | 'routeTotals'>;
  state(): AdminState;
  notReady(): string | NotReady | null;
  config(): Config;
  prepare(config: Config): PreparedReload;
  drain(): Promise<DrainReport>;
}

export type BuildWorker = (config: Config, share: WorkerShare) => Promise<WorkerApp>;

function send(msg: FromWorker, then?: () => void): void {
  if (process.send === undefined || !process.connected) {
    then?.();
    return;
  }
  process.send(msg, undefined, {}, () => then?.());
}

function firstStart(): Promise<Extract<ToWorker, { type: 'sluice:start' }>> {
  return new Promise((resolve) => {
    const on = (msg: unknown) => {
      if (!isOurs<ToWorker>(msg) || msg.type !== 'sluice:start') return;
      process.off('message', on);
      resolve(msg);
    };
    process.on('message', on);
    send({ type: 'sluice:hello' });
  });
}

/** Answers the primary's asks for one running instance. */
class Answerer {
  private prepared: { readonly id: number; readonly reload: PreparedReload } | null = null;

  constructor(private readonly app: WorkerApp) {}

  async answer(id: number, ask: Ask): Promise<Answers[Ask['what']]> {
    switch (ask.what) {
      case 'sample':
        return this.sample();
      case 'metrics':
        return (await this.app.metrics.registry.getMetricsAsJSON()) as unknown as RegistryJson;
      case 'prepare': {
        // A newer prepare replaces one that was never committed.
        await this.prepared?.reload.abort();
        this.prepared = null;
        const reload = this.app.prepare(ask.config);
        this.prepared = { id, reload };
        return reload.changes;
      }
      case 'commit': {
        const p = this.takePrepared();
        p.commit();
        this.app.logger.debug({ file: this.app.config().file }, 'config reloaded in this worker');
        return null;
      }
      case 'abort': {
        const p = this.prepared;
        this.prepared = null;
        await p?.reload.abort();
        return null;
      }
    }
  }

  private takePrepared(): PreparedReload {
    const p = this.prepared;
    if (p === null) throw new Error('commit without a prepared reload');
    this.prepared = null;
    return p.reload;
  }

  private sample(): WorkerSample {
    const state = this.app.state();
    const totals: WorkerSample['totals'] = Object.fromEntries(
      state.routes.map((r) => [r.name, this.app.metrics.routeTotals(r.name, r.lanes.map((l) => l.name))]),
    );
    return { state, notReady: this.app.notReady(), totals };
  }
}

function serve(app: WorkerApp): void {
  const answerer = new Answerer(app);
  let draining = false;
  process.on('message', (msg: unknown) => {
    if (!isOurs<ToWorker>(msg)) return;
    if (msg.type === 'sluice:ask') {
      const { id } = msg;
      answerer.answer(id, msg).then(
        (value) => send({ type: 'sluice:reply', id, ok: true, value }),
        (err: unknown) => send({ type: 'sluice:reply', id, ok: false, error: err instanceof Error ? err.message : String(err) }),
      );
    } else if (msg.type === 'sluice:drain' && !draining) {
      draining = true;
      app.drain().then(
        (report) => send({ type: 'sluice:drained', report }, () => process.exit(0)),
        (err: unknown) => {
          app.logger.error({ err }, 'worker drain failed');
          process.exit(1);
        },
      );
    }
  });
}

/** The worker process's main: start, serve, answer until drained. */
export async function serveWorker(build: BuildWorker): Promise<void> {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
  const start = await firstStart();
  let app: WorkerApp;
  let proxyUrl: string;
  try {
    app = await build(start.config, start.share);
    proxyUrl = await listenOn(app.proxy, 'proxy', start.config.listen.host, start.config.listen.port, start.config.listen.tls === undefined ? 'http' : 'https');
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    send({ type: 'sluice:failed', message }, () => process.exit(1));
    return;
  }
  serve(app);
  send({ type: 'sluice:ready', proxyUrl });
}

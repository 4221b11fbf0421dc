/**
 * Builds a Sluice instance from a loaded config: the proxy listener
 * (proxy/listener.ts) and the admin listener (observability/admin.ts),
 * wired to one runtime (instance/runtimes.ts). No listening happens here,
 * so tests and the CLI decide addresses and lifecycle.
 *
 * Operations (../shared/DESIGN.md §8): reload() (instance/reload.ts),
 * drain() the graceful shutdown and close() (instance/drain.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/types.js';
import { systemClock, type Clock, type Random } from './core/clock.js';
import { WHOLE, workerConfig, type WorkerShare } from './core/split.js';
import { closeNow, drain, type DrainReport } from './instance/drain.js';
import { listenOn } from './instance/listen.js';
import { prepareReload, reloadConfig, type PreparedReload } from './instance/reload.js';
import { Runtimes } from './instance/runtimes.js';
import { AccessLog } from './observability/access-log.js';
import { buildAdmin } from './observability/admin.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { backlogVerdict, type NotReady } from './observability/readiness.js';
import { SampledLog } from './observability/sampled-log.js';
import { InstanceInfo, routeState, type AdminState, type ReloadResult, type RouteState } from './observability/state.js';
import { teeEvents, type ProxyEvents } from './proxy/events.js';
import type { Lifecycle } from './proxy/lifecycle.js';
import type { ListenerView } from './proxy/front.js';
import { buildProxyListener } from './proxy/listener.js';
import { createRuntime, type RuntimeDeps } from './proxy/runtime.js';
import { WebSockets } from './proxy/websocket.js';
import { sluiceVersion } from './version.js';

export type { DrainReport } from './instance/drain.js';
export type { ReloadResult } from './observability/state.js';

export interface AppDeps {
  readonly clock?: Clock;
  readonly random?: Random;
  readonly logger?: Logger;
  readonly events?: ProxyEvents;
  readonly createLimit?: RuntimeDeps['createLimit'];
  /** Called after every reload attempt (sluice_config_reloads_total{result} counts them already). */
  readonly onReload?: (result: ReloadResult) => void;
  /**
   * This process's place among the workers (instance/cluster/): it serves
   * its share of every split bound (core/split.ts) and leaves sluice_info and
   * the reload metrics to the primary. Default: the whole (one process).
   */
  readonly share?: WorkerShare;
}

export interface Sluice {
  readonly proxy: FastifyInstance;
  readonly admin: FastifyInstance;
  readonly logger: Logger;
  /** This instance's metrics (its own prom-client Registry); served on the admin listener at /metrics. */
  readonly metrics: Metrics;
  /** Starts both listeners (addresses from config unless overridden); returns their base URLs. Throws ListenError (instance/listen.ts). */
  listen(override?: { proxyPort?: number; adminPort?: number }): Promise<{ proxyUrl: string; adminUrl: string }>;
  state(): AdminState;
  /** Why /readyz fails (draining, backlog), or null when ready. */
  notReady(): string | NotReady | null;
  /** The config in force (the last one loaded successfully): this process's share of it in a worker. */
  config(): Config;
  /** Re-reads the config file (default: the one in force) and swaps it in if valid; never throws for a bad file. */
  reload(file?: string): ReloadResult;
  /**
   * A reload's first step for a config validated elsewhere (the primary):
   * builds this process's share of `config` and changes nothing until
   * commit(). Throws when it cannot be built.
   */
  prepare(config: Config): PreparedReload;
  /** The graceful shutdown (SIGTERM). Resolves once everything is closed; calling it again returns the same drain. */
  drain(): Promise<DrainReport>;
  /** Closes at once: no readiness grace; requests in flight finish first. After drain(), waits for it. */
  close(): Promise<void>;
}

/** Both listeners, proxy first; never half-started: the proxy port is not left open without its admin. */
async function listenBoth(proxy: FastifyInstance, admin: FastifyInstance, config: Config, override: { proxyPort?: number; adminPort?: number }) {
  const proxyUrl = await listenOn(proxy, 'proxy', config.listen.host, override.proxyPort ?? config.listen.port, config.listen.tls === undefined ? 'http' : 'https');
  try {
    const adminUrl = await listenOn(admin, 'admin', config.admin.host, override.adminPort ?? config.admin.port);
    return { proxyUrl, adminUrl };
  } catch (err) {
    await proxy.close();
    throw err;
  }
}

/** Breaker state changes and rate store failures are logged and reported. */
function runtimeDeps(clock: Clock, random: Random, deps: AppDeps, logger: Logger, events: ProxyEvents, metrics: Metrics): RuntimeDeps {
  const rateStoreLog = new SampledLog(clock, 1);
  return {
    clock,
    random,
    createLimit: deps.createLimit,
    onRateStoreError(kind, err) {
      metrics.rateStoreError(kind);
      const suppressed = rateStoreLog.admit();
      if (suppressed >= 0) {
        logger.warn({ kind, err: (err as Error | undefined)?.message, suppressed }, 'client rate store failed: the local bucket decides (fail open)');
      }
    },
    onBreakerState(route, state) {
      logger[state === 'closed' ? 'info' : 'warn']({ route: route.cfg.name, state }, 'circuit breaker state changed');
      events.onBreakerState?.(route, state);
    },
  };
}

function loggerFor(config: Config, share: WorkerShare): Logger {
  const logger = createLogger(config.log);
  // A worker's lines say which worker wrote them (the primary's do not carry `worker`).
  return share.count > 1 ? logger.child({ worker: share.index }) : logger;
}

/** The instance's metrics; a worker leaves the per-instance series (sluice_info, reloads) to its primary. */
function instanceMetrics(routes: () => readonly RouteState[], refusalLog: SampledLog, runtimes: () => Runtimes, share: WorkerShare, listener: () => ListenerView): Metrics {
  return new Metrics({
    version: sluiceVersion(),
    routes,
    suppressedLogLines: () => refusalLog.suppressedTotal,
    rateStoreUp: () => {
      const s = runtimes().current.clientRate?.stats() ?? null;
      return s === null ? null : s.state === 'up';
    },
    perInstance: share.count === 1,
    listener,
  });
}

export async function buildApp(whole: Config, deps: AppDeps = {}): Promise<Sluice> {
  const share = deps.share ?? WHOLE;
  const config = workerConfig(whole, share);
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const logger = deps.logger ?? loggerFor(config, share);
  const lifecycle: Lifecycle = { phase: 'serving' };
  const draining = () => lifecycle.phase !== 'serving';
  const refusalLog = new SampledLog(clock, 20);
  const info = new InstanceInfo(clock, sluiceVersion());
  const webSockets = new WebSockets();
  // The metrics read the state at scrape time only (the runtimes exist by then).
  const state = (): AdminState => ({
    ...info.view(),
    ready: !draining(),
    draining: draining(),
    listener: front.view(),
    routes: runtimes.current.routes.map((r) => routeState(r, (route, lane) => metrics.laneTotals(route, lane), (cfg) => webSockets.view(cfg))),
  });
  const metrics = instanceMetrics(() => state().routes, refusalLog, () => runtimes, share, () => front.view());
  // Metrics hear everything; the access log only its records.
  const observed = teeEvents(metrics, new AccessLog(logger));
  const events = deps.events ? teeEvents(observed, deps.events) : observed;
  const rtDeps = runtimeDeps(clock, random, deps, logger, events, metrics);
  const runtimes = new Runtimes(createRuntime(config, rtDeps), clock, logger);
  metrics.bindRoutes(runtimes.current.routes);

  const { proxy, front } = await buildProxyListener({
    listen: config.listen,
    server: config.server,
    runtime: () => runtimes.current,
    lifecycle,
    clock,
    random,
    events,
    log: logger,
    refusalLog,
    shadowLog: new SampledLog(clock, 20),
    webSockets,
  });
  const reloadDeps = { runtimes, runtimeDeps: rtDeps, started: config, log: logger, ownLogger: deps.logger === undefined, draining, listener: front };
  function reload(file = runtimes.current.config.file): ReloadResult {
    const result = reloadConfig(file, reloadDeps);
    if (result.result === 'success') metrics.bindRoutes(runtimes.current.routes);
    metrics.configReloaded(result.result);
    info.reloaded(result);
    deps.onReload?.(result);
    return result;
  }
  const notReady = () => (draining() ? 'draining' : backlogVerdict(state().routes, runtimes.current.config.readiness.maxBacklogSeconds));
  const admin = buildAdmin({
    logger,
    state,
    notReadyReason: notReady,
    metrics,
    access: () => runtimes.current.config.admin,
    reload: () => reload(),
  });
  const drainDeps = { runtimes, lifecycle, clock, log: logger, proxy, admin, webSockets };
  let drained: Promise<DrainReport> | null = null;

  return {
    proxy,
    admin,
    logger,
    metrics,
    listen: (override = {}) => listenBoth(proxy, admin, config, override),
    state,
    notReady,
    config: () => runtimes.current.config,
    reload,
    prepare(next) {
      // As reload() does: the metrics follow the routes in force.
      const p = prepareReload(workerConfig(next, share), reloadDeps);
      return { ...p, commit: () => (p.commit(), metrics.bindRoutes(runtimes.current.routes)) };
    },
    drain: () => (drained ??= drain(drainDeps)),
    close: () => (drained !== null ? drained.then(() => undefined) : closeNow(drainDeps)),
  };
}

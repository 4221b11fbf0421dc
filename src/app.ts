/**
 * Builds a Sluice instance from a loaded config: the proxy listener and the
 * admin listener, wired to one runtime. No listening happens here, so tests
 * and the CLI decide addresses and lifecycle.
 *
 * Operations (../shared/DESIGN.md §8):
 * - reload(): re-reads the config file; on any problem the running config
 *   stays. Otherwise the next runtime is built from the running one
 *   (proxy/runtime.ts nextRuntime: surviving routes keep their limiter) and
 *   swapped in between two requests. Pools a reload let go close once no
 *   request that may still use them remains.
 * - drain(): the graceful shutdown. Readiness fails at once; after
 *   shutdown.readinessGraceMs (load balancers notice) the listener closes;
 *   admitted and queued requests get shutdown.drainTimeoutMs to finish;
 *   then whatever is left is refused (503 draining) or cut, connections are
 *   closed, and the admin listener goes last.
 */
import type { AddressInfo } from 'node:net';
import fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { ConfigError, formatProblems, loadConfig } from './config/load.js';
import type { Config, ConfigProblem } from './config/types.js';
import { systemClock, type Clock, type Random } from './core/clock.js';
import { buildAdmin, type AdminState, type RouteState } from './observability/admin.js';
import { createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { backlogSeconds, backlogVerdict } from './observability/readiness.js';
import { SampledLog } from './observability/sampled-log.js';
import { teeEvents, type ProxyEvents } from './proxy/events.js';
import { forwardPlugin } from './proxy/forward.js';
import { admittedRequestId, frontServer } from './proxy/front.js';
import type { Lifecycle } from './proxy/lifecycle.js';
import { Answers } from './proxy/responses.js';
import {
  closeRuntime,
  createRuntime,
  nextRuntime,
  type Retired,
  type RouteChanges,
  type RouteRuntime,
  type Runtime,
  type RuntimeDeps,
} from './proxy/runtime.js';
import { sluiceVersion } from './version.js';

export interface AppDeps {
  readonly clock?: Clock;
  readonly random?: Random;
  readonly logger?: Logger;
  readonly events?: ProxyEvents;
  readonly createLimit?: RuntimeDeps['createLimit'];
  /** Called after every reload attempt (sluice_config_reloads_total{result} counts them already). */
  readonly onReload?: (result: ReloadResult) => void;
}

export type ReloadResult =
  | {
      readonly result: 'success';
      readonly file: string;
      readonly routes: RouteChanges;
      /** Changes in the file that a reload cannot apply (listener addresses, log format). */
      readonly warnings: readonly string[];
    }
  | {
      readonly result: 'error';
      /** invalid_config: the file has problems (listed); draining: the instance is shutting down. */
      readonly reason: 'invalid_config' | 'draining';
      readonly file: string;
      /** Every problem as FILE:LINE:COL: path: message, one per line. */
      readonly message: string;
      readonly problems: readonly ConfigProblem[];
    };

export interface DrainReport {
  /** Queued requests refused with 503 draining because the drain timeout passed. */
  readonly refusedQueued: number;
  /** Requests still in flight when the drain timeout passed (answered 503 draining, or cut). */
  readonly cut: number;
  readonly durationMs: number;
}

export interface Sluice {
  readonly proxy: FastifyInstance;
  readonly admin: FastifyInstance;
  readonly logger: Logger;
  /** This instance's metrics (its own prom-client Registry); served on the admin listener at /metrics. */
  readonly metrics: Metrics;
  /** Starts both listeners (addresses from config unless overridden); returns their base URLs. */
  listen(override?: { proxyPort?: number; adminPort?: number }): Promise<{ proxyUrl: string; adminUrl: string }>;
  state(): AdminState;
  /** The config in force (the last one loaded successfully). */
  config(): Config;
  /** Re-reads the config file (default: the one in force) and swaps it in if valid; never throws for a bad file. */
  reload(file?: string): ReloadResult;
  /** The graceful shutdown (SIGTERM). Resolves once everything is closed; calling it again returns the same drain. */
  drain(): Promise<DrainReport>;
  /** Closes at once: no readiness grace; requests in flight finish first. After drain(), waits for it. */
  close(): Promise<void>;
}

/** One decimal is all an operator needs; keeps /admin/state readable. */
function round1<T extends number | null>(x: T): T {
  return (x === null ? null : Math.round(x * 10) / 10) as T;
}

function urlOf(app: FastifyInstance): string {
  const a = app.server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return `http://${host}:${a.port}`;
}

function delay(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(resolve, ms));
}

/** Settings a reload cannot apply to a running process: each becomes a warning. */
function unappliable(running: Config, next: Config): string[] {
  const warnings: string[] = [];
  const addr = (l: Config['listen']) => `${l.host}:${l.port}`;
  for (const key of ['listen', 'admin'] as const) {
    if (addr(running[key]) !== addr(next[key])) {
      warnings.push(
        `${key}: listener addresses cannot change on reload; still on ${addr(running[key])} (restart to move to ${addr(next[key])})`,
      );
    }
  }
  if (running.log.pretty !== next.log.pretty) warnings.push('log.pretty: cannot change on reload (restart to apply)');
  return warnings;
}

/** Checked while a drain waits for requests to finish (and while a retired pool waits to close). */
const POLL_MS = 20;
/** After the drain, how long responses just refused or cut get to flush before connections are destroyed. */
const FLUSH_MS = 1000;

export async function buildApp(config: Config, deps: AppDeps = {}): Promise<Sluice> {
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const logger = deps.logger ?? createLogger(config.log);
  // Set below, once the metrics exist; breakers only change state while requests run.
  let events: ProxyEvents = {};
  // Likewise: the shared rate store reports failures only once requests run.
  let rateStoreError: (kind: string) => void = () => undefined;
  const rateStoreLog = new SampledLog(clock, 1);
  const runtimeDeps: RuntimeDeps = {
    clock,
    random,
    createLimit: deps.createLimit,
    onRateStoreError(kind, err) {
      rateStoreError(kind);
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
  let runtime: Runtime = createRuntime(config, runtimeDeps);
  /** The config whose listener addresses are in use. */
  const started = config;
  const lifecycle: Lifecycle = { phase: 'serving' };
  /** Routes a reload let go whose pool still serves requests admitted before it. */
  let retired: Retired[] = [];
  let sweeping = false;
  const refusalLog = new SampledLog(clock, 20);
  const metrics = new Metrics({
    version: sluiceVersion(),
    routes: () => state().routes,
    suppressedLogLines: () => refusalLog.suppressedTotal,
  });
  metrics.bindRoutes(runtime.routes);
  events = deps.events ? teeEvents(metrics, deps.events) : metrics;
  rateStoreError = (kind) => metrics.rateStoreError(kind);

  const answers = new Answers(config.server.keepAliveTimeoutMs);
  const log = logger as Logger;
  const proxy = fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Per-request info lines would cost more than admission itself; refusals and errors are logged explicitly.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'requestId' }),
    genReqId: admittedRequestId,
    // Requests admitted before the listener closed may still reach fastify while it closes.
    return503OnClosing: false,
    // The front (proxy/front.ts) is the listener: it answers parser errors, CONNECT and
    // refusals itself and passes only admitted requests on.
    serverFactory: frontServer({
      server: config.server,
      events,
      log,
      admit: {
        runtime: () => runtime,
        lifecycle,
        clock,
        random,
        events,
        log,
        refusalLog,
        shadowLog: new SampledLog(clock, 20),
        answers,
      },
    }) as never,
    clientErrorHandler: () => undefined,
  });
  await proxy.register(forwardPlugin, { runtime: () => runtime, lifecycle, clock, random, events, log, answers });

  const draining = () => lifecycle.phase !== 'serving';

  function state(): AdminState {
    const routes: RouteState[] = runtime.routes.map((r) => {
      const s = r.limiter.snapshot();
      return {
        name: r.cfg.name,
        upstream: r.cfg.upstream,
        algorithm: r.cfg.limit.algorithm,
        limit: s.limit,
        limitMin: r.cfg.limit.min,
        limitMax: r.cfg.limit.max,
        inflight: s.inflight,
        queued: s.queued,
        state: s.state,
        queueWaitP90Ms: round1(s.queueWaitP90Ms),
        rtt: { recentMs: round1(s.rtt.recentMs), baselineMs: round1(s.rtt.baselineMs) },
        completionsPerSecond: Math.round(s.completionsPerSecond * 10) / 10,
        backlogSeconds: backlogSeconds(s.queued, s.completionsPerSecond),
        circuitBreaker: r.breaker === null ? null : r.breaker.snapshot(),
        upstreamConnections: r.pool.stats.connected,
        lanes: s.lanes.map((l) => ({ ...l, ...metrics.laneTotals(r.cfg.name, l.name) })),
      };
    });
    return { ready: !draining(), draining: draining(), routes };
  }

  /** Closes retired pools that nothing uses any more; re-arms itself while some remain. */
  function sweepRetired(): void {
    sweeping = false;
    retired = retired.filter(({ route, why }) => {
      if (route.poolUse.active > 0) return true;
      // Graceful: lets anything still in the pool finish. It may already be destroyed by a drain timeout.
      route.pool.close().catch(() => undefined);
      logger.info({ route: route.cfg.name, upstream: route.cfg.upstream, why }, 'retired upstream pool closed');
      return false;
    });
    if (retired.length > 0 && !sweeping) {
      sweeping = true;
      clock.setTimer(sweepRetired, POLL_MS * 5);
    }
  }

  function attemptReload(file: string): ReloadResult {
    if (draining()) {
      logger.warn({ file }, 'config reload refused: draining');
      return { result: 'error', reason: 'draining', file, message: 'draining: not reloading', problems: [] };
    }
    let next: Config;
    try {
      next = loadConfig(file);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      const message = formatProblems(err.problems);
      logger.error(
        { file, problems: message.split('\n') },
        `config reload failed: ${err.problems.length} problem(s); keeping the running config`,
      );
      return { result: 'error', reason: 'invalid_config', file, message, problems: err.problems };
    }
    const warnings = unappliable(started, next);
    const swap = nextRuntime(runtime, next, runtimeDeps);
    runtime = swap.runtime;
    // An injected logger belongs to the caller; one built here follows the file.
    if (deps.logger === undefined) logger.level = next.log.level;
    retired.push(...swap.retired);
    sweepRetired();
    for (const w of warnings) logger.warn({ file: next.file }, `config reload: ${w}`);
    logger.info({ file: next.file, ...swap.changes }, 'config reloaded');
    return { result: 'success', file: next.file, routes: swap.changes, warnings };
  }

  function reload(file = runtime.config.file): ReloadResult {
    const result = attemptReload(file);
    if (result.result === 'success') metrics.bindRoutes(runtime.routes);
    metrics.configReloaded(result.result);
    deps.onReload?.(result);
    return result;
  }

  /** Requests admitted or queued anywhere, including routes a reload retired. */
  function active(): number {
    let n = 0;
    const seen = new Set<object>();
    for (const r of [...runtime.routes, ...retired.map((x) => x.route)]) {
      if (seen.has(r.poolUse)) continue;
      seen.add(r.poolUse);
      n += r.poolUse.active;
    }
    return n;
  }

  /** Every route the instance still serves requests for, including retired ones. */
  function allRoutes(): RouteRuntime[] {
    return [...runtime.routes, ...retired.map((x) => x.route)];
  }

  async function waitIdle(timeoutMs: number): Promise<boolean> {
    const end = clock.now() + timeoutMs;
    while (active() > 0) {
      if (clock.now() >= end) return false;
      await delay(clock, Math.min(POLL_MS, end - clock.now()));
    }
    return true;
  }

  let drained: Promise<DrainReport> | null = null;
  async function drainOnce(): Promise<DrainReport> {
    const t0 = clock.now();
    const { readinessGraceMs, drainTimeoutMs } = runtime.config.shutdown;
    lifecycle.phase = 'draining';
    logger.info({ readinessGraceMs, drainTimeoutMs, active: active() }, 'draining: readiness fails; still serving until the grace ends');
    if (readinessGraceMs > 0) await delay(clock, readinessGraceMs);

    lifecycle.phase = 'closing';
    // Stops accepting connections and closes the idle ones; resolves once every connection is gone.
    const closed = proxy.close();
    logger.info({ active: active() }, 'draining: listener closed; waiting for admitted and queued requests');
    const idle = await waitIdle(drainTimeoutMs);

    let refusedQueued = 0;
    let cut = 0;
    if (!idle) {
      lifecycle.phase = 'expired';
      const left = active();
      for (const r of allRoutes()) refusedQueued += r.limiter.refuseQueued('draining');
      cut = left - refusedQueued;
      // In-flight upstream requests fail now and are answered 503 draining (or cut, if their response had begun).
      const err = new Error('sluice: drain timeout');
      for (const r of allRoutes()) void r.pool.destroy(err).catch(() => undefined);
      logger.warn({ refusedQueued, cut, drainTimeoutMs }, 'drain timeout: refusing what is left');
    }
    // What remains are idle keep-alive connections and responses just written: let them flush, then close.
    proxy.server.closeIdleConnections();
    const flushed = await Promise.race([closed.then(() => true), delay(clock, FLUSH_MS).then(() => false)]);
    if (!flushed) proxy.server.closeAllConnections();
    await closed;
    await Promise.all(allRoutes().map((r) => r.pool.close().catch(() => undefined)));
    retired = [];
    await closeRuntime(runtime);
    await admin.close();
    const report: DrainReport = { refusedQueued, cut, durationMs: Math.round(clock.now() - t0) };
    logger.info(report, 'drained');
    return report;
  }

  const admin = buildAdmin({
    logger,
    state,
    notReadyReason: () =>
      draining() ? 'draining' : backlogVerdict(state().routes, runtime.config.readiness.maxBacklogSeconds),
    metrics,
    reload: () => reload(),
  });

  return {
    proxy,
    admin,
    logger,
    metrics,
    async listen(override = {}) {
      await proxy.listen({ host: started.listen.host, port: override.proxyPort ?? started.listen.port });
      await admin.listen({ host: started.admin.host, port: override.adminPort ?? started.admin.port });
      return { proxyUrl: urlOf(proxy), adminUrl: urlOf(admin) };
    },
    state,
    config: () => runtime.config,
    reload,
    drain() {
      drained ??= drainOnce();
      return drained;
    },
    async close() {
      if (drained !== null) {
        await drained;
        return;
      }
      lifecycle.phase = 'closing';
      await Promise.all([proxy.close(), admin.close()]);
      await Promise.all(allRoutes().map((r) => r.pool.destroy()));
      retired = [];
      await closeRuntime(runtime);
    },
  };
}

/**
 * The graceful shutdown (SIGTERM), in phases (proxy/lifecycle.ts):
 *
 *   draining  readiness fails at once; requests are still served, each
 *             response asks its client to close the connection; for
 *             shutdown.readinessGraceMs, so load balancers notice
 *   closing   the listener closes (idle connections with it; HTTP/2
 *             connections get GOAWAY); requests on connections still open
 *             are refused 503 draining; admitted and queued requests get
 *             shutdown.drainTimeoutMs to finish; open WebSockets are
 *             closed with 1001 (Going Away)
 *   expired   what is left is refused (queued: 503 draining) or cut (in
 *             flight: the pools are destroyed, answered 503 draining when
 *             no response has begun); connections get FLUSH_MS to take
 *             their last answers, then are closed; the shared rate store's
 *             connection ends; the admin listener last
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { Lifecycle } from '../proxy/lifecycle.js';
import { closeRuntime } from '../proxy/runtime.js';
import type { Runtimes } from './runtimes.js';

export interface DrainReport {
  /** Queued requests refused with 503 draining because the drain timeout passed. */
  readonly refusedQueued: number;
  /** Requests still in flight when the drain timeout passed (answered 503 draining, or cut). */
  readonly cut: number;
  readonly durationMs: number;
}

export interface DrainDeps {
  readonly runtimes: Runtimes;
  readonly lifecycle: Lifecycle;
  readonly clock: Clock;
  readonly log: Logger;
  readonly proxy: FastifyInstance;
  readonly admin: FastifyInstance;
  /** The listener's open WebSockets (proxy/websocket.ts): closed with 1001 when the listener closes. */
  readonly webSockets?: { closeAll(): number };
}

/** Checked while a drain waits for requests to finish. */
const POLL_MS = 20;
/** After the drain, how long responses just refused or cut get to flush before connections are destroyed. */
const FLUSH_MS = 1000;

function delay(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(resolve, ms));
}

/** Resolves true once nothing is held or queued anywhere, false when `timeoutMs` passed first. */
async function waitIdle(deps: DrainDeps, timeoutMs: number): Promise<boolean> {
  const { clock, runtimes } = deps;
  const end = clock.now() + timeoutMs;
  while (runtimes.active() > 0) {
    if (clock.now() >= end) return false;
    await delay(clock, Math.min(POLL_MS, end - clock.now()));
  }
  return true;
}

/** The drain timeout passed: refuse what is queued, cut what is in flight. */
function expire(deps: DrainDeps, drainTimeoutMs: number): { refusedQueued: number; cut: number } {
  deps.lifecycle.phase = 'expired';
  const routes = deps.runtimes.all();
  const left = deps.runtimes.active();
  let refusedQueued = 0;
  for (const r of routes) refusedQueued += r.limiter.refuseQueued('draining');
  const cut = left - refusedQueued;
  // In-flight upstream requests fail now and are answered 503 draining (or cut, if their response had begun).
  const err = new Error('sluice: drain timeout');
  for (const r of routes) void r.pool.destroy(err).catch(() => undefined);
  deps.log.warn({ refusedQueued, cut, drainTimeoutMs }, 'drain timeout: refusing what is left');
  return { refusedQueued, cut };
}

export async function drain(deps: DrainDeps): Promise<DrainReport> {
  const { clock, lifecycle, log, proxy, runtimes } = deps;
  const t0 = clock.now();
  const { readinessGraceMs, drainTimeoutMs } = runtimes.current.config.shutdown;
  lifecycle.phase = 'draining';
  log.info({ readinessGraceMs, drainTimeoutMs, active: runtimes.active() }, 'draining: readiness fails; still serving until the grace ends');
  if (readinessGraceMs > 0) await delay(clock, readinessGraceMs);

  lifecycle.phase = 'closing';
  // Stops accepting connections and closes the idle ones (HTTP/2: GOAWAY); resolves once every connection is gone.
  const closed = proxy.close();
  // WebSockets are no requests to wait for: they are told the server goes away (1001).
  const webSockets = deps.webSockets?.closeAll() ?? 0;
  log.info({ active: runtimes.active(), webSockets }, 'draining: listener closed; waiting for admitted and queued requests');
  const idle = await waitIdle(deps, drainTimeoutMs);
  const { refusedQueued, cut } = idle ? { refusedQueued: 0, cut: 0 } : expire(deps, drainTimeoutMs);

  // What remains are idle keep-alive connections and responses just written: let them flush, then close.
  proxy.server.closeIdleConnections();
  const flushed = await Promise.race([closed.then(() => true), delay(clock, FLUSH_MS).then(() => false)]);
  if (!flushed) proxy.server.closeAllConnections();
  await closed;
  await Promise.all(runtimes.all().map((r) => r.pool.close().catch(() => undefined)));
  runtimes.forgetRetired();
  await closeRuntime(runtimes.current);
  await deps.admin.close();
  const report: DrainReport = { refusedQueued, cut, durationMs: Math.round(clock.now() - t0) };
  log.info(report, 'drained');
  return report;
}

/** Closes at once: no readiness grace; requests in flight finish first (the pools are destroyed after). */
export async function closeNow(deps: DrainDeps): Promise<void> {
  deps.lifecycle.phase = 'closing';
  const closed = Promise.all([deps.proxy.close(), deps.admin.close()]);
  deps.webSockets?.closeAll();
  await closed;
  await Promise.all(deps.runtimes.all().map((r) => r.pool.destroy()));
  deps.runtimes.forgetRetired();
  await closeRuntime(deps.runtimes.current);
}

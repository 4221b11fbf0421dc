/**
 * Config reload (../shared/DESIGN.md §8): re-reads the file; on any problem
 * the running config stays and the problems are reported, every one with
 * file:line:col. Otherwise the next runtime is built from the running one
 * (./next-runtime.ts: surviving routes keep their limiter,
 * breaker and pool) and swapped in between two requests; server.* reaches
 * every connection opened after it (proxy/front.ts), log.access every
 * request. Settings that cannot change in a running process (listener
 * addresses, log format, the number of workers, the slow-request check
 * interval) are named as warnings: nothing in the file is ignored silently.
 *
 * In steps, so that a reload across workers validates once (the primary
 * reads the file) and applies everywhere or nowhere (instance/cluster/):
 *   readReload      the file → a validated Config and its warnings, or the error result
 *   prepareReload   the next runtime built; nothing running has changed
 *   commit / abort  swap it in (and follow the log level) / let it go
 * reloadConfig does all three in one process.
 */
import type { Logger } from 'pino';
import { ConfigError, formatProblems, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import type { ReloadResult, RouteChanges } from '../observability/state.js';
import { timeoutCheckInterval } from '../proxy/front.js';
import type { RuntimeDeps } from '../proxy/runtime.js';
import { prepareRuntime } from './next-runtime.js';
import type { Runtimes } from './runtimes.js';

export interface ReloadDeps {
  readonly runtimes: Runtimes;
  readonly runtimeDeps: RuntimeDeps;
  /** The config whose listener addresses are in use. */
  readonly started: Config;
  readonly log: Logger;
  /** Whether the log level follows the file (the logger was built from it, not injected). */
  readonly ownLogger: boolean;
  readonly draining: () => boolean;
  /** Applies what a running listener can take from the next config (certificate, HTTP/2 settings). */
  readonly listener?: { reconfigure(config: Config): void };
}

export type ReloadError = Extract<ReloadResult, { result: 'error' }>;

/** A validated config ready to be prepared, with what it cannot apply. */
export interface ReadReload {
  readonly config: Config;
  readonly warnings: readonly string[];
}

/** Settings a reload cannot apply to a running process: each becomes a warning. */
function unappliable(running: Config, next: Config): string[] {
  const warnings: string[] = [];
  const addr = (l: { readonly host: string; readonly port: number }) => `${l.host}:${l.port}`;
  for (const key of ['listen', 'admin'] as const) {
    if (addr(running[key]) !== addr(next[key])) {
      warnings.push(
        `${key}: listener addresses cannot change on reload; still on ${addr(running[key])} (restart to move to ${addr(next[key])})`,
      );
    }
  }
  if (running.log.pretty !== next.log.pretty) warnings.push('log.pretty: cannot change on reload (restart to apply)');
  if (running.workers !== next.workers) warnings.push(`workers: cannot change on reload; still ${running.workers} (restart to run ${next.workers})`);
  if ((running.listen.tls === undefined) !== (next.listen.tls === undefined)) {
    warnings.push(`listen.tls: TLS cannot be turned ${next.listen.tls === undefined ? 'off' : 'on'} on reload (restart to apply)`);
  }
  if (running.listen.http2 !== next.listen.http2) warnings.push('listen.http2: cannot change on reload (restart to apply)');
  if (running.listen.tls !== undefined && next.listen.tls !== undefined && (running.listen.tls.caFile === undefined) !== (next.listen.tls.caFile === undefined)) {
    warnings.push('listen.tls.caFile: client certificates cannot be turned on or off on reload (restart to apply)');
  }
  // server.* applies to every connection opened after the reload (proxy/front.ts), except
  // how often Node looks for slow requests, which is fixed when the listener starts.
  const every = timeoutCheckInterval(running.server);
  const wanted = timeoutCheckInterval(next.server);
  if (wanted < every) {
    warnings.push(
      `server.headersTimeoutMs / requestTimeoutMs: applied, but slow requests are still checked every ${every} ms (restart to check every ${wanted} ms): a slow one may be answered up to ${every} ms late`,
    );
  }
  return warnings;
}

/** Reads and validates `file`; never throws for a bad file (its problems are the error result). */
export function readReload(file: string, started: Config, draining: boolean, log: Logger): ReadReload | ReloadError {
  if (draining) {
    log.warn({ file }, 'config reload refused: draining');
    return { result: 'error', reason: 'draining', file, message: 'draining: not reloading', problems: [] };
  }
  let next: Config;
  try {
    next = loadConfig(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const message = formatProblems(err.problems);
    log.error({ file, problems: message.split('\n') }, `config reload failed: ${err.problems.length} problem(s); keeping the running config`);
    return { result: 'error', reason: 'invalid_config', file, message, problems: err.problems };
  }
  // A reload keeps the worker count it started with: the shares are split by it.
  return { config: next, warnings: unappliable(started, next) };
}

/** A reload built on this process's runtimes, not yet in force. */
export interface PreparedReload {
  readonly changes: RouteChanges;
  /** Swaps the next runtime in (between two requests) and follows the file's log level. */
  commit(): void;
  abort(): Promise<void>;
}

/** Builds the runtime for `next`; throws only on an unexpected failure (nothing running changes then either). */
export function prepareReload(next: Config, deps: ReloadDeps): PreparedReload {
  const prepared = prepareRuntime(deps.runtimes.current, next, deps.runtimeDeps);
  return {
    changes: prepared.changes,
    commit() {
      prepared.commit();
      deps.runtimes.swap(prepared);
      // The certificate (already read and checked by loadConfig) goes in without dropping a connection.
      deps.listener?.reconfigure(next);
      if (deps.ownLogger) deps.log.level = next.log.level;
    },
    abort: () => prepared.abort(),
  };
}

/** The success result, logged: the warnings, then what changed. */
export function reloaded(read: ReadReload, changes: RouteChanges, log: Logger): ReloadResult {
  const file = read.config.file;
  for (const w of read.warnings) log.warn({ file }, `config reload: ${w}`);
  log.info({ file, ...changes }, 'config reloaded');
  return { result: 'success', file, routes: changes, warnings: read.warnings };
}

/** Reloads `file` in this process; never throws for a bad file (its problems are the result). */
export function reloadConfig(file: string, deps: ReloadDeps): ReloadResult {
  const read = readReload(file, deps.started, deps.draining(), deps.log);
  if ('result' in read) return read;
  const prepared = prepareReload(read.config, deps);
  prepared.commit();
  return reloaded(read, prepared.changes, deps.log);
}

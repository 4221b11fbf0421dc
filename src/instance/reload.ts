/**
 * Config reload (../shared/DESIGN.md §8): re-reads the file; on any problem
 * the running config stays and the problems are reported, every one with
 * file:line:col. Otherwise the next runtime is built from the running one
 * (./next-runtime.ts: surviving routes keep their limiter,
 * breaker and pool) and swapped in between two requests. Settings that
 * cannot change in a running process (listener addresses, log format) are
 * named as warnings.
 */
import type { Logger } from 'pino';
import { ConfigError, formatProblems, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import type { ReloadResult } from '../observability/state.js';
import type { RuntimeDeps } from '../proxy/runtime.js';
import { nextRuntime } from './next-runtime.js';
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

/** Reloads `file`; never throws for a bad file (its problems are the result). */
export function reloadConfig(file: string, deps: ReloadDeps): ReloadResult {
  const { log } = deps;
  if (deps.draining()) {
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
  const warnings = unappliable(deps.started, next);
  const swap = nextRuntime(deps.runtimes.current, next, deps.runtimeDeps);
  deps.runtimes.swap(swap);
  if (deps.ownLogger) log.level = next.log.level;
  for (const w of warnings) log.warn({ file: next.file }, `config reload: ${w}`);
  log.info({ file: next.file, ...swap.changes }, 'config reloaded');
  return { result: 'success', file: next.file, routes: swap.changes, warnings };
}

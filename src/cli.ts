#!/usr/bin/env node
/**
 * sluice --config FILE        run the proxy (FILE may also come from SLUICE_CONFIG)
 * sluice validate FILE        check a config: exit 0 when valid, 2 with every problem printed
 * sluice --help | --version
 */
import { fileURLToPath } from 'node:url';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/types.js';
import { startPrimary } from './instance/cluster/primary.js';
import { ListenError } from './instance/listen.js';
import { adminWarning } from './observability/admin-guard.js';
import { startupLine } from './observability/startup.js';
import { sluiceVersion } from './version.js';

const USAGE = `Usage:
  sluice --config FILE     run the proxy with the YAML policy FILE (or set SLUICE_CONFIG)
  sluice validate FILE     check FILE; exit 0 when valid, 2 with every problem printed
  sluice --help            this text
  sluice --version         the version

Signals: SIGHUP reloads the config file (the running config stays if the new one is invalid).
         SIGTERM/SIGINT drain: /readyz fails at once, the listener closes after
         shutdown.readinessGraceMs, admitted requests get shutdown.drainTimeoutMs
         to finish, then exit 0. A second SIGTERM/SIGINT exits 1 at once.
Exit codes: 0 ok, 1 runtime failure (a listener that cannot open: one line with
            the address and the cause), 2 invalid config or usage.
SLUICE_DEBUG=1 adds the stack trace to a start-up failure.`;

function load(file: string): Config {
  try {
    return loadConfig(file);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.stderr.write(`sluice: ${err.problems.length} problem(s) in ${file}; not starting\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** workers: 1 is one process (no cluster); more is a primary with that many workers (instance/cluster/). */
async function start(config: Config) {
  if (config.workers <= 1) return buildApp(config);
  return startPrimary(config, { workerEntry: fileURLToPath(new URL('./worker.js', import.meta.url)), version: sluiceVersion() });
}

async function run(file: string): Promise<void> {
  const config = load(file);
  const app = await start(config);
  const log = app.logger;

  // SIGHUP: re-read the config file. reload() logs the outcome (problems with
  // FILE:LINE:COL when the file is invalid; the running config stays).
  process.on('SIGHUP', () => {
    Promise.resolve()
      .then(() => app.reload())
      // Not a config problem (those come back as results): keep serving, say so.
      .catch((err: unknown) => log.error({ err }, 'config reload failed unexpectedly; keeping the running config'));
  });

  // SIGTERM/SIGINT: drain (readiness fails, then the listener closes and
  // admitted work finishes) and exit 0. A second signal exits at once.
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without finishing the drain');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    app.drain().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  // Handlers first, then listen and announce: a signal right after the
  // start-up line (event "started") must find them in place.
  const urls = await app.listen();
  const line = startupLine(config, urls, sluiceVersion());
  log.info(line.fields, line.msg);
  const warning = adminWarning(config.admin);
  if (warning !== null) log.warn({ admin: urls.adminUrl }, warning);
}

export async function main(argv: string[]): Promise<void> {
  const [cmd, arg] = argv;
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (cmd === '--version' || cmd === '-v') {
    process.stdout.write(`${sluiceVersion()}\n`);
    return;
  }
  if (cmd === 'validate') {
    if (!arg) {
      process.stderr.write(`sluice validate: missing FILE\n\n${USAGE}\n`);
      process.exit(2);
    }
    const config = load(arg);
    const workers = config.workers > 1 ? `, ${config.workers} workers` : '';
    process.stdout.write(`${config.file}: ok (${config.routes.length} route(s), ${config.lanes.length} lane(s)${workers})\n`);
    const warning = adminWarning(config.admin);
    if (warning !== null) process.stderr.write(`${config.file}: warning: ${warning}\n`);
    return;
  }
  let file = process.env.SLUICE_CONFIG;
  if (cmd === '--config' || cmd === '-c') file = arg;
  else if (cmd !== undefined && cmd.startsWith('--config=')) file = cmd.slice('--config='.length);
  else if (cmd !== undefined) {
    process.stderr.write(`sluice: unknown argument "${cmd}"\n\n${USAGE}\n`);
    process.exit(2);
  }
  if (!file) {
    process.stderr.write(`sluice: no config file (use --config FILE or SLUICE_CONFIG)\n\n${USAGE}\n`);
    process.exit(2);
  }
  await run(file);
}

// A failure to start is one line: a ListenError names the listener, the
// address and the cause; anything else its message (the stack on request).
main(process.argv.slice(2)).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  const line = err instanceof ListenError ? message : `cannot start: ${message}`;
  process.stderr.write(`sluice: ${line}\n`);
  if (process.env.SLUICE_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  process.exit(1);
});

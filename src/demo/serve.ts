/**
 * `npm run demo:serve`: the target for the k6 scripts in loadtests/.
 *
 * Starts the simulated capacity upstream (DEMO_WORKERS x DEMO_SERVICE_MS,
 * 8 x 50 ms = 160 req/s by default) on the address of the config's first
 * route, then Sluice with that config (loadtests/config.yaml unless
 * `--config FILE` or SLUICE_CONFIG says otherwise), prints the URLs and
 * waits until SIGINT/SIGTERM, then closes both.
 *
 * The upstream runs in a child process of its own (./upstream-process.ts), as
 * a real service would: under a flood, Sluice's work must not delay the
 * upstream's service timers (that would shrink its capacity and blame
 * Sluice's queueing for it).
 */
import { buildApp } from '../app.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { startUpstreamProcess } from './upstream-process.js';

function configFile(argv: string[]): string {
  const i = argv.indexOf('--config');
  if (i >= 0 && argv[i + 1]) return argv[i + 1] as string;
  const eq = argv.find((a) => a.startsWith('--config='));
  if (eq) return eq.slice('--config='.length);
  return process.env.SLUICE_CONFIG ?? 'loadtests/config.yaml';
}

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a number > 0, got "${raw}"`);
  return n;
}

async function main(): Promise<void> {
  const file = configFile(process.argv.slice(2));
  const config = loadConfig(file);
  const route = config.routes[0];
  if (route === undefined) throw new Error(`${file}: no routes`);
  const target = new URL(route.upstream);
  if (target.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(target.hostname)) {
    throw new Error(`${file}: the first route's upstream must be http on loopback for the demo upstream, got ${route.upstream}`);
  }
  const workers = positiveNumber('DEMO_WORKERS', 8);
  const serviceTimeMs = positiveNumber('DEMO_SERVICE_MS', 50);
  if (!Number.isInteger(workers)) throw new Error(`DEMO_WORKERS must be an integer, got ${workers}`);
  const upstream = await startUpstreamProcess({ host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port || 80), workers, serviceTimeMs });
  const app = await buildApp(config);
  let urls: { proxyUrl: string; adminUrl: string };
  try {
    urls = await app.listen();
  } catch (err) {
    await upstream.close();
    throw err;
  }
  const capacity = Math.round((workers * 1000) / serviceTimeMs);
  process.stdout.write(
    [
      `config:   ${config.file}`,
      `upstream: ${upstream.url} (${workers} workers x ${serviceTimeMs} ms = ${capacity} req/s)`,
      `control:  ${upstream.url}/_control   (GET settings, POST {"serviceTimeMs":N,"workers":N})`,
      `sluice:   ${urls.proxyUrl}   route ${route.name}: limit ${route.limit.algorithm} ${route.limit.initial} [${route.limit.min}, ${route.limit.max}]`,
      `admin:    ${urls.adminUrl}/admin/state`,
      '',
      `k6 run -e BASE_URL=${urls.proxyUrl} -e CONTROL_URL=${upstream.url}/_control -e CAPACITY=${capacity} loadtests/smoke.js`,
      'Ctrl-C to stop.',
      '',
    ].join('\n'),
  );

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    Promise.all([app.close(), upstream.close()]).then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`demo:serve: shutdown failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) process.stderr.write(`${err.message}\n`);
  else process.stderr.write(`demo:serve failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});

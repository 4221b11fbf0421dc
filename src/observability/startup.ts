/**
 * The start-up log line: a sentence a person reads at a terminal
 *
 *   sluice 0.1.0 listening on http://0.0.0.0:8080, admin on http://127.0.0.1:9901,
 *   2 routes: api → http://127.0.0.1:3000 (/api, limit gradient 10..200), web → … (/, limit fixed 20)
 *
 * and, for whatever parses logs, the same facts as fields: `event: "started"`
 * (what to wait for), version, both URLs, the config file, the mode and one
 * object per route.
 */
import type { Config, RouteConfig } from '../config/types.js';

export interface StartupLine {
  readonly msg: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

function limitText(r: RouteConfig): string {
  const l = r.limit;
  return l.algorithm === 'fixed' ? `limit fixed ${l.initial}` : `limit ${l.algorithm} ${l.min}..${l.max}`;
}

function routeText(r: RouteConfig, config: Config): string {
  const where = [r.match.host, r.match.pathPrefix].filter((x) => x !== undefined).join('');
  const shadow = r.mode === 'shadow' && config.mode !== 'shadow' ? ', shadow' : '';
  return `${r.name} → ${r.upstream} (${where}, ${limitText(r)}${shadow})`;
}

export function startupLine(config: Config, urls: { proxyUrl: string; adminUrl: string }, version: string): StartupLine {
  const n = config.routes.length;
  const mode = config.mode === 'shadow' ? ' in shadow mode (nothing is refused)' : '';
  const workers = config.workers > 1 ? ` with ${config.workers} workers` : '';
  const msg =
    `sluice ${version} listening on ${urls.proxyUrl}${workers}, admin on ${urls.adminUrl}${mode}, ` +
    `${n} route${n === 1 ? '' : 's'}: ${config.routes.map((r) => routeText(r, config)).join(', ')}`;
  const fields = {
    event: 'started',
    version,
    proxy: urls.proxyUrl,
    admin: urls.adminUrl,
    config: config.file,
    mode: config.mode,
    workers: config.workers,
    routes: config.routes.map((r) => ({
      name: r.name,
      ...(r.match.host !== undefined && { host: r.match.host }),
      pathPrefix: r.match.pathPrefix,
      upstream: r.upstream,
      mode: r.mode,
      limit: { algorithm: r.limit.algorithm, initial: r.limit.initial, min: r.limit.min, max: r.limit.max },
      lanes: r.lanes.map((l) => ({ name: l.name, maxShare: l.maxShare, minShare: l.minShare, queue: { maxLength: l.queue.maxLength, maxWaitMs: l.queue.maxWaitMs } })),
    })),
  };
  return { msg, fields };
}

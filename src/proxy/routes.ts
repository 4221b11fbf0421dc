/**
 * Route matching and lane classification, resolved once per config so the
 * hot path does a few string comparisons and no allocation.
 *
 * Path prefixes match on segment boundaries: `/api/orders` matches
 * `/api/orders` and `/api/orders/...`, not `/api/ordersfoo`; a prefix ending
 * in `/` matches everything below it. The longest matching prefix wins; among
 * equal prefixes the first route in the file wins.
 */
import type { ClassifyRule, Config, RouteConfig } from '../config/types.js';

export function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  if (path.length === prefix.length || prefix.endsWith('/')) return true;
  const c = path.charCodeAt(prefix.length);
  return c === 47 /* / */;
}

/** The request's path without the query string. */
export function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/**
 * Paths that could reach a different route upstream than the one their
 * prefix names: dot segments, encoded dots/slashes/backslashes, backslashes,
 * doubled slashes. Such requests get 400 rather than a guess.
 */
const AMBIGUOUS_PATH = /(^|\/)\.\.?(\/|$)|%2e|%2f|%5c|\\|\/\//i;
export function isAmbiguousPath(path: string): boolean {
  return path.charCodeAt(0) !== 47 || AMBIGUOUS_PATH.test(path);
}

/** Host header without port, lower-cased. */
export function hostOf(host: string | undefined): string {
  if (!host) return '';
  let h = host;
  if (h.charCodeAt(0) === 91 /* [ */) {
    const end = h.indexOf(']');
    h = end > 0 ? h.slice(0, end + 1) : h;
  } else {
    const colon = h.indexOf(':');
    if (colon >= 0) h = h.slice(0, colon);
  }
  return h.toLowerCase();
}

export class RouteTable<R extends { readonly cfg: RouteConfig }> {
  private readonly ordered: R[];

  constructor(routes: readonly R[]) {
    // Stable sort: longest prefix first, file order among equals.
    this.ordered = [...routes].sort((a, b) => b.cfg.match.pathPrefix.length - a.cfg.match.pathPrefix.length);
  }

  match(method: string, host: string | undefined, path: string): R | undefined {
    let h: string | undefined;
    for (const r of this.ordered) {
      const m = r.cfg.match;
      if (!prefixMatches(m.pathPrefix, path)) continue;
      if (m.methods !== undefined && !m.methods.includes(method)) continue;
      if (m.host !== undefined && m.host !== (h ??= hostOf(host))) continue;
      return r;
    }
    return undefined;
  }
}

export interface ClassifyInput {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly clientKey: string;
}

/** First matching rule's lane index; no match -> 0 (the first lane). */
export function classify(rules: readonly ClassifyRule[], req: ClassifyInput): number {
  for (const rule of rules) {
    const w = rule.when;
    if (w.pathPrefix !== undefined && !prefixMatches(w.pathPrefix, req.path)) continue;
    if (w.methods !== undefined && !w.methods.includes(req.method)) continue;
    if (w.header !== undefined && req.headers[w.header.name] !== w.header.value) continue;
    if (w.clientKeys !== undefined && !w.clientKeys.includes(req.clientKey)) continue;
    return rule.laneIndex;
  }
  return 0;
}

/** The client key per clients.key: a header's value (missing -> client address) or the address. */
export function clientKeyFn(cfg: Config['clients']['key']): (headers: ClassifyInput['headers'], ip: string) => string {
  if ('header' in cfg) {
    const name = cfg.header;
    return (headers, ip) => {
      const v = headers[name];
      return typeof v === 'string' && v.length > 0 ? v : ip;
    };
  }
  return (_headers, ip) => ip;
}

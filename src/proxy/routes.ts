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
 * Paths that an upstream could resolve to a different route than the one
 * their prefix names get 400 rather than a guess. Sluice matches the path as
 * sent; an upstream may normalise it first. So the path is refused when it
 * is not origin-form (`*`, `http://...`), or holds
 * - a dot segment `.` / `..`, also with a path parameter (`..;x`, `..%3b`,
 *   which Tomcat-style servers strip), a backslash, or `//`;
 * - a percent-escape an upstream would decode to something that changes the
 *   route or the path's structure: an unreserved character (`/%61pi` is
 *   `/api` to any normaliser, RFC 3986 §6.2.2.2), `/`, `\`, a control
 *   character, or a double escape (`%252e` is `%2e` after one decoding);
 * - a malformed escape (`%zz`, a trailing `%`), which upstreams treat in
 *   different ways.
 * Escapes of other reserved or non-ASCII bytes (`%20`, `%3f`, `%c3%a9`) are
 * fine: they mean the same thing to everyone.
 */
const DOT_OR_SLASHES = /(^|\/)\.\.?(\/|$|;|%3b)|\\|\/\//i;
export function isAmbiguousPath(path: string): boolean {
  if (path.charCodeAt(0) !== 47 /* / */ || DOT_OR_SLASHES.test(path)) return true;
  for (let i = path.indexOf('%'); i >= 0; i = path.indexOf('%', i + 1)) {
    const b = hexByte(path, i + 1);
    if (b < 0 || DECODES_AMBIGUOUS[b] === 1) return true;
    if (b === 0x25 && hexByte(path, i + 3) >= 0) return true;
  }
  return false;
}

/** 1 for the bytes whose escape is refused (see isAmbiguousPath). */
const DECODES_AMBIGUOUS = new Uint8Array(256);
for (let b = 0; b < 0x20; b++) DECODES_AMBIGUOUS[b] = 1;
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/\\\x7f') {
  DECODES_AMBIGUOUS[c.charCodeAt(0)] = 1;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/** The byte of the two hex digits at i, or -1. */
function hexByte(s: string, i: number): number {
  const h = hexDigit(s.charCodeAt(i));
  const l = hexDigit(s.charCodeAt(i + 1));
  return h < 0 || l < 0 ? -1 : (h << 4) | l;
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

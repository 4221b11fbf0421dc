/**
 * Headers at the edge: ONE transform for the request Sluice forwards
 * (requestHeaders) and ONE for the response it passes back
 * (responseHeaders), plus the response trailers (forwardableTrailers).
 * Later protocols (WebSocket, HTTP/2, gRPC) extend these three, never add
 * a fourth place that edits headers.
 *
 * Hop-by-hop (RFC 9110 §7.6.1): fields that describe one connection, not
 * the message, are removed in both directions: `Connection` and every field
 * it names, `Keep-Alive`, `Proxy-Connection`, `TE` (only `TE: trailers`
 * is forwarded: it says the client takes trailers), `Transfer-Encoding`
 * (undici frames the body itself), `Upgrade` (a WebSocket handshake sets it
 * again after this transform: ./ws-handshake.ts), `Proxy-Authorization`
 * and `Proxy-Authenticate` (credentials for this hop), `HTTP2-Settings`;
 * `Expect` (Sluice answered it: ./front.ts sends 100 Continue after
 * admission) and a request's `Trailer` (request trailers are not forwarded).
 * Left in place, several of these make undici refuse the request locally.
 *
 * Forwarding (`forwarding:` in the config, per route):
 *   from an untrusted peer   every forwarding header it sent (Forwarded,
 *                            X-Forwarded-*, X-Real-IP, True-Client-IP,
 *                            X-Client-IP) is removed: an upstream that
 *                            trusts them must not trust the client
 *   from a trusted proxy     they are kept as received
 *   then Sluice adds         X-Forwarded-For (append: the chain + the peer;
 *                            replace: the client's address alone; off:
 *                            nothing), X-Forwarded-Proto and -Host (unless
 *                            a trusted proxy set them), Forwarded (RFC 7239,
 *                            off by default: for=peer;host;proto, appended),
 *                            Via (RFC 9110 §7.6.3, both directions)
 *   preserveHost             the client's Host (or the absolute-form
 *                            target's authority) goes upstream instead of
 *                            the upstream's own
 */
import type { ForwardingConfig } from '../config/types.js';
import { TrustedProxies } from './client-address.js';

export type Headers = Record<string, string | string[] | number | undefined>;

/** A route's header rules, resolved once per config. */
export interface HeaderPolicy {
  readonly trusted: TrustedProxies;
  readonly xForwardedFor: ForwardingConfig['xForwardedFor'];
  readonly xForwardedProto: boolean;
  readonly xForwardedHost: boolean;
  /** The Via pseudonym, or null: no Via. */
  readonly via: string | null;
  /** The Via entries Sluice adds, built once: a response's, and a request's by the client's HTTP version. */
  readonly viaResponse: string;
  readonly viaRequest: Readonly<Record<string, string>>;
  readonly forwarded: boolean;
  readonly preserveHost: boolean;
  /**
   * Keep an Upgrade field Connection does not name. No route sets it: a WebSocket handshake
   * (./ws-handshake.ts) names Upgrade in Connection, and sets both again after the transform.
   */
  readonly keepUpgrade: boolean;
}

export function headerPolicy(fwd: ForwardingConfig, preserveHost: boolean): HeaderPolicy {
  const via = fwd.via === false ? null : fwd.via;
  return {
    trusted: new TrustedProxies(fwd.trustedProxies),
    xForwardedFor: fwd.xForwardedFor,
    xForwardedProto: fwd.xForwardedProto,
    xForwardedHost: fwd.xForwardedHost,
    via,
    viaResponse: `1.1 ${via}`,
    // RFC 9110 §7.6.3: the received-protocol is the version without "HTTP/"; HTTP/2's is "2".
    viaRequest: { '1.1': `1.1 ${via}`, '1.0': `1.0 ${via}`, '2.0': `2 ${via}` },
    forwarded: fwd.forwarded,
    preserveHost,
    keepUpgrade: false,
  };
}

/** What the request transform reads of the client's request (the front's FrontRequest has these). */
export interface ClientSide {
  /** The socket's address, IPv4-mapped addresses in IPv4 form. */
  readonly peer: string;
  readonly peerTrusted: boolean;
  /** The client (./client-address.ts). */
  readonly clientIp: string;
  /** The absolute-form target's authority, else the Host header; '' without either. */
  readonly authority: string;
  /** The client's connection: TLS or not. */
  readonly proto: 'http' | 'https';
  readonly httpVersion: string;
}

/** Hop-by-hop in both directions (TE, Trailer, Upgrade and Connection itself are handled on their own). */
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'transfer-encoding', 'proxy-authorization', 'proxy-authenticate', 'http2-settings'];

/** Forwarding headers only a trusted proxy may send. */
const FORWARDING = ['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-server', 'x-real-ip', 'true-client-ip', 'x-client-ip'];

/** Removes `Connection` and every field it names. */
function stripConnection(headers: Headers): void {
  const c = headers.connection;
  if (c === undefined) return;
  delete headers.connection;
  for (const token of String(c).toLowerCase().split(',')) {
    const name = token.trim();
    if (name !== '' && headers[name] !== undefined) delete headers[name];
  }
}

function stripHopByHop(headers: Headers, keepUpgrade: boolean): void {
  stripConnection(headers);
  for (const name of HOP_BY_HOP) if (headers[name] !== undefined) delete headers[name];
  if (!keepUpgrade && headers.upgrade !== undefined) delete headers.upgrade;
}

/** Whether a TE value lists `trailers` (TE: trailers, deflate;q=0.5). */
function acceptsTrailers(te: string | string[] | number): boolean {
  for (const part of String(te).toLowerCase().split(',')) {
    const semi = part.indexOf(';');
    if ((semi < 0 ? part : part.slice(0, semi)).trim() === 'trailers') return true;
  }
  return false;
}

/** A comma-separated list with `item` appended. */
function append(value: string | string[] | number | undefined, item: string): string {
  if (value === undefined || value === '') return item;
  return `${Array.isArray(value) ? value.join(', ') : String(value)}, ${item}`;
}

/** RFC 7239 node: IPv6 in brackets and quotes, IPv4 as a token. */
function forwardedNode(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

function quoted(s: string): string {
  return `"${s.replace(/["\\]/g, '\\$&')}"`;
}

function addForwarding(headers: Headers, p: HeaderPolicy, c: ClientSide): void {
  const trusted = c.peerTrusted;
  if (!trusted) for (const name of FORWARDING) if (headers[name] !== undefined) delete headers[name];
  if (p.xForwardedFor === 'append') headers['x-forwarded-for'] = trusted ? append(headers['x-forwarded-for'], c.peer) : c.peer;
  else if (p.xForwardedFor === 'replace') headers['x-forwarded-for'] = c.clientIp;
  if (p.xForwardedProto && !(trusted && headers['x-forwarded-proto'] !== undefined)) headers['x-forwarded-proto'] = c.proto;
  if (p.xForwardedHost && c.authority !== '' && !(trusted && headers['x-forwarded-host'] !== undefined)) headers['x-forwarded-host'] = c.authority;
  if (p.forwarded) {
    const host = c.authority === '' ? '' : `;host=${quoted(c.authority)}`;
    headers.forwarded = append(trusted ? headers.forwarded : undefined, `for=${forwardedNode(c.peer)}${host};proto=${c.proto}`);
  }
}

/**
 * The request transform: `headers` (a copy of the client's, about to go
 * upstream) edited in place. Returns whether the client takes trailers
 * (it sent `TE: trailers`, which is forwarded).
 */
export function requestHeaders(headers: Headers, p: HeaderPolicy, c: ClientSide): boolean {
  stripHopByHop(headers, p.keepUpgrade);
  if (headers.expect !== undefined) delete headers.expect;
  if (headers.trailer !== undefined) delete headers.trailer;
  let trailers = false;
  const te = headers.te;
  if (te !== undefined) {
    trailers = acceptsTrailers(te);
    if (trailers) headers.te = 'trailers';
    else delete headers.te;
  }
  addForwarding(headers, p, c);
  if (p.preserveHost && c.authority !== '') headers.host = c.authority;
  if (p.via !== null) headers.via = append(headers.via, p.viaRequest[c.httpVersion] ?? `${c.httpVersion} ${p.via}`);
  return trailers;
}

/** Dropped from every response: hop-by-hop (Upgrade and Trailer are decided per call). */
const RESPONSE_HOP_BY_HOP = new Set(['connection', 'te', ...HOP_BY_HOP]);

/** The fields a response's `Connection` names beyond the usual `keep-alive` / `close`; null when none. */
function connectionNames(c: string | string[] | number): string[] | null {
  const v = String(c).toLowerCase();
  if (v === 'keep-alive' || v === 'close') return null;
  const names = v.split(',').map((t) => t.trim()).filter((t) => t !== '');
  return names.length === 0 ? null : names;
}

/**
 * The response transform: the upstream's fields that go to the client, in
 * a new object (the upstream's is left as it is). `trailers`: the client
 * takes trailers, so the upstream's `Trailer` announcement stays (else it
 * would announce fields that never come).
 *
 * Copied rather than edited in place: deleting fields (Connection and
 * Keep-Alive, which nearly every upstream sends) turns an object into a
 * slow dictionary, and the proxy then walks it twice more (@fastify/http-proxy's
 * sanitizeHeaders, reply-from's copyHeaders): about 3% of the proxy's CPU
 * per forward under wrk, against well under 1% for the copy (issue-11-perf note).
 */
export function responseHeaders<H extends Headers>(headers: Readonly<H>, p: HeaderPolicy, trailers: boolean): H {
  const c = headers.connection;
  const named = c === undefined ? null : connectionNames(c);
  const out: Headers = {};
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined || RESPONSE_HOP_BY_HOP.has(name)) continue;
    if ((name === 'upgrade' && !p.keepUpgrade) || (name === 'trailer' && !trailers)) continue;
    if (named !== null && named.includes(name)) continue;
    out[name] = value;
  }
  if (p.via !== null) out.via = append(out.via, p.viaResponse);
  return out as H;
}

/**
 * Fields a trailer must not carry (RFC 9110 §6.5.1): framing, routing,
 * authentication, caching and content processing. A trailer cannot change
 * how the message was read; one that claims to is dropped.
 */
const NOT_IN_TRAILERS = new Set([
  'content-length', 'transfer-encoding', 'content-type', 'content-encoding', 'content-range', 'trailer', 'te', 'host',
  'connection', 'keep-alive', 'upgrade', 'authorization', 'proxy-authorization', 'www-authenticate', 'proxy-authenticate',
  'set-cookie', 'cookie', 'cache-control', 'expires', 'age', 'date', 'location', 'retry-after', 'vary', 'warning',
]);

/** The upstream's trailers that may go to the client; null when none remain. */
export function forwardableTrailers(trailers: Readonly<Record<string, string | string[] | undefined>>): Record<string, string | string[]> | null {
  let out: Record<string, string | string[]> | null = null;
  for (const [name, value] of Object.entries(trailers)) {
    if (value === undefined || NOT_IN_TRAILERS.has(name)) continue;
    (out ??= {})[name] = value;
  }
  return out;
}

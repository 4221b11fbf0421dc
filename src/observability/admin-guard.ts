/**
 * What guards the admin listener (DESIGN §7: "JSON only, own Host"), and its
 * answers for what it refuses, in the JSON shape of every answer Sluice
 * writes itself: `{"error": <status name>, "reason": <code>, "message"}`.
 *
 * The threats, on a listener that is on loopback by default (which keeps the
 * network out, but not a web page open in a browser on the same machine):
 *
 * - Cross-site requests. Any page can POST a form (text/plain, urlencoded,
 *   multipart) to http://127.0.0.1:9901 without asking. POST endpoints take
 *   only `content-type: application/json`, which a page can send to another
 *   origin only after a CORS preflight, and the admin listener approves none
 *   (OPTIONS answers 404 without CORS headers).                        → 415
 * - DNS rebinding. A page at evil.example whose name is then re-pointed to
 *   127.0.0.1 is same-origin with the admin listener as far as the browser
 *   knows: it could read /admin/state and send JSON. Its requests still say
 *   `Host: evil.example`. The browser-facing endpoints (the live page,
 *   /admin/*, every POST) answer only a Host that is the address the
 *   connection arrived on, the configured `admin.host`, a loopback address,
 *   `localhost`, or a name in `admin.allowedHosts` (ports are not compared:
 *   a tunnel or port-forward changes them, a rebinding attack does not need
 *   to).                                     → 421 Misdirected Request
 *   An `Origin` header, when a browser sends one, must name such a host too. → 403
 * - The network. With `admin.token` set, a POST needs
 *   `Authorization: Bearer <token>`                                    → 401
 *   Without one, a POST is accepted only on a connection that arrived on a
 *   loopback address (the machine itself, kubectl exec / port-forward); a
 *   listener on another address logs a warning at start.               → 403
 *
 * /metrics, /healthz and /readyz are read-only, and scrapers and probes
 * reach them by names the listener cannot know (Service DNS names): they are
 * not guarded. The guard reads `access()` per request, so a reload that
 * changes `admin.allowedHosts` or `admin.token` applies at once.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AdminConfig } from '../config/types.js';

export type AdminAccess = Pick<AdminConfig, 'host' | 'allowedHosts' | 'token'>;

/** Everything the admin listener refuses, one table: status, `error`, message. */
const REFUSED = {
  host_not_allowed: { status: 421, error: 'misdirected_request', message: 'the Host is not this listener\'s address, localhost or one of admin.allowedHosts' },
  origin_not_allowed: { status: 403, error: 'forbidden', message: 'the Origin is not this listener\'s address, localhost or one of admin.allowedHosts' },
  bad_token: { status: 401, error: 'unauthorized', message: 'this endpoint needs Authorization: Bearer <admin.token>' },
  token_required: { status: 403, error: 'forbidden', message: 'POST from another address than loopback needs admin.token to be set' },
  not_json: { status: 415, error: 'unsupported_media_type', message: 'POST endpoints take content-type: application/json only' },
  invalid_json: { status: 400, error: 'bad_request', message: 'the body is not valid JSON' },
  body_too_large: { status: 413, error: 'content_too_large', message: 'the body is larger than 64 KiB' },
  no_such_endpoint: { status: 404, error: 'not_found', message: 'no such admin endpoint' },
  bad_request: { status: 400, error: 'bad_request', message: 'the request cannot be parsed' },
  internal_error: { status: 500, error: 'internal_error', message: 'a bug in Sluice; logged with its stack' },
} as const;
export type AdminRefusal = keyof typeof REFUSED;

/** Paths a machine reads (scrapers, probes): no Host check. */
const MACHINE_PATHS: ReadonlySet<string> = new Set(['/metrics', '/healthz', '/readyz']);
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
const BODY_LIMIT = 64 * 1024;

function refuse(reply: FastifyReply, reason: AdminRefusal): FastifyReply {
  const r = REFUSED[reason];
  if (reason === 'bad_token') reply.header('www-authenticate', 'Bearer realm="sluice-admin"');
  return reply.code(r.status).header('cache-control', 'no-store').send({ error: r.error, reason, message: r.message });
}

/** The host name of a Host header value (or an Origin's authority): lower-cased, no port, no brackets, no trailing dot; null if malformed. */
export function hostName(value: string | undefined): string | null {
  if (value === undefined || value === '') return null;
  const v = value.toLowerCase();
  let name: string;
  let rest: string;
  if (v.startsWith('[')) {
    const end = v.indexOf(']');
    if (end < 0) return null;
    name = v.slice(1, end);
    rest = v.slice(end + 1);
    if (isIP(name) !== 6) return null;
  } else {
    const colon = v.indexOf(':');
    name = colon < 0 ? v : v.slice(0, colon);
    rest = colon < 0 ? '' : v.slice(colon);
  }
  if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return null;
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name === '' ? null : name;
}

/** An address without the IPv4-mapped prefix (::ffff:127.0.0.1 → 127.0.0.1), lower-cased, brackets removed. */
function plain(address: string): string {
  const a = address.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

export function isLoopback(address: string): boolean {
  const a = plain(address);
  return a === 'localhost' || a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

/** Whether `name` (from Host or Origin) names this listener: see the header. */
export function isOwnHost(name: string, access: AdminAccess, localAddress: string | undefined): boolean {
  const n = plain(name);
  if (isLoopback(n)) return true;
  if (localAddress !== undefined && n === plain(localAddress)) return true;
  if (n === plain(access.host)) return true;
  return access.allowedHosts.some((h) => plain(h) === n);
}

function originAllowed(origin: string, access: AdminAccess, localAddress: string | undefined): boolean {
  let authority: string;
  try {
    authority = new URL(origin).host; // 'null' (sandboxed pages, file:) throws: refused
  } catch {
    return false;
  }
  const name = hostName(authority);
  return name !== null && isOwnHost(name, access, localAddress);
}

/** Constant-time comparison of the presented bearer token with the configured one (hashed first: equal lengths). */
function tokenMatches(header: string | undefined, token: string): boolean {
  const m = header === undefined ? null : /^bearer +(\S+) *$/i.exec(header);
  if (m === null) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]!), digest(token));
}

function isJson(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.split(';')[0]!.trim().toLowerCase() === 'application/json';
}

/** What the checks read of a request. */
export interface GuardedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: FastifyRequest['headers'];
  /** The local address the connection arrived on. */
  readonly localAddress: string | undefined;
}

/** Which check refuses the request, or null when it may pass. */
export function check(req: GuardedRequest, access: AdminAccess): AdminRefusal | null {
  const path = req.url.split('?')[0]!;
  const write = !SAFE_METHODS.has(req.method);
  if (!write && MACHINE_PATHS.has(path)) return null;
  const local = req.localAddress;
  const name = hostName(req.headers.host);
  if (name === null || !isOwnHost(name, access, local)) return 'host_not_allowed';
  const origin = req.headers.origin;
  if (origin !== undefined && !originAllowed(origin, access, local)) return 'origin_not_allowed';
  if (!write) return null;
  if (access.token !== undefined) {
    if (!tokenMatches(req.headers.authorization, access.token)) return 'bad_token';
  } else if (local === undefined || !isLoopback(local)) return 'token_required';
  return isJson(req.headers['content-type']) ? null : 'not_json';
}

/** The start-up warning for a listener reachable from the network whose POST endpoints have no token. */
export function adminWarning(admin: AdminAccess): string | null {
  if (isLoopback(admin.host) || admin.token !== undefined) return null;
  return `admin listener on ${admin.host} without admin.token: POST endpoints (/admin/reload) answer only connections on loopback; set admin.token to use them from elsewhere`;
}

function fastifyErrorReason(err: FastifyError): AdminRefusal {
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return 'body_too_large';
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return 'not_json';
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return err instanceof SyntaxError ? 'invalid_json' : 'bad_request';
  return 'internal_error';
}

/**
 * Installs the guard on the admin listener: the checks (before routing and
 * body parsing), a JSON body parser that accepts an empty body, and answers
 * in the JSON shape for unknown paths and errors.
 */
export function guardAdmin(admin: FastifyInstance, access: () => AdminAccess): void {
  admin.addHook('onRequest', async (req, reply) => {
    const refused = check({ method: req.method, url: req.url, headers: req.headers, localAddress: req.socket.localAddress }, access());
    if (refused !== null) return refuse(reply, refused);
    return undefined;
  });
  admin.removeAllContentTypeParsers();
  admin.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_req, body, done) => {
    const text = (body as string).trim();
    if (text === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text) as unknown);
    } catch (err) {
      const e = err as FastifyError;
      e.statusCode = 400;
      done(e, undefined);
    }
  });
  admin.setNotFoundHandler((_req, reply) => refuse(reply, 'no_such_endpoint'));
  admin.setErrorHandler((err: FastifyError, req, reply) => {
    const reason = fastifyErrorReason(err);
    if (reason === 'internal_error') req.log.error({ err }, 'admin endpoint failed');
    return refuse(reply, reason);
  });
}

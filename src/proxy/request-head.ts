/**
 * The request head's own problems, checked on the raw request before any
 * routing (RFC 9112). Node's parser already refused what it cannot parse
 * (./front.ts clientError); these are the rules it lets through:
 *
 *   more than server.maxHeaderCount fields   431 headers_too_large (Node
 *                                            would drop the fields past
 *                                            its own count silently: an
 *                                            Authorization after them
 *                                            would never arrive)
 *   HTTP/1.1 without Host, or two Hosts      400 bad_request (§3.2)
 *   absolute-form target                     accepted (§3.2.2): the path
 *                                            is routed, the target's
 *                                            authority is the Host
 *   Transfer-Encoding not ending in chunked  400 bad_request (RFC 9112 §6.3:
 *                                            the body's length is unknown)
 *   a transfer coding besides chunked        501 transfer_coding_not_implemented
 *                                            (§6.1: Sluice cannot decode
 *                                            gzip etc. and will not forward a
 *                                            body it would mislabel)
 * Every one of these answers closes the connection: a head that is wrong
 * says nothing reliable about where the next request starts.
 */
import type { IncomingMessage } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import type { ErrorCode } from './errors.js';
import type { FrontFields } from './request-ctx.js';

/** An HTTP/2 request's pseudo-header fields (:method, :scheme, :authority, :path) are in its raw headers too. */
const PSEUDO_FIELDS = 4;

/** scheme://authority[path-and-query] (a fragment is not part of a target). */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^#]*)$/i;

/** Host fields in the raw head (Node keeps the first of several and drops the rest). */
function hostCount(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')) n++;
  }
  return n;
}

/**
 * Rewrites an absolute-form target to origin-form (url = path and query,
 * Host = the authority). False when the target is absolute-form but not a
 * usable http(s) URI (no authority, or userinfo: RFC 9110 §4.2.4).
 */
function originForm(req: IncomingMessage, url: string): boolean {
  const m = ABSOLUTE_FORM.exec(url);
  if (m === null) return true; // '*', authority-form...: left to the path check (400 bad_path)
  const authority = m[1] as string;
  if (authority === '' || authority.includes('@')) return false;
  const rest = m[2] as string;
  req.url = rest === '' ? '/' : rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest;
  req.headers.host = authority;
  return true;
}

function codingProblem(te: string): ErrorCode | null {
  const codings = te.toLowerCase().split(',').map((c) => c.trim());
  if (codings[codings.length - 1] !== 'chunked') return 'bad_request';
  return codings.length === 1 ? null : 'transfer_coding_not_implemented';
}

/**
 * An HTTP/2 request's header list size as RFC 9113 §6.5.2 counts it: name
 * and value octets plus 32 per field. Node advertises
 * SETTINGS_MAX_HEADER_LIST_SIZE but accepts larger lists (the setting is
 * advisory to nghttp2): server.http2.maxHeaderListBytes is enforced here.
 */
function headerListBytes(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i++) n += (raw[i] as string).length;
  return n + 16 * raw.length;
}

/** null when the head is fine (after rewriting an absolute-form target), else the code to answer. */
export function headProblem(req: IncomingMessage, maxHeaderCount: number, maxHeaderListBytes = Infinity): ErrorCode | null {
  const raw = req.rawHeaders;
  if ((req as unknown as FrontFields).h2) {
    if (raw.length > 2 * (maxHeaderCount + PSEUDO_FIELDS) || headerListBytes(raw) > maxHeaderListBytes) return 'headers_too_large';
    // Neither :authority nor Host (RFC 9113 §8.3.1): nothing to route by. The rest is nghttp2's to check.
    return req.headers.host === undefined ? 'bad_request' : null;
  }
  if (raw.length > 2 * maxHeaderCount) return 'headers_too_large';
  const hosts = hostCount(raw);
  if (hosts > 1) return 'bad_request';
  const url = req.url ?? '/';
  if (url.charCodeAt(0) !== 47 /* / */ && !originForm(req, url)) return 'bad_request';
  if (hosts === 0 && req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1) return 'bad_request';
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && te !== 'chunked') return codingProblem(te);
  return null;
}

/** Whether the request says a body follows (a Content-Length above 0, or chunked; on HTTP/2, a HEADERS frame that did not end the stream). */
export function hasBody(req: IncomingMessage): boolean {
  if ((req as unknown as FrontFields).h2) return !(req as unknown as { stream: ServerHttp2Stream }).stream.endAfterHeaders;
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

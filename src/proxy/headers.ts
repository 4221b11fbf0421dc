/**
 * Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not
 * the message, so they are removed in both directions. (Forwarding headers,
 * X-Forwarded-* and Via, will live here too.)
 */

type Headers = Record<string, string | string[] | number | undefined>;

/**
 * Request headers that describe the client's connection, removed before
 * forwarding. reply-from already drops `connection`, the headers it names
 * and `transfer-encoding`. undici refuses `keep-alive`, `upgrade` and
 * `expect` outright, so forwarding them would turn a client's header into a
 * failed upstream exchange. `expect: 100-continue` has been answered by Node
 * already (the body is on its way); `te` only survives as `trailers`.
 */
export function stripRequestHopByHop(headers: Headers): void {
  if (headers['keep-alive'] !== undefined) delete headers['keep-alive'];
  if (headers.upgrade !== undefined) delete headers.upgrade;
  if (headers.expect !== undefined) delete headers.expect;
  if (headers['proxy-connection'] !== undefined) delete headers['proxy-connection'];
  if (headers['proxy-authorization'] !== undefined) delete headers['proxy-authorization'];
  const te = headers.te;
  if (te !== undefined && !(typeof te === 'string' && te.trim().toLowerCase() === 'trailers')) delete headers.te;
}

/**
 * Response headers that describe the upstream connection: an upstream's
 * `connection: close` must not close the client's keep-alive connection,
 * nor its keep-alive timeout be advertised to the client.
 */
export function stripResponseHopByHop(headers: Headers): void {
  if (headers.connection !== undefined) delete headers.connection;
  if (headers['keep-alive'] !== undefined) delete headers['keep-alive'];
}

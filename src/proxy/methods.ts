/**
 * The request methods Sluice forwards: every method Node's parser accepts
 * (http.METHODS: the standard ones, WebDAV's PROPFIND, MKCOL..., REPORT,
 * PURGE, QUERY...) except the two that are never proxied: TRACE (it would
 * echo the request, headers Sluice adds included, back to the client) and
 * CONNECT (a tunnel, answered by ./front.ts). Both get 405 with `Allow`.
 * A method token the parser does not know gets 501 (./front.ts).
 */
import { METHODS } from 'node:http';

export const NEVER_PROXIED: readonly string[] = ['CONNECT', 'TRACE'];

export const PROXIED_METHODS: readonly string[] = METHODS.filter((m) => !NEVER_PROXIED.includes(m));

/**
 * Opening a listener, and what a failure to open it says: one line naming the
 * listener, the address, the config keys that set it and the cause in words
 * (EADDRINUSE, EACCES, EADDRNOTAVAIL, a host that does not resolve), never a
 * stack. The CLI prints the line and exits 1.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';

export type ListenerName = 'proxy' | 'admin';

/** The config keys that set each listener's address. */
const KEYS: Readonly<Record<ListenerName, string>> = { proxy: 'listen.host/listen.port', admin: 'admin.host/admin.port' };

/** What each error code means to the person who has to fix it. */
const CAUSES: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use (another process listens there)',
  EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EPERM: 'operation not permitted',
  EADDRNOTAVAIL: 'address not available (no interface of this machine has it)',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name could not be resolved (temporary DNS failure)',
  EAI_FAIL: 'the host name could not be resolved',
  EAI_NONAME: 'the host name does not resolve',
  EAFNOSUPPORT: 'address family not supported (IPv6 disabled?)',
  EINVAL: 'invalid address',
};

export class ListenError extends Error {
  constructor(
    readonly listener: ListenerName,
    readonly address: string,
    readonly code: string | undefined,
    cause: unknown,
  ) {
    const because = (code !== undefined ? CAUSES[code] : undefined) ?? (cause instanceof Error ? cause.message : String(cause));
    super(`cannot listen on ${address} (${listener} listener, ${KEYS[listener]}): ${because}${code !== undefined ? ` [${code}]` : ''}`, { cause });
    this.name = 'ListenError';
  }
}

/** `host:port` as a person writes it (IPv6 in brackets). */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The base URL of a listening fastify instance. */
export function urlOf(app: FastifyInstance, scheme: 'http' | 'https' = 'http'): string {
  const a = app.server.address() as AddressInfo;
  return `${scheme}://${hostPort(a.address, a.port)}`;
}

/** Listens, or throws a ListenError that names the listener, the address and the cause. */
export async function listenOn(app: FastifyInstance, listener: ListenerName, host: string, port: number, scheme: 'http' | 'https' = 'http'): Promise<string> {
  try {
    await app.listen({ host, port });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    throw new ListenError(listener, hostPort(host, port), typeof code === 'string' ? code : undefined, err);
  }
  return urlOf(app, scheme);
}

/**
 * The syntax of `forwarding.trustedProxies` entries: an IP address, a CIDR
 * (IPv4 or IPv6) or a named range. Matching lives with the proxy
 * (src/proxy/client-address.ts); the config only checks and lists.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** Named sets a config may use instead of writing the CIDRs out. */
export const NAMED_RANGES: Readonly<Record<string, readonly string[]>> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
};

/** Why `entry` is not an address, a CIDR or a named range; null when it is one. */
export function cidrProblem(entry: string): string | null {
  if (Object.hasOwn(NAMED_RANGES, entry)) return null;
  const slash = entry.indexOf('/');
  const addr = slash < 0 ? entry : entry.slice(0, slash);
  const v4 = isIPv4(addr);
  if (!v4 && !(isIPv6(addr) && !addr.includes('%'))) {
    return `"${entry}" is not an IP address, a CIDR (10.0.0.0/8, fd00::/8) or one of: ${Object.keys(NAMED_RANGES).join(', ')}`;
  }
  if (slash < 0) return null;
  const bitsText = entry.slice(slash + 1);
  const max = v4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > max) return `"${entry}": the prefix length must be an integer from 0 to ${max}`;
  return null;
}

/**
 * Who the client is: the socket's peer address, or — when that peer is a
 * trusted proxy (`forwarding.trustedProxies`) — the address that proxy says
 * it received the request from.
 *
 *   peer untrusted   client = peer; whatever X-Forwarded-For it sent is
 *                    its own claim and is never believed
 *   peer trusted     X-Forwarded-For is read from the right (each proxy
 *                    appends the address it received from): trusted hops
 *                    are skipped, the first untrusted one is the client
 *                    (nginx's real_ip_recursive, Express's proxy-addr);
 *                    when every hop is trusted, the left-most; an entry
 *                    that is not an IP address stops the walk and the
 *                    last trusted hop seen is taken (it wrote the garbage
 *                    or let it through)
 *
 * Addresses are compared in their numeric form: IPv4 as one 32-bit number,
 * IPv6 as eight 16-bit words; an IPv4-mapped IPv6 address (::ffff:10.1.2.3,
 * what a dual-stack listener reports for IPv4 peers) is the IPv4 address, in
 * matching and in what Sluice reports and forwards. Zone ids (fe80::1%eth0)
 * are ignored. The matcher is built once per config; with no trusted
 * proxies (the default) nothing is parsed per request.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { NAMED_RANGES } from '../config/addresses.js';

/** `::ffff:a.b.c.d` → `a.b.c.d`; anything else as it is. */
export function plainAddress(addr: string): string {
  // Fast path: an IPv4 peer on an IPv4 listener.
  if (addr.charCodeAt(0) !== 58 /* : */) return addr;
  return addr.startsWith('::ffff:') && addr.indexOf('.', 7) > 0 ? addr.slice(7) : addr;
}

function v4Number(s: string): number {
  const p = s.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

/** Eight 16-bit words of a valid IPv6 address (as node:net's isIPv6 accepts it). */
function v6Words(s: string): number[] {
  const zone = s.indexOf('%');
  let text = zone >= 0 ? s.slice(0, zone) : s;
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) > 0) {
    // An embedded IPv4 address is the last two words.
    const n = v4Number(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const gap = text.indexOf('::');
  const words = (part: string) => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)));
  if (gap < 0) return words(text);
  const left = words(text.slice(0, gap));
  const right = words(text.slice(gap + 2));
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** An IPv6 address that is an IPv4-mapped one (::ffff:0:0/96): its IPv4 number, else -1. */
function mappedV4(w: readonly number[]): number {
  for (let i = 0; i < 5; i++) if (w[i] !== 0) return -1;
  return w[5] === 0xffff ? (((w[6] as number) << 16) | (w[7] as number)) >>> 0 : -1;
}

interface V4Range {
  readonly net: number;
  readonly mask: number;
}
interface V6Range {
  readonly words: readonly number[];
  readonly bits: number;
}

function v4Mask(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

function v6Contains(r: V6Range, w: readonly number[]): boolean {
  let bits = r.bits;
  for (let i = 0; i < 8 && bits > 0; i++, bits -= 16) {
    const m = bits >= 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff;
    if (((w[i] as number) & m) !== ((r.words[i] as number) & m)) return false;
  }
  return true;
}

/** The trusted proxies of one forwarding policy, matched in numeric form. */
export class TrustedProxies {
  private readonly v4: V4Range[] = [];
  private readonly v6: V6Range[] = [];
  /** No trusted proxy at all: every peer is the client. */
  readonly none: boolean;

  /** @param entries valid per config/addresses.ts cidrProblem (the config checked them) */
  constructor(entries: readonly string[]) {
    for (const e of entries.flatMap((x) => (Object.hasOwn(NAMED_RANGES, x) ? (NAMED_RANGES[x] as readonly string[]) : [x]))) this.add(e);
    this.none = this.v4.length === 0 && this.v6.length === 0;
  }

  private add(entry: string): void {
    const slash = entry.indexOf('/');
    const addr = slash < 0 ? entry : entry.slice(0, slash);
    if (isIPv4(addr)) {
      const bits = slash < 0 ? 32 : Number(entry.slice(slash + 1));
      this.v4.push({ net: (v4Number(addr) & v4Mask(bits)) >>> 0, mask: v4Mask(bits) });
      return;
    }
    const words = v6Words(addr);
    const bits = slash < 0 ? 128 : Number(entry.slice(slash + 1));
    const v4 = mappedV4(words);
    // ::ffff:10.0.0.0/104 is 10.0.0.0/8: mapped peers are compared as IPv4.
    if (v4 >= 0 && bits >= 96) this.v4.push({ net: (v4 & v4Mask(bits - 96)) >>> 0, mask: v4Mask(bits - 96) });
    else this.v6.push({ words, bits });
  }

  /** Whether `addr` (any textual IP form) is a trusted proxy; false for anything that is not an address. */
  has(addr: string): boolean {
    if (this.none) return false;
    const a = plainAddress(addr);
    if (isIPv4(a)) return this.hasV4(v4Number(a));
    if (!isIPv6(a)) return false;
    const w = v6Words(a);
    const v4 = mappedV4(w);
    if (v4 >= 0) return this.hasV4(v4);
    for (const r of this.v6) if (v6Contains(r, w)) return true;
    return false;
  }

  private hasV4(n: number): boolean {
    for (const r of this.v4) if (((n & r.mask) >>> 0) === r.net) return true;
    return false;
  }
}

/** A comma-separated header (possibly sent several times) as its trimmed entries, left to right. */
function entries(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const joined = typeof value === 'string' ? value : value.join(',');
  return joined.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * The client's address (see the file comment). `peer` is the socket's
 * address already in plain form; `peerTrusted` whether it is trusted.
 */
export function clientAddress(peer: string, peerTrusted: boolean, xff: string | string[] | undefined, trusted: TrustedProxies): string {
  if (!peerTrusted) return peer;
  const hops = entries(xff);
  let last = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = plainAddress(stripPort(hops[i] as string));
    if (!isIPv4(hop) && !isIPv6(hop)) return last;
    if (!trusted.has(hop)) return hop;
    last = hop;
  }
  return last;
}

/** `1.2.3.4:5678` and `[::1]:5678` (some proxies write the port) → the address alone. */
function stripPort(hop: string): string {
  if (hop.charCodeAt(0) === 91 /* [ */) {
    const end = hop.indexOf(']');
    return end > 0 ? hop.slice(1, end) : hop;
  }
  const colon = hop.indexOf(':');
  return colon > 0 && hop.indexOf(':', colon + 1) < 0 ? hop.slice(0, colon) : hop;
}

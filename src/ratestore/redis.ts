/**
 * The shared rate store's Redis side (clients.rate.store.redis): one GCRA
 * step per request in a Lua script (../core/rate/gcra.ts is the same math),
 * so a request costs ONE round trip and one key per client, and concurrent
 * instances never race (a script runs atomically).
 *
 * - The script is run by EVALSHA; its SHA1 is computed here, and it is
 *   loaded (SCRIPT LOAD) whenever the connection becomes ready. A NOSCRIPT
 *   answer (Redis restarted or flushed its script cache in between) loads it
 *   again and retries once.
 * - Time comes from Redis (TIME), so instances with skewed clocks agree.
 * - Keys are `${prefix}${clientKey}` and expire when the bucket would be
 *   full again (a key past its TAT means the same as no key).
 * - node-redis writes commands issued in the same tick together (it
 *   schedules one socket write per tick): concurrent requests are pipelined.
 * - Connection loss: node-redis reconnects with the backoff below; while it
 *   is not ready, `ready` is false and SharedRate answers locally. Commands
 *   are never queued offline (disableOfflineQueue): a request must not wait
 *   for a reconnect.
 *
 * Client: node-redis (`@redis/client`, the client package of `redis`
 * without the module packages Sluice does not use), pinned exactly.
 */
import { createHash } from 'node:crypto';
import { createClient } from '@redis/client';
import { allowed, limited, type RateVerdict } from '../core/rate/gcra.js';
import type { RemoteRate } from '../core/rate/rate-store.js';

/**
 * KEYS[1] the client's key; ARGV[1] emission interval in µs (1e6 / perSecond),
 * ARGV[2] burst. Returns {allowed 0|1, remaining, µs until the next request}.
 */
export const GCRA_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local nextTat = tat + interval
local allowAt = nextTat - burst * interval
if allowAt > now then
  return {0, 0, math.ceil(allowAt - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', math.ceil(nextTat)), 'PX', math.max(1, math.ceil((nextTat - now) / 1000)))
local ahead = (now - allowAt) / interval
local remaining = math.floor(ahead + 1e-9)
return {1, remaining, math.ceil((1 - math.max(0, ahead - remaining)) * interval)}
`;

const SHA = createHash('sha1').update(GCRA_SCRIPT).digest('hex');

export interface RedisRateOptions {
  readonly url: string;
  readonly prefix: string;
  readonly perSecond: number;
  readonly burst: number;
  /** Connect timeout (ms); reconnects back off from 50 ms to 2 s. */
  readonly connectTimeoutMs?: number;
  /** Connection errors (the client reconnects by itself); sample before logging. */
  readonly onConnectionError?: (err: Error) => void;
}

type Client = ReturnType<typeof createClient>;

/** Reconnect backoff: 50 ms doubling to 2 s, with ±25% jitter so instances do not reconnect in step. */
export function reconnectDelayMs(retries: number, random: () => number = Math.random): number {
  const base = Math.min(2000, 50 * 2 ** Math.min(retries, 6));
  return Math.round(base * (0.75 + 0.5 * random()));
}

export class RedisRate implements RemoteRate {
  private readonly client: Client;
  private readonly interval: string;
  private readonly burst: string;
  private loaded = false;
  private closed = false;

  constructor(private readonly opts: RedisRateOptions) {
    this.interval = String(1e6 / opts.perSecond);
    this.burst = String(opts.burst);
    this.client = createClient({
      url: opts.url,
      disableOfflineQueue: true,
      socket: {
        connectTimeout: opts.connectTimeoutMs ?? 1000,
        reconnectStrategy: (retries: number) => reconnectDelayMs(retries),
      },
    });
    this.client.on('error', (err: Error) => opts.onConnectionError?.(err));
    this.client.on('ready', () => void this.load());
  }

  /** Starts connecting; never rejects (a Redis that is down at start is retried with backoff, and requests fail open meanwhile). */
  start(): void {
    this.client.connect().catch((err: unknown) => this.opts.onConnectionError?.(err as Error));
  }

  get ready(): boolean {
    return this.client.isReady && this.loaded;
  }

  async take(key: string): Promise<RateVerdict> {
    const args = ['EVALSHA', SHA, '1', this.opts.prefix + key, this.interval, this.burst];
    let reply: unknown;
    try {
      reply = await this.client.sendCommand(args);
    } catch (err) {
      if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err;
      this.loaded = false;
      await this.load();
      reply = await this.client.sendCommand(args);
    }
    return verdictOf(reply);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.client.isOpen) await this.client.close();
    else this.client.destroy();
  }

  private async load(): Promise<void> {
    try {
      await this.client.sendCommand(['SCRIPT', 'LOAD', GCRA_SCRIPT]);
      this.loaded = true;
    } catch (err) {
      this.opts.onConnectionError?.(err as Error);
    }
  }
}

function verdictOf(reply: unknown): RateVerdict {
  if (!Array.isArray(reply) || reply.length !== 3) throw new Error(`unexpected reply from the rate script: ${JSON.stringify(reply)}`);
  const [ok, remaining, waitUs] = reply.map(Number) as [number, number, number];
  return ok === 1 ? allowed(remaining, waitUs / 1e6) : limited(waitUs / 1e6);
}

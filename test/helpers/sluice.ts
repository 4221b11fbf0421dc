/**
 * Starts a real Sluice (proxy + admin listeners on 127.0.0.1 port 0) from a
 * YAML policy text, and talks to it over sockets with undici.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { buildApp, type AppDeps, type Sluice } from '../../src/app.js';
import { loadConfig, parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import type { AdminState } from '../../src/observability/state.js';

export interface Running {
  readonly app: Sluice;
  readonly url: string;
  readonly adminUrl: string;
  /** Log lines written by the instance (parsed JSON). */
  readonly logs: Record<string, unknown>[];
  state(): Promise<AdminState>;
  close(): Promise<void>;
}

/** Loopback port-0 listeners; a policy that has its own `listen:` (TLS, HTTP/2) keeps it (it should say port 0). */
function loopback(yaml: string): string {
  return `${/^listen:/m.test(yaml) ? '' : 'listen: { host: 127.0.0.1, port: 0 }\n'}admin: { host: 127.0.0.1, port: 0 }\n${yaml}`;
}

export async function startSluice(yaml: string, deps: AppDeps = {}): Promise<Running> {
  return startWith(parseConfig(loopback(yaml), 'test.yaml'), deps);
}

/**
 * Writes a policy, with the loopback port-0 listeners startSluice adds, to
 * `file` (default: a new temp file); returns the path. Rewriting the same
 * file and calling reload() is how tests change the running config.
 */
export function writePolicy(yaml: string, file = join(mkdtempSync(join(tmpdir(), 'sluice-')), 'sluice.yaml')): string {
  writeFileSync(file, loopback(yaml));
  return file;
}

/** Like startSluice, but from a policy file (see writePolicy), so the instance can reload it. */
export async function startSluiceFile(file: string, deps: AppDeps = {}): Promise<Running> {
  return startWith(loadConfig(file), deps);
}

async function startWith(config: Config, deps: AppDeps): Promise<Running> {
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const app = await buildApp(config, { logger, ...deps });
  const { proxyUrl, adminUrl } = await app.listen();
  return {
    app,
    url: proxyUrl,
    adminUrl,
    logs,
    async state() {
      const r = await undiciRequest(`${adminUrl}/admin/state`);
      return (await r.body.json()) as AdminState;
    },
    close: () => app.close(),
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

/** The headers an admin POST needs (the admin listener takes JSON only). */
export const JSON_POST: Readonly<Record<string, string>> = { 'content-type': 'application/json' };

/** A fresh connection per call by default, so a held request never blocks the next. */
const agent = new Agent({ pipelining: 0, keepAliveTimeout: 1, connections: 1000 });

export async function send(
  url: string,
  opts: { method?: Dispatcher.HttpMethod; headers?: Readonly<Record<string, string>>; body?: string | Buffer; signal?: AbortSignal } = {},
): Promise<Answer> {
  const r = await undiciRequest(url, { dispatcher: agent, method: opts.method ?? 'GET', headers: opts.headers, body: opts.body, signal: opts.signal });
  const text = await r.body.text();
  return {
    status: r.statusCode,
    headers: r.headers,
    text,
    json: <T>() => JSON.parse(text) as T,
  };
}

/** Polls `check` (no fixed sleeps: bounded retries on the event loop) until it returns true. */
export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Asserts the refusal contract: status, reason, integer Retry-After >= 1, JSON body. */
export function refusalOf(a: Answer): { reason: string; retryAfter: number; error: string; retryAfterSeconds: number } {
  const ra = Number(a.headers['retry-after']);
  const body = a.json<{ error: string; reason: string; retryAfterSeconds: number }>();
  return { reason: body.reason, retryAfter: ra, error: body.error, retryAfterSeconds: body.retryAfterSeconds };
}

/** Sends bytes exactly as given over a new TCP connection; resolves with everything the server wrote until it closed. */
export async function rawRequest(baseUrl: string, bytes: string, timeoutMs = 3000): Promise<string> {
  return (await rawExchange(baseUrl, bytes, { timeoutMs })).data;
}

/** One HTTP/1.1 answer as raw bytes, split: status, headers (lower-cased names, last one wins), the rest after the head. */
export interface RawAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly rest: string;
}

export function splitAnswer(data: string): RawAnswer {
  const end = data.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = (end < 0 ? data : data.slice(0, end)).split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
  return { status: Number(statusLine?.split(' ')[1] ?? 0), headers, rest: end < 0 ? '' : data.slice(end + 4) };
}

export interface RawResult {
  /** Everything the server wrote (latin1). */
  data: string;
  /** True when the server closed the connection; false when we gave up (timeout or `until`). */
  closedByServer: boolean;
}

/**
 * Like rawRequest, with more control: `parts` are written in turn, `gapMs`
 * apart (a slow client); the exchange ends when the server closes, when
 * `until(data)` holds (then we close: the server kept the connection), or
 * after timeoutMs. A reset by the server counts as closed.
 */
export function rawExchange(
  baseUrl: string,
  parts: string | string[],
  opts: { timeoutMs?: number; gapMs?: number; until?: (data: string) => boolean } = {},
): Promise<RawResult> {
  const u = new URL(baseUrl);
  const queue = typeof parts === 'string' ? [parts] : [...parts];
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    let ended = false;
    let writer: NodeJS.Timeout | undefined;
    const finish = (closedByServer: boolean) => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      clearTimeout(writer);
      sock.destroy();
      resolve({ data: Buffer.concat(chunks).toString('latin1'), closedByServer });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 3000);
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (opts.until?.(Buffer.concat(chunks).toString('latin1'))) finish(false);
    });
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    const writeNext = () => {
      const part = queue.shift();
      if (part === undefined || ended) return;
      sock.write(part);
      if (queue.length > 0) writer = setTimeout(writeNext, opts.gapMs ?? 0);
    };
    writeNext();
  });
}

/**
 * A simulated upstream with limited capacity, for `npm run demo`, the k6 demo
 * setup, benchmarks and integration tests.
 *
 * The model is a service with `workers` threads and an unbounded (or
 * `maxQueue`-bounded) FIFO in front of them. That is what real overloaded
 * services look like from the outside: throughput flattens at
 * workers / serviceTime, and every extra request only adds queueing delay.
 * This is exactly the behaviour Sluice exists to protect against, so the demo
 * must reproduce it rather than simply slowing down every response.
 *
 * Service times follow `serviceModel` (./service-time.ts, shared with the
 * deterministic simulation): `jitter` (±10%, the default), `lognormal`
 * (CoV 0.5) or `bimodal` (90% fast, 10% ten times slower).
 *
 * Control endpoint (same port, never counted as load):
 *   GET  /_control  -> current settings and stats
 *   POST /_control  {"serviceTimeMs":N}, {"workers":N} and/or
 *                   {"serviceModel":"jitter"|"lognormal"|"bimodal"} -> new settings
 * so a demo script or k6 scenario can simulate "the upstream got slower" or
 * "the upstream lost half its capacity" while traffic is running.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { drawServiceTime, isServiceModel, SERVICE_MODELS, type ServiceModel } from './service-time.js';

export interface CapacityUpstreamOptions {
  /** Listen address. Defaults to 127.0.0.1 (the demo never exposes itself). */
  host?: string;
  /** Listen port; 0 (the default) picks a free one. */
  port?: number;
  /** How many requests are served concurrently. */
  workers: number;
  /** Nominal service time of one request (jittered by ±10% with the default model). */
  serviceTimeMs: number;
  /** How service times are drawn around serviceTimeMs; default `jitter`. */
  serviceModel?: ServiceModel;
  /**
   * Maximum number of requests waiting for a worker. When the queue is full a
   * new request gets 503 immediately. Unset = unbounded queue (the classic
   * "latency grows without limit" failure mode).
   */
  maxQueue?: number;
}

export interface CapacityUpstreamStats {
  /** Requests currently being served (occupying a worker). */
  inFlight: number;
  /** Requests waiting for a worker. */
  queued: number;
  /** Requests whose service completed (even if the client left meanwhile). */
  served: number;
  /** Requests refused with 503 because the queue was full. */
  rejected: number;
  /** Highest `inFlight` observed since start. */
  maxInFlightSeen: number;
  /** Requests whose client disconnected while they waited in the queue. */
  abandoned: number;
}

export interface CapacityUpstreamSettings {
  workers: number;
  serviceTimeMs: number;
  serviceModel: ServiceModel;
  maxQueue: number | null;
}

export interface CapacityUpstream {
  url: string;
  port: number;
  setServiceTime(ms: number): void;
  setWorkers(n: number): void;
  setServiceModel(model: ServiceModel): void;
  stats(): CapacityUpstreamStats;
  settings(): CapacityUpstreamSettings;
  close(): Promise<void>;
}

/** A request that has been fully received and is waiting for, or holding, a worker. */
interface Job {
  path: string;
  res: http.ServerResponse;
  /** performance.now() when the request (with its body) was fully received. */
  arrivedAt: number;
  timer: NodeJS.Timeout | null;
}

const CONTROL_PATH = '/_control';

// Longer than any sensible client idle timeout (undici defaults to 4 s and
// honours the server's `Keep-Alive: timeout=` hint), so the upstream is never
// the side that closes an idle connection just as the client reuses it; that
// race shows up as spurious ECONNRESET / 502s in demos.
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

function assertWorkers(n: number): void {
  // 0 is allowed on purpose: it simulates an upstream that accepts connections
  // but makes no progress (a hung service).
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`workers must be an integer >= 0, got ${n}`);
}

function assertServiceTime(ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`serviceTimeMs must be a finite number >= 0, got ${ms}`);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.writableEnded || res.destroyed) return;
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

/** Reads a small request body as text; used only by the control endpoint. */
function readBody(req: http.IncomingMessage, limitBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        reject(new Error('control body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

/**
 * The service model: `workers` concurrent slots and a FIFO in front of them.
 * A Set iterates in insertion order, so it is a FIFO with O(1) removal of an
 * arbitrary entry: exactly what "client left while waiting" needs.
 */
class WorkerModel {
  private readonly queue = new Set<Job>();
  private readonly active = new Set<Job>();
  private served = 0;
  private rejected = 0;
  private abandoned = 0;
  private maxInFlightSeen = 0;
  closing = false;

  constructor(
    private workers: number,
    private serviceTimeMs: number,
    private readonly maxQueue: number | null,
    private serviceModel: ServiceModel = 'jitter',
  ) {}

  settings(): CapacityUpstreamSettings {
    return { workers: this.workers, serviceTimeMs: this.serviceTimeMs, serviceModel: this.serviceModel, maxQueue: this.maxQueue };
  }

  stats(): CapacityUpstreamStats {
    const { served, rejected, maxInFlightSeen, abandoned } = this;
    return { inFlight: this.active.size, queued: this.queue.size, served, rejected, maxInFlightSeen, abandoned };
  }

  setWorkers(n: number): void {
    assertWorkers(n);
    this.workers = n;
    // Growing takes effect at once; shrinking lets in-service requests finish
    // and simply stops handing out freed workers until active < workers.
    this.dispatch();
  }

  /** Like the service time, applies to requests that start service from now on. */
  setServiceModel(model: ServiceModel): void {
    this.serviceModel = model;
  }

  setServiceTime(ms: number): void {
    assertServiceTime(ms);
    // Applies to requests that start service from now on; requests already
    // being served keep the time they were given.
    this.serviceTimeMs = ms;
  }

  /** A fully received request: served now, queued, or refused when the queue is full. */
  admit(path: string, res: http.ServerResponse): void {
    if (this.closing || res.destroyed) return;
    const job: Job = { path, res, arrivedAt: performance.now(), timer: null };
    if (this.active.size < this.workers && this.queue.size === 0) {
      this.startService(job);
      return;
    }
    if (this.maxQueue !== null && this.queue.size >= this.maxQueue) {
      this.rejected++;
      sendJson(res, 503, { ok: false, error: 'upstream_queue_full' });
      return;
    }
    this.queue.add(job);
    res.once('close', () => {
      // 'close' also fires after a normal response; only a job still in the
      // queue means the client gave up before being served.
      if (this.queue.delete(job)) this.abandoned++;
    });
  }

  /** Stops everything: pending service timers would otherwise keep the process alive. */
  stop(): void {
    this.closing = true;
    for (const job of this.active) if (job.timer) clearTimeout(job.timer);
    this.active.clear();
    this.queue.clear();
  }

  private jitteredServiceTime(): number {
    // Even the steady model jitters ±10%, so that responses do not arrive in perfectly
    // synchronised waves, which would make latency percentiles look artificially flat.
    return drawServiceTime(this.serviceModel, this.serviceTimeMs, Math.random);
  }

  private startService(job: Job): void {
    this.active.add(job);
    if (this.active.size > this.maxInFlightSeen) this.maxInFlightSeen = this.active.size;
    const waitedMs = Math.round(performance.now() - job.arrivedAt);
    job.timer = setTimeout(() => {
      job.timer = null;
      this.active.delete(job);
      // The work is done whether or not the client is still there: a real
      // service does not get its CPU time back when the caller hangs up.
      this.served++;
      sendJson(job.res, 200, { ok: true, path: job.path, waitedMs });
      this.dispatch();
    }, this.jitteredServiceTime());
  }

  /** Moves queued jobs onto free workers, oldest first. */
  private dispatch(): void {
    while (!this.closing && this.active.size < this.workers && this.queue.size > 0) {
      const next = this.queue.values().next().value as Job;
      this.queue.delete(next);
      this.startService(next);
    }
  }
}

/** GET /_control: settings and stats; POST: new settings, all validated before any applies. */
async function handleControl(model: WorkerModel, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (req.method === 'GET') {
    req.resume();
    sendJson(res, 200, { ...model.settings(), stats: model.stats() });
    return;
  }
  if (req.method !== 'POST') {
    req.resume();
    res.setHeader('allow', 'GET, POST');
    sendJson(res, 405, { error: 'method_not_allowed' });
    return;
  }
  let parsed: unknown;
  try {
    const text = await readBody(req, 64 * 1024);
    parsed = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    sendJson(res, 400, { error: 'invalid_json' });
    return;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    sendJson(res, 400, { error: 'expected a JSON object' });
    return;
  }
  const body = parsed as Record<string, unknown>;
  // Validate everything before applying anything, so a half-valid request
  // does not leave the upstream in a state nobody asked for.
  const problems: string[] = [];
  const st = body['serviceTimeMs'];
  const wk = body['workers'];
  const sm = body['serviceModel'];
  if (st !== undefined && (typeof st !== 'number' || !Number.isFinite(st) || st < 0)) {
    problems.push('serviceTimeMs must be a finite number >= 0');
  }
  if (wk !== undefined && (typeof wk !== 'number' || !Number.isInteger(wk) || wk < 0)) {
    problems.push('workers must be an integer >= 0');
  }
  if (sm !== undefined && !isServiceModel(sm)) problems.push(`serviceModel must be one of: ${SERVICE_MODELS.join(', ')}`);
  if (problems.length > 0) {
    sendJson(res, 400, { error: 'invalid_settings', problems });
    return;
  }
  if (typeof st === 'number') model.setServiceTime(st);
  if (isServiceModel(sm)) model.setServiceModel(sm);
  if (typeof wk === 'number') model.setWorkers(wk);
  sendJson(res, 200, { ...model.settings(), stats: model.stats() });
}

export async function startCapacityUpstream(opts: CapacityUpstreamOptions): Promise<CapacityUpstream> {
  assertWorkers(opts.workers);
  assertServiceTime(opts.serviceTimeMs);
  if (opts.maxQueue !== undefined && (!Number.isInteger(opts.maxQueue) || opts.maxQueue < 0)) {
    throw new RangeError(`maxQueue must be an integer >= 0, got ${opts.maxQueue}`);
  }
  const model = new WorkerModel(opts.workers, opts.serviceTimeMs, opts.maxQueue ?? null, opts.serviceModel ?? 'jitter');

  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    if (pathname === CONTROL_PATH) {
      handleControl(model, req, res).catch(() => sendJson(res, 500, { error: 'internal' }));
      return;
    }
    // Consume the whole body before queueing, as a real handler would; it
    // also keeps the connection reusable for the next keep-alive request.
    req.resume();
    req.once('end', () => model.admit(url, res));
  });
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  // Must exceed keepAliveTimeout, otherwise Node may time out a request that
  // arrives on a connection that has been idle for a while.
  server.headersTimeout = KEEP_ALIVE_TIMEOUT_MS + 1_000;
  // Requests may legitimately wait a long time in the queue; the default 300 s
  // requestTimeout only concerns receiving the request, so it is left alone.

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });

  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  async function close(): Promise<void> {
    if (model.closing) return;
    model.stop();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    setServiceTime: (ms) => model.setServiceTime(ms),
    setWorkers: (n) => model.setWorkers(n),
    setServiceModel: (m) => model.setServiceModel(m),
    stats: () => model.stats(),
    settings: () => model.settings(),
    close,
  };
}

/**
 * The primary's worker processes (node:cluster): one place per worker
 * (its index is its share of every split bound, core/split.ts), each
 * holding at most one live process.
 *
 *   start     fork every place; each says hello, gets the config and its
 *             share, listens, says ready. Any failure before all are ready
 *             fails the start (the others are killed): like one process that
 *             cannot listen, the instance does not start.
 *   running   a worker that dies is reported (onDeath: logged, counted) and
 *             replaced in the same place after a backoff: 100 ms doubling
 *             with each death in a row, up to 10 s; a worker that served for
 *             10 s resets it. The replacement starts with the config in
 *             force. Its predecessor's permits, queues and connections died
 *             with it; the survivors never counted them.
 *   draining  no replacements; every worker drains and exits; whatever is
 *             still running when the time is up is killed.
 *
 * ask(): one request to one worker, answered exactly once: its reply, an
 * error, `timeout` or `gone` (it exited first).
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { Config } from '../../config/types.js';
import type { WorkerStatus } from '../../observability/state.js';
import type { DrainReport } from '../drain.js';
import { isOurs, type Answers, type Ask, type FromWorker, type ToWorker } from './protocol.js';

export type AskResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly kind: 'error' | 'timeout' | 'gone'; readonly error: string };

/** Replacement backoff: BASE_MS x 2^(deaths in a row - 1), at most MAX_MS; reset after STABLE_MS of service. */
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 10_000;
const STABLE_MS = 10_000;
/** How long a worker may take from fork to ready. */
const START_TIMEOUT_MS = 30_000;

interface Place {
  readonly index: number;
  worker: Worker | null;
  status: Exclude<WorkerStatus, 'unresponsive'>;
  restarts: number;
  deathsInRow: number;
  readyAt: number;
  /** The config generation its process started with or last committed. */
  generation: number;
  replaceTimer: NodeJS.Timeout | null;
  /** Kills a worker that is not ready within START_TIMEOUT_MS (it is then replaced like any that dies). */
  startTimer: NodeJS.Timeout | null;
  pending: Map<number, (r: AskResult<unknown>) => void>;
  report: DrainReport | null;
  failure: string | null;
}

export interface WorkerSetOptions {
  readonly count: number;
  /** The worker entry (dist/worker.js). */
  readonly exec: string;
  readonly log: Logger;
  /** The config in force and its generation (each successful reload is one more). */
  readonly current: () => { readonly config: Config; readonly generation: number };
  readonly onDeath: (index: number, pid: number, code: number | null, signal: string | null) => void;
  /** A worker came up with an older config than the one in force now (a reload ran while it started). */
  readonly onStale: (index: number) => void;
}

/** What the primary shows of a place. */
export interface PlaceView {
  readonly index: number;
  readonly pid: number | null;
  readonly status: Exclude<WorkerStatus, 'unresponsive'>;
  readonly restarts: number;
}

export class WorkerSet {
  private readonly places: Place[];
  private phase: 'starting' | 'running' | 'draining' = 'starting';
  private nextId = 1;
  private proxyUrl = '';
  private started: { resolve: (url: string) => void; reject: (err: Error) => void } | null = null;
  private drained: (() => void) | null = null;

  constructor(private readonly opts: WorkerSetOptions) {
    this.places = Array.from({ length: opts.count }, (_, index) => ({
      index,
      worker: null,
      status: 'down',
      restarts: 0,
      deathsInRow: 0,
      readyAt: 0,
      generation: 0,
      replaceTimer: null,
      startTimer: null,
      pending: new Map(),
      report: null,
      failure: null,
    }));
    // Round-robin hand-off by the primary (node:cluster's default except on Windows): Node 20 has no
    // reusePort. NODE_CLUSTER_SCHED_POLICY=none (Node's own switch) lets the workers accept from the
    // shared socket themselves instead: cheaper per connection, less even (README "Every core").
    if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_RR;
    cluster.setupPrimary({ exec: opts.exec, serialization: 'advanced' });
  }

  /** Forks every worker; resolves with the proxy URL once all are ready, rejects (and kills them) if one fails first. */
  start(): Promise<string> {
    const done = new Promise<string>((resolve, reject) => (this.started = { resolve, reject }));
    for (const p of this.places) this.fork(p);
    return done;
  }

  views(): PlaceView[] {
    return this.places.map((p) => ({ index: p.index, pid: p.worker?.process.pid ?? null, status: p.status, restarts: p.restarts }));
  }

  /** Whether `pid` is one of the live workers. */
  alive(pid: number): boolean {
    return this.places.some((p) => p.worker !== null && p.worker.process.pid === pid);
  }

  /** Indexes of the workers serving now. */
  ready(): number[] {
    return this.places.filter((p) => p.status === 'ready').map((p) => p.index);
  }

  /** Indexes of the workers that serve or finish serving (draining): the ones whose numbers count. */
  live(): number[] {
    return this.places.filter((p) => (p.status === 'ready' || p.status === 'draining') && p.worker !== null).map((p) => p.index);
  }

  generationOf(index: number): number {
    return (this.places[index] as Place).generation;
  }

  /** The worker at `index` now runs config `generation` (a committed reload). */
  committed(index: number, generation: number): void {
    (this.places[index] as Place).generation = generation;
  }

  ask<W extends Ask['what']>(index: number, ask: Ask & { what: W }, timeoutMs: number): Promise<AskResult<Answers[W]>> {
    const p = this.places[index] as Place;
    const w = p.worker;
    if (w === null || !w.isConnected()) return Promise.resolve({ ok: false, kind: 'gone', error: 'not running' });
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        p.pending.delete(id);
        resolve({ ok: false, kind: 'timeout', error: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      p.pending.set(id, (r) => {
        clearTimeout(timer);
        p.pending.delete(id);
        resolve(r as AskResult<Answers[W]>);
      });
      const msg: ToWorker = { type: 'sluice:ask', id, ...ask };
      w.send(msg);
    });
  }

  /** The same ask to every worker in `indexes`, answers by index. */
  async askAll<W extends Ask['what']>(indexes: readonly number[], ask: Ask & { what: W }, timeoutMs: number): Promise<Map<number, AskResult<Answers[W]>>> {
    const answers = await Promise.all(indexes.map((i) => this.ask<W>(i, ask, timeoutMs)));
    return new Map(indexes.map((i, k) => [i, answers[k] as AskResult<Answers[W]>]));
  }

  /** Kills the worker at `index` (it is replaced like any that dies). */
  kill(index: number): void {
    (this.places[index] as Place).worker?.process.kill('SIGKILL');
  }

  /** Every worker drains and exits; resolves with their reports once all are gone (killed after `timeoutMs`). */
  drain(timeoutMs: number): Promise<DrainReport[]> {
    this.phase = 'draining';
    for (const p of this.places) {
      if (p.replaceTimer !== null) clearTimeout(p.replaceTimer);
      p.replaceTimer = null;
      if (p.worker === null) continue;
      if (p.status === 'starting') {
        // Not serving yet (and not listening for a drain): nothing to finish.
        p.worker.process.kill('SIGKILL');
        continue;
      }
      p.status = 'draining';
      const msg: ToWorker = { type: 'sluice:drain' };
      p.worker.send(msg);
    }
    const reports = () => this.places.flatMap((p) => (p.report === null ? [] : [p.report]));
    if (this.places.every((p) => p.worker === null)) return Promise.resolve(reports());
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.opts.log.warn({ workers: this.places.filter((p) => p.worker !== null).map((p) => p.index) }, 'drain: workers still running after the drain time; killing them');
        for (const p of this.places) p.worker?.process.kill('SIGKILL');
      }, timeoutMs);
      this.drained = () => {
        clearTimeout(timer);
        resolve(reports());
      };
    });
  }

  private fork(p: Place): void {
    p.replaceTimer = null;
    const { config, generation } = this.opts.current();
    const w = cluster.fork();
    p.worker = w;
    p.status = 'starting';
    p.generation = generation;
    p.failure = null;
    p.startTimer = setTimeout(() => {
      p.failure = `not ready after ${START_TIMEOUT_MS} ms`;
      w.process.kill('SIGKILL');
    }, START_TIMEOUT_MS);
    w.on('message', (msg: unknown) => {
      if (isOurs<FromWorker>(msg)) this.onMessage(p, w, msg, config);
    });
    w.on('exit', (code, signal) => this.onExit(p, w, code, signal));
  }

  private onMessage(p: Place, w: Worker, msg: FromWorker, config: Config): void {
    switch (msg.type) {
      case 'sluice:hello': {
        const start: ToWorker = { type: 'sluice:start', config, share: { index: p.index, count: this.opts.count } };
        w.send(start);
        return;
      }
      case 'sluice:ready':
        if (p.startTimer !== null) clearTimeout(p.startTimer);
        p.startTimer = null;
        p.status = p.status === 'draining' ? 'draining' : 'ready';
        p.readyAt = performance.now();
        this.proxyUrl = msg.proxyUrl;
        this.opts.log.debug({ worker: p.index, pid: w.process.pid }, 'worker ready');
        if (this.phase === 'starting') this.maybeStarted();
        else if (p.generation !== this.opts.current().generation) this.opts.onStale(p.index);
        return;
      case 'sluice:failed':
        p.failure = msg.message;
        return;
      case 'sluice:reply':
        p.pending.get(msg.id)?.(msg.ok ? { ok: true, value: msg.value } : { ok: false, kind: 'error', error: msg.error });
        return;
      case 'sluice:drained':
        p.report = msg.report;
        return;
    }
  }

  private maybeStarted(): void {
    if (this.started !== null && this.places.every((p) => p.status === 'ready')) {
      this.phase = 'running';
      this.started.resolve(this.proxyUrl);
      this.started = null;
    }
  }

  private failStart(why: string): void {
    if (this.started === null) return;
    const started = this.started;
    this.started = null;
    this.phase = 'draining';
    for (const p of this.places) p.worker?.process.kill('SIGKILL');
    started.reject(new Error(why));
  }

  private onExit(p: Place, w: Worker, code: number | null, signal: string | null): void {
    if (p.worker !== w) return;
    p.worker = null;
    if (p.startTimer !== null) clearTimeout(p.startTimer);
    p.startTimer = null;
    for (const settle of p.pending.values()) settle({ ok: false, kind: 'gone', error: 'the worker exited' });
    p.pending.clear();
    const pid = w.process.pid ?? 0;
    if (this.phase === 'starting') {
      this.failStart(`worker ${p.index} could not start: ${p.failure ?? `exited (${signal ?? code})`}`);
      return;
    }
    if (this.phase === 'draining') {
      p.status = 'down';
      if (this.places.every((x) => x.worker === null)) this.drained?.();
      return;
    }
    const stable = p.status === 'ready' && performance.now() - p.readyAt >= STABLE_MS;
    p.deathsInRow = stable ? 1 : p.deathsInRow + 1;
    p.restarts++;
    p.status = 'down';
    const delayMs = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (p.deathsInRow - 1));
    this.opts.log.error(
      { worker: p.index, pid, code, signal, failure: p.failure ?? undefined, restartInMs: delayMs, restarts: p.restarts },
      'worker died; its in-flight requests and queue are gone; replacing it',
    );
    this.opts.onDeath(p.index, pid, code, signal);
    p.replaceTimer = setTimeout(() => this.fork(p), delayMs);
  }
}

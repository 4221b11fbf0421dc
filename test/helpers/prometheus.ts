/**
 * A real Prometheus server (Debian package `prometheus`, installed by .ci/run)
 * for tests: started by the test itself on a free loopback port with its own
 * config and storage in a temp directory, scraping the given targets every
 * second, and removed on close.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { requireBinary } from './prom.js';

/** One series of a range query: its labels and its [unix seconds, value] points. */
export interface RangeSeries {
  readonly metric: Readonly<Record<string, string>>;
  readonly values: readonly (readonly [number, number])[];
}

export interface TestPrometheus {
  readonly url: string;
  /** An instant query at `time` (unix seconds; default now): the result vector. */
  query(expr: string, time?: number): Promise<{ metric: Record<string, string>; value: number }[]>;
  /** A range query, as a dashboard panel runs it; values parsed (NaN stays NaN). */
  queryRange(expr: string, start: number, end: number, stepSeconds: number): Promise<RangeSeries[]>;
  /** Resolves once a scrape of `job` newer than `afterUnixSeconds` is stored. */
  waitForScrape(job: string, afterUnixSeconds: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** A port that was free a moment ago (Prometheus cannot listen on port 0 and report it). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

interface ApiAnswer<T> {
  status: string;
  error?: string;
  data: T;
}

async function api<T>(url: string): Promise<T> {
  const r = await request(url);
  const body = (await r.body.json()) as ApiAnswer<T>;
  if (r.statusCode !== 200 || body.status !== 'success') throw new Error(`${url}: ${r.statusCode} ${body.error ?? ''}`);
  return body.data;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Like sleep, but never keeps the process alive (for deadlines raced against other promises). */
const deadline = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

export async function startPrometheus(targets: Record<string, string>): Promise<TestPrometheus> {
  const bin = requireBinary('prometheus', 'prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-prom-'));
  const jobs = Object.entries(targets).map(([job, target]) => `  - job_name: ${job}\n    static_configs: [{ targets: ['${target}'] }]\n`);
  writeFileSync(join(dir, 'prometheus.yml'), `global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n${jobs.join('')}`);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let output = '';
  const child: ChildProcess = spawn(
    bin,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const close = async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.race([exited, deadline(10_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const end = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${output}`);
      const ready = await request(`${url}/-/ready`).then(
        async (r) => (await r.body.text(), r.statusCode === 200),
        () => false,
      );
      if (ready) break;
      if (Date.now() > end) throw new Error(`prometheus not ready after 20 s:\n${output}`);
      await sleep(100);
    }
  } catch (err) {
    await close();
    throw err;
  }

  const query = async (expr: string, time?: number) => {
    const q = `${url}/api/v1/query?query=${encodeURIComponent(expr)}${time === undefined ? '' : `&time=${time}`}`;
    const data = await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(q);
    return data.result.map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
  };

  return {
    url,
    query,
    async queryRange(expr, start, end, step) {
      const q = `${url}/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${start}&end=${end}&step=${step}`;
      const data = await api<{ result: { metric: Record<string, string>; values: [number, string][] }[] }>(q);
      return data.result.map((s) => ({ metric: s.metric, values: s.values.map(([t, v]) => [t, Number(v)] as const) }));
    },
    async waitForScrape(job, after, timeoutMs = 20_000) {
      // Prometheus hands new targets to the scrapers after its 5 s discovery throttle.
      const end = Date.now() + timeoutMs;
      for (;;) {
        const up = await query(`timestamp(up{job="${job}"} == 1)`);
        if (up.some((s) => s.value > after)) return;
        if (Date.now() > end) throw new Error(`no scrape of ${job} after ${after} within ${timeoutMs} ms:\n${output}`);
        await sleep(200);
      }
    },
    close,
  };
}

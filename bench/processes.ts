/**
 * The benchmark's processes: upstream, Sluice (the real CLI), the bare
 * proxy and the load generator each run as their own Node process, optionally
 * pinned to a core with taskset, so no two of them share an event loop and
 * one process's CPU use can be read on its own from /proc.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { LoadResult, LoadSpec } from './loadgen.js';

/** build/bench/ (compiled) -> the repository root. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PROCS = fileURLToPath(new URL('./procs/', import.meta.url));
export const SLUICE_CLI = `${ROOT}dist/cli.js`;

const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;

function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
}
const CLK_TCK = clockTicks();

/** Where each process runs: cores by role, or null for no pinning. */
export interface Placement {
  readonly loadgen: number | null;
  readonly upstream: number | null;
  readonly proxy: number | null;
}

export function canPin(): boolean {
  if (process.platform !== 'linux') return false;
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface Proc {
  readonly name: string;
  readonly pid: number;
  /** What the process announced when ready (its first matching stdout line). */
  readonly ready: Record<string, unknown>;
  /** User + system CPU seconds used so far (Linux /proc), or NaN. */
  cpuSeconds(): number;
  /** Resident set size in bytes (Linux /proc), or NaN. */
  rssBytes(): number;
  stop(): Promise<void>;
}

function command(args: string[], cpu: number | null): [string, string[]] {
  // taskset execs node, so the child's pid is node's own.
  return cpu === null ? [process.execPath, args] : ['taskset', ['-c', String(cpu), process.execPath, ...args]];
}

function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is the 1st, utime the 12th, stime the 13th.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return Number.NaN;
  }
}

/** The fields after "(comm)" of /proc/PID/stat (state is the 1st), or null. */
function statFields(pid: number | string): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/**
 * CPU seconds of a process and its children (Sluice's primary and its
 * workers): its own user + system time, what its children that exited used
 * (cutime + cstime), and every live child's own time (found by ppid in /proc).
 */
export function treeCpuSeconds(pid: number): number {
  const own = statFields(pid);
  if (own === null) return Number.NaN;
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(entry);
    // ppid is the 2nd field after "(comm)".
    if (f !== null && Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / CLK_TCK;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Starts a long-running process and resolves once a stdout line satisfies
 * `isReady` (parsed as JSON). Its output keeps being read (a full pipe would
 * block it); the last lines are kept for error messages.
 */
export async function startProc(
  name: string,
  args: string[],
  cpu: number | null,
  isReady: (msg: Record<string, unknown>) => boolean,
  env?: Readonly<Record<string, string>>,
): Promise<Proc> {
  const [cmd, argv] = command(args, cpu);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT, env: env === undefined ? undefined : { ...process.env, ...env } });
  const tail: string[] = [];
  const keep = (line: string): void => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
  };
  createInterface({ input: child.stderr! }).on('line', keep);
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name}: not ready after ${READY_TIMEOUT_MS} ms\n${tail.join('\n')}`));
    }, READY_TIMEOUT_MS);
    let done = false;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      if (done) return;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (msg !== null && typeof msg === 'object' && isReady(msg as Record<string, unknown>)) {
        done = true;
        clearTimeout(timer);
        resolve(msg as Record<string, unknown>);
      }
    });
    child.once('exit', (code, signal) => {
      if (done) return;
      clearTimeout(timer);
      reject(new Error(`${name}: exited (${code ?? signal}) before it was ready\n${tail.join('\n')}`));
    });
  });
  const pid = child.pid as number;
  return {
    name,
    pid,
    ready,
    cpuSeconds: () => cpuSecondsOf(pid),
    rssBytes: () => rssOf(pid),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited(child);
      clearTimeout(timer);
    },
  };
}

const hasUrl = (m: Record<string, unknown>): boolean => typeof m['url'] === 'string';

export function startFastUpstream(cpu: number | null): Promise<Proc> {
  return startProc('upstream', [`${PROCS}upstream.js`, '--mode', 'fast'], cpu, hasUrl);
}

export function startFastH2Upstream(cpu: number | null): Promise<Proc> {
  return startProc('upstream-h2', [`${PROCS}upstream.js`, '--mode', 'fast-h2'], cpu, hasUrl);
}

export function startCapacityUpstream(cpu: number | null, workers: number, serviceMs: number): Promise<Proc> {
  return startProc(
    'upstream',
    [`${PROCS}upstream.js`, '--mode', 'capacity', '--workers', String(workers), '--service-ms', String(serviceMs)],
    cpu,
    hasUrl,
  );
}

export function startBareProxy(cpu: number | null, upstream: string): Promise<Proc> {
  return startProc('bare', [`${PROCS}bare-proxy.js`, '--upstream', upstream], cpu, hasUrl);
}

/**
 * The real CLI with a config file; ready when it logs its start-up line
 * (event "started", with its proxy and admin URLs; builds before it said
 * msg "sluice started"). `cli`: another build's dist/cli.js (a baseline).
 */
export function startSluice(cpu: number | null, configFile: string, cli = SLUICE_CLI, env?: Readonly<Record<string, string>>): Promise<Proc> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  return startProc('sluice', [cli, '--config', configFile], cpu, (m) => m['event'] === 'started' || m['msg'] === 'sluice started', env);
}

export function urlOf(p: Proc): string {
  return String(p.ready['url'] ?? p.ready['proxy']);
}

/**
 * Runs one load spec in a fresh generator process and returns its result.
 * `onStart` gets the generator's t0 (epoch ms) as soon as it starts sending.
 */
export async function runLoadgen(spec: LoadSpec, cpu: number | null, onStart?: (epochMs: number) => void): Promise<LoadResult> {
  const [cmd, argv] = command([`${PROCS}loadgen.js`, JSON.stringify(spec)], cpu);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  let result: LoadResult | null = null;
  let err = '';
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const msg = JSON.parse(line) as { started?: number } & Partial<LoadResult>;
    if (typeof msg.started === 'number') onStart?.(msg.started);
    else result = msg as LoadResult;
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err = (err + c).slice(-4000)));
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  if (code !== 0 || result === null) throw new Error(`loadgen exited with ${code}: ${err}`);
  return result;
}

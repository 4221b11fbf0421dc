/**
 * Sluice for the demo as it runs in production: the real CLI (../cli.ts) in a
 * process of its own, with the demo policy in a temporary file. Ready when it
 * logs its start-up line (event "started", with both URLs); its state comes
 * from the admin listener's /admin/state; SIGTERM stops it (the policy sets
 * no readiness grace, so it exits as soon as its requests are done).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import type { AdminState } from '../observability/state.js';

export interface SluiceProcess {
  readonly url: string;
  readonly adminUrl: string;
  /** The start-up line's message, as the CLI logged it. */
  readonly startupLine: string;
  state(): Promise<AdminState>;
  close(): Promise<void>;
}

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));
const READY_TIMEOUT_MS = 20_000;

export async function startSluiceProcess(policy: string): Promise<SluiceProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-demo-'));
  const file = join(dir, 'demo.yaml');
  writeFileSync(file, policy);
  const child = spawn(process.execPath, [CLI, '--config', file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const started = await new Promise<{ proxy: string; admin: string; msg: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('sluice did not start within 20 s')), READY_TIMEOUT_MS);
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const rec = JSON.parse(line) as { event?: string; proxy: string; admin: string; msg: string };
        if (rec.event === 'started') {
          clearTimeout(timer);
          resolve(rec);
        }
      } catch {
        /* not a log line */
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sluice exited (${code}) before it started`));
    });
  }).catch((err: unknown) => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  const agent = new Agent({ connections: 2 });
  return {
    url: started.proxy,
    adminUrl: started.admin,
    startupLine: started.msg,
    async state() {
      const r = await request(`${started.admin}/admin/state`, { dispatcher: agent });
      return (await r.body.json()) as AdminState;
    },
    async close() {
      await agent.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs the real CLI (`node build/src/cli.js --config FILE`) as a child
 * process and collects its JSON log lines.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { eventually } from './sluice.js';

const cli = join(fileURLToPath(new URL('../../../', import.meta.url)), 'build/src/cli.js');

export interface Cli {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly proxy: string;
  readonly admin: string;
  readonly logs: Record<string, unknown>[];
  readonly exited: Promise<number | null>;
}

/** `env` is added to this process's environment (e.g. NODE_EXTRA_CA_CERTS, read by Node only at start). */
export async function startCli(file: string, env: Readonly<Record<string, string>> = {}): Promise<Cli> {
  const child = spawn(process.execPath, [cli, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const logs: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let buf = '';
  child.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const line of lines) if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  // A start that fails (or never logs "started") must not leave the child running: the test
  // process would wait for it forever.
  const startedLine = await Promise.race([
    (async () => {
      await eventually(() => logs.some((l) => l.event === 'started'), 'the start-up line', 15_000);
      return logs.find((l) => l.event === 'started') as { proxy: string; admin: string };
    })(),
    exited.then((code) => {
      throw new Error(`sluice exited early with ${code}`);
    }),
  ]).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return { child, proxy: startedLine.proxy, admin: startedLine.admin, logs, exited };
}

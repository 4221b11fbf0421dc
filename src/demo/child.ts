/**
 * The demo's services as child processes of their own (the upstream, the
 * bare proxy), so that no two share an event loop: under a flood, one's work
 * must not delay another's timers and be blamed on it. The child reports its
 * URL over IPC and exits when the parent goes away, however the parent exits.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ChildService {
  readonly url: string;
  close(): Promise<void>;
}

/** The flag a module's child mode is started with: `node module.js FLAG ARGS_JSON`. */
export const CHILD_FLAG = '--sluice-demo-child';

/** A child that has not exited this long after it was told to is killed. */
const STOP_TIMEOUT_MS = 5000;

function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => c.kill('SIGKILL'), STOP_TIMEOUT_MS);
    c.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    c.disconnect();
  });
}

/** Forks `moduleUrl` in child mode with `args`; resolves once it reports its URL. */
export async function forkService(moduleUrl: string, args: unknown, what: string): Promise<ChildService> {
  const c = fork(fileURLToPath(moduleUrl), [CHILD_FLAG, JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const url = await new Promise<string>((resolve, reject) => {
    c.once('message', (m) => resolve((m as { url: string }).url));
    c.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it listened`)));
  });
  return { url, close: () => stop(c) };
}

/**
 * In a module: when this process was forked in child mode, starts `serve`
 * with its arguments, reports the URL to the parent and closes once the
 * parent goes away.
 */
export function runAsChild<A>(serve: (args: A) => Promise<ChildService>): void {
  if (process.argv[2] !== CHILD_FLAG) return;
  serve(JSON.parse(process.argv[3] as string) as A).then(
    (svc) => {
      process.send?.({ url: svc.url });
      process.once('disconnect', () => {
        svc.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      });
      process.on('SIGINT', () => undefined); // Ctrl-C reaches the whole group: the parent decides.
    },
    (err: unknown) => {
      process.stderr.write(`demo child failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}

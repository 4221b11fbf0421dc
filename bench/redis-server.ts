/**
 * A real redis-server for tests and the benchmark, on a free 127.0.0.1 port (redis has no
 * `--port 0`: a port is found by binding port 0 and closing it), with no
 * persistence. `kill()` is a crash (SIGKILL); `start()` again brings up an
 * empty server on the same port. DEBUG is enabled (from loopback) so a test
 * can make the server stall (`CLIENT PAUSE ALL`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  start(): Promise<void>;
  /** SIGKILL: the server is gone at once, without closing its connections politely. */
  kill(): Promise<void>;
  /** Runs a command through redis-cli; resolves with its output. */
  cli(...args: string[]): Promise<string>;
  /**
   * Makes the server stall for `ms` (CLIENT PAUSE ALL over a socket of our
   * own). `sent` resolves once the server said the pause is in force, `done`
   * when it answers again.
   */
  stall(ms: number): { sent: Promise<void>; done: Promise<void> };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${out}`))));
  });
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const redis: TestRedis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async start() {
      const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = c;
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
        c.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
          out += chunk;
          if (out.includes('Ready to accept connections')) {
            clearTimeout(timer);
            resolve();
          }
        });
        c.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        c.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`redis-server exited with ${code}: ${out}`));
        });
      });
    },
    async kill() {
      const c = child;
      child = null;
      if (c === null || c.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGKILL');
      });
    },
    cli: (...args) => run('redis-cli', ['-p', String(port), ...args]),
    stall(ms) {
      // CLIENT PAUSE ALL: every client's commands wait until the pause ends.
      // Its +OK comes once the pause is in force (DEBUG SLEEP gave no such
      // point: a command of ours read before it was answered at once). The
      // PING behind it is answered when the server serves again.
      const sock = connect(port, '127.0.0.1');
      const arg = String(ms);
      const cmd = (...words: string[]) => `*${words.length}\r\n${words.map((w) => `$${w.length}\r\n${w}\r\n`).join('')}`;
      let buffered = '';
      let onOk: () => void = () => {};
      let onPong: () => void = () => {};
      sock.setEncoding('utf8').on('data', (d: string) => {
        buffered += d;
        if (buffered.startsWith('+OK\r\n')) onOk();
        if (buffered.includes('+PONG\r\n')) {
          sock.destroy();
          onPong();
        }
      });
      const sent = new Promise<void>((resolve) => {
        onOk = resolve;
        sock.once('connect', () => sock.write(cmd('CLIENT', 'PAUSE', arg, 'ALL') + cmd('PING')));
      });
      const done = new Promise<void>((resolve) => (onPong = resolve));
      return { sent, done };
    },
  };
  await redis.start();
  return redis;
}

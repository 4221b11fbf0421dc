/**
 * A real nginx as an upstream for integration tests: its own prefix in a
 * temp directory (config, pid, logs, DAV root and body temp files there; no
 * path outside it), on a free 127.0.0.1 port, in the foreground
 * (`daemon off`, `master_process off`: one process, ours to stop, running as
 * whoever runs the tests). `.ci/run` installs the Debian package.
 *
 *   .../headers   (any path ending so) 200, one `name: value` line for each request
 *                 header the edge tests care about (forwarding, hop-by-hop, Host): echoed()
 *   /dav/...      WebDAV PUT (and GET) into the prefix: a real upload sink
 *                 whose stored size proves the body arrived whole
 *   /status/503   nginx's own 503
 *   anything else 200 "nginx\n"
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Nginx {
  readonly url: string;
  readonly port: number;
  /** Size in bytes of a file PUT to /dav/<name>, or -1 when it is not there. */
  storedSize(name: string): number;
  close(): Promise<void>;
}

/** Request headers /headers echoes, by their nginx variable. */
const ECHOED = [
  'host', 'x_forwarded_for', 'x_forwarded_proto', 'x_forwarded_host', 'x_forwarded_port', 'x_real_ip', 'forwarded', 'via',
  'keep_alive', 'te', 'upgrade', 'proxy_authorization', 'proxy_connection', 'expect', 'x_secret', 'x_request_id', 'transfer_encoding',
];

/** The fields of a /headers answer's body ('' for a field nginx did not get). */
export function echoed(body: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of body.split('\n')) {
    const colon = line.indexOf(': ');
    if (colon > 0) out[line.slice(0, colon)] = line.slice(colon + 2);
    else if (line.endsWith(':')) out[line.slice(0, -1)] = '';
  }
  return out;
}

function config(prefix: string, port: number): string {
  // One `name: value` line per field (values can hold quotes, not line breaks): see echoed().
  const lines = ECHOED.map((h) => `${h.replace(/_/g, '-')}: $http_${h}\\n`).join('');
  return `
master_process off;
daemon off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 256; }
http {
  access_log ${prefix}/access.log;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  server {
    listen 127.0.0.1:${port};
    server_name _;
    location ~ /headers$ {
      default_type text/plain;
      return 200 '${lines}';
    }
    location /dav/ {
      root ${prefix}/www;
      dav_methods PUT;
      create_full_put_path on;
      client_max_body_size 0;
    }
    location = /status/503 { return 503 'busy\\n'; }
    location / { return 200 'nginx\\n'; }
  }
}
`;
}

/** nginx from PATH, or where Debian puts it (/usr/sbin is not on every user's PATH). */
function nginxBinary(): string {
  for (const dir of (process.env['PATH'] ?? '').split(':')) if (dir !== '' && existsSync(join(dir, 'nginx'))) return join(dir, 'nginx');
  if (existsSync('/usr/sbin/nginx')) return '/usr/sbin/nginx';
  throw new Error('nginx is not installed (Debian package nginx; .ci/run installs it)');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Resolves once nginx accepts connections; rejects when it exited first (e.g. the port was taken meanwhile). */
async function ready(child: ChildProcess, port: number, prefix: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${readFileSync(join(prefix, 'error.log'), 'utf8').slice(-500)}`);
    if (await accepting(port)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('nginx did not start within 10 s');
}

export async function startNginx(): Promise<Nginx> {
  const prefix = mkdtempSync(join(tmpdir(), 'sluice-nginx-'));
  mkdirSync(join(prefix, 'www', 'dav'), { recursive: true });
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    writeFileSync(join(prefix, 'nginx.conf'), config(prefix, port));
    const child = spawn(nginxBinary(), ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')], { stdio: 'ignore' });
    try {
      await ready(child, port, prefix);
    } catch (err) {
      lastError = err;
      child.kill('SIGKILL');
      continue;
    }
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      storedSize(name) {
        try {
          return statSync(join(prefix, 'www', 'dav', name)).size;
        } catch {
          return -1;
        }
      },
      async close() {
        if (child.exitCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        rmSync(prefix, { recursive: true, force: true });
      },
    };
  }
  throw lastError;
}

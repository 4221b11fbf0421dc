/**
 * Certificates for TLS tests, made by the real openssl into a temp dir: a
 * CA, a server certificate for localhost / 127.0.0.1 signed by it, and a
 * client certificate (mutual TLS). And curl, run as a real HTTP/1.1 or
 * HTTP/2 client.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Certs {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly cert: string;
  readonly key: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

/** A signed leaf (server or client) named `name`, with subjectAltName `san` when given. */
export function leaf(dir: string, name: string, cn: string, san?: string): { cert: string; key: string } {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, san === undefined ? 'basicConstraints=CA:FALSE\n' : `subjectAltName=${san}\nbasicConstraints=CA:FALSE\n`);
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', ext]);
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

export function makeCerts(): Certs {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Sluice Test CA']);
  const server = leaf(dir, 'server', 'localhost', 'DNS:localhost,IP:127.0.0.1');
  const client = leaf(dir, 'client', 'test-client');
  return { dir, caCert: join(dir, 'ca.pem'), caKey: join(dir, 'ca.key'), cert: server.cert, key: server.key, clientCert: client.cert, clientKey: client.key };
}

export interface CurlResult {
  readonly status: number;
  /** curl's %{http_version}: 1.1 or 2. */
  readonly version: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** curl's exit code (0: a response was read). */
  readonly exit: number;
}

/** Runs curl with `args` and the URL; parses the last response's head and body. */
export function curl(url: string, args: string[] = []): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile('curl', ['-s', '-i', '--max-time', '10', '-w', '\n%{http_version}', ...args, url], { encoding: 'latin1' }, (err, stdout) => {
      const exit = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1;
      const cut = stdout.lastIndexOf('\n');
      const version = stdout.slice(cut + 1);
      const text = stdout.slice(0, cut);
      // With -i and 100 Continue or several heads, the last head is the response's.
      const heads = text.split('\r\n\r\n');
      let i = 0;
      while (i < heads.length - 2 && /^HTTP\/[\d.]+ 1\d\d/.test(heads[i] ?? '')) i++;
      const [statusLine, ...lines] = (heads[i] ?? '').split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      resolve({ status: Number(statusLine?.split(' ')[1] ?? 0), version, headers, body: heads.slice(i + 1).join('\r\n\r\n'), exit });
    });
  });
}

/**
 * TLS termination (listen.tls, protocols/tls.ts) with real peers: curl over
 * HTTP/1.1 and HTTP/2 (ALPN) against a certificate openssl made for the
 * test, node:tls for what a handshake shows (the certificate served, the
 * versions accepted, client certificates), and the reload that swaps the
 * certificate without dropping an open connection.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { JSON_POST, send, startSluiceFile, writePolicy, type Running } from './helpers/sluice.js';
import { curl, leaf, makeCerts, type Certs } from './helpers/tls.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let certs: Certs;
let up: TestUpstream;
let s: Running;
let policy: string;

/** The policy, its certificate files at fixed paths in the temp dir (a reload re-reads them). */
function yaml(extra = ''): string {
  return `
listen: { host: 127.0.0.1, port: 0, http2: true, tls: { certFile: ${join(certs.dir, 'live.pem')}, keyFile: ${join(certs.dir, 'live.key')}${extra} } }
log: { level: error }
lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
routes:
  - name: full
    match: { pathPrefix: /full }
    upstream: ${up.url}
    limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
  - name: open
    match: { pathPrefix: / }
    upstream: ${up.url}
`;
}

before(async () => {
  certs = makeCerts();
  copyFileSync(certs.cert, join(certs.dir, 'live.pem'));
  copyFileSync(certs.key, join(certs.dir, 'live.key'));
  up = await startUpstream();
  policy = writePolicy(yaml());
  s = await startSluiceFile(policy);
});
after(async () => {
  up.releaseAll();
  await s.close();
  await up.close();
});

/** The SHA-256 fingerprint of the certificate a new TLS handshake gets. */
function servedFingerprint(opts: tls.ConnectionOptions = {}): Promise<string> {
  const u = new URL(s.url);
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: u.hostname, port: Number(u.port), ca: [readCa()], servername: 'localhost', ...opts }, () => {
      const fp = sock.getPeerCertificate().fingerprint256;
      sock.destroy();
      resolve(fp);
    });
    sock.on('error', reject);
  });
}

function readCa(): string {
  return readFileSync(certs.caCert, 'utf8');
}

test('curl -k over HTTP/1.1 and HTTP/2 (ALPN): answered, and the upstream is told the client came over https', async () => {
  const h1 = await curl(`${s.url}/echo/h1`, ['-k', '--http1.1']);
  assert.equal(h1.status, 200);
  assert.equal(h1.version, '1.1');
  const h2 = await curl(`${s.url}/echo/h2`, ['-k', '--http2']);
  assert.equal(h2.status, 200);
  assert.equal(h2.version, '2');
  const seen = JSON.parse(h2.body) as { headers: Record<string, string> };
  assert.equal(seen.headers['x-forwarded-proto'], 'https');
  assert.equal(seen.headers.via, '2 sluice');
});

test('the certificate verifies against its CA for localhost (curl without -k)', async () => {
  const r = await curl(`${s.url.replace('127.0.0.1', 'localhost')}/echo/verified`, ['--cacert', certs.caCert, '--http2']);
  assert.equal(r.exit, 0);
  assert.equal(r.status, 200);
});

test('a refusal over TLS is the usual 503 with Retry-After, on HTTP/2 too', async () => {
  // /full's one slot, held by an HTTP/2 request over TLS.
  const held = curl(`${s.url}/full/hold/tls`, ['-k', '--http2']);
  await up.waitHolding(1);
  const r = await curl(`${s.url}/full/x`, ['-k', '--http2']);
  assert.equal(r.status, 503);
  assert.ok(Number(r.headers['retry-after']) >= 1);
  assert.equal((JSON.parse(r.body) as { reason: string }).reason, 'queue_full');
  up.releaseAll();
  assert.equal((await held).status, 200);
});

test('TLS versions below listen.tls.minVersion are refused in the handshake', async () => {
  await assert.rejects(servedFingerprint({ maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }));
  assert.match(await servedFingerprint({ maxVersion: 'TLSv1.2' }), /^[0-9A-F:]+$/);
});

test('a certificate file that cannot be read, or a key that does not match, is a config error naming the file', () => {
  const missing = join(certs.dir, 'nope.pem');
  const bad = (text: string) => {
    try {
      parseConfig(text, 'x.yaml');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.message;
    }
    assert.fail('expected a ConfigError');
  };
  const route = `routes: [{ name: a, match: { pathPrefix: / }, upstream: http://127.0.0.1:1 }]\n`;
  const m1 = bad(`listen:\n  tls: { certFile: ${missing}, keyFile: ${certs.key} }\n${route}`);
  assert.match(m1, new RegExp(`^x\\.yaml:2:\\d+: listen\\.tls\\.certFile: cannot read ${missing.replace(/[.]/g, '\\.')}: ENOENT`));
  const other = leaf(certs.dir, 'other', 'other');
  const m2 = bad(`listen:\n  tls: { certFile: ${certs.cert}, keyFile: ${other.key} }\n${route}`);
  assert.match(m2, /listen\.tls\.keyFile: .*other\.key cannot be used with .*server\.pem/);
  const m3 = bad(`listen:\n  tls: { certFile: ${certs.key}, keyFile: ${certs.key} }\n${route}`);
  assert.match(m3, /listen\.tls\.certFile: .*server\.key is not a PEM certificate/);
});

test('reload swaps the certificate for new handshakes; an open connection lives on; a bad file keeps the old one', async () => {
  const before = await servedFingerprint();
  // An open HTTP/1.1 keep-alive connection over TLS, before the reload.
  const u = new URL(s.url);
  const open = tls.connect({ host: u.hostname, port: Number(u.port), ca: [readCa()], servername: 'localhost', ALPNProtocols: ['http/1.1'] });
  await new Promise((r) => open.once('secureConnect', r));
  const ask = (path: string) =>
    new Promise<string>((resolve) => {
      let data = '';
      const onData = (c: Buffer) => {
        data += c.toString('latin1');
        // The answer is chunked (the upstream's length is not known up front): it ends with the last chunk.
        if (/\r\n\r\n[\s\S]*\r\n0\r\n\r\n$/.test(data)) {
          open.off('data', onData);
          resolve(data);
        }
      };
      open.on('data', onData);
      open.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    });
  assert.match(await ask('/before'), /^HTTP\/1\.1 200/);

  const next = leaf(certs.dir, 'next', 'localhost', 'DNS:localhost,IP:127.0.0.1');
  copyFileSync(next.cert, join(certs.dir, 'live.pem'));
  copyFileSync(next.key, join(certs.dir, 'live.key'));
  const r = await send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers: JSON_POST, body: '{}' });
  assert.equal(r.json<{ result: string }>().result, 'success');
  const after = await servedFingerprint();
  assert.notEqual(after, before);
  assert.match(await ask('/after'), /^HTTP\/1\.1 200/, 'the connection opened before the reload still serves');
  open.destroy();
  const state = await s.state();
  assert.equal(state.listener.tls?.reloads, 1);
  assert.equal(state.listener.tls?.fingerprint, after);

  // A key that does not match: the reload fails, naming the file, and the served certificate stays.
  copyFileSync(certs.key, join(certs.dir, 'live.key'));
  const failed = await send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers: JSON_POST, body: '{}' });
  const body = failed.json<{ result: string; message: string }>();
  assert.equal(body.result, 'error');
  assert.match(body.message, /listen\.tls\.keyFile: .*live\.key cannot be used with .*live\.pem/);
  assert.equal(await servedFingerprint(), after);
  copyFileSync(next.key, join(certs.dir, 'live.key'));
});

test('with caFile, a client must present a certificate signed by it (mutual TLS)', async () => {
  const mtls = await startSluiceFile(writePolicy(yaml(`, caFile: ${certs.caCert}`)));
  try {
    const without = await curl(`${mtls.url}/echo/anon`, ['-k', '--http2']);
    assert.notEqual(without.exit, 0, 'no response without a client certificate');
    const withCert = await curl(`${mtls.url}/echo/client`, ['-k', '--http2', '--cert', certs.clientCert, '--key', certs.clientKey]);
    assert.equal(withCert.status, 200);
    assert.equal((await mtls.state()).listener.tls?.clientCertificates, true);
  } finally {
    await mtls.close();
  }
});

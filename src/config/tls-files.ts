/**
 * `listen.tls`'s files, read and checked as part of loading the config, so
 * that a certificate that cannot serve is a config problem at its key (with
 * the file's path), on start (exit 2) and on reload (the running config and
 * its certificate stay):
 *
 *   certFile   PEM, the leaf first (then any intermediates: the chain sent)
 *   keyFile    PEM private key matching the leaf
 *   caFile     PEM CAs that client certificates must chain to (mutual TLS)
 *
 * The check is the one the listener will run: node:tls builds a secure
 * context from the three (it refuses unreadable PEM and a key that does not
 * match the certificate). The material is kept as PEM text in the config, so
 * a reload compares it and swaps the listener's context only when it
 * changed (protocols/tls.ts).
 */
import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { Issue } from './checks.js';
import type { TlsConfig, TlsMaterial } from './types.js';

export interface RawTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile?: string | undefined;
  readonly minVersion: TlsConfig['minVersion'];
}

const BASE = ['listen', 'tls'] as const;

/** The files of `listen.tls`, paths resolved against the config file's directory. */
export function tlsConfig(raw: RawTls, configFile: string): { readonly tls?: TlsConfig; readonly issues: Issue[] } {
  const dir = configFile === '' ? process.cwd() : dirname(resolve(configFile));
  const certFile = resolve(dir, raw.certFile);
  const keyFile = resolve(dir, raw.keyFile);
  const caFile = raw.caFile === undefined ? undefined : resolve(dir, raw.caFile);
  const issues: Issue[] = [];
  const read = (key: string, file: string): string | null => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      issues.push({ path: [...BASE, key], message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      return null;
    }
  };
  const cert = read('certFile', certFile);
  const key = read('keyFile', keyFile);
  const ca = caFile === undefined ? undefined : read('caFile', caFile);
  if (cert === null || key === null || ca === null) return { issues };
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    return { issues: [{ path: [...BASE, 'certFile'], message: `${certFile} is not a PEM certificate` }] };
  }
  try {
    createSecureContext({ cert, key, ...(ca !== undefined && { ca }), minVersion: raw.minVersion });
  } catch (err) {
    return { issues: [{ path: [...BASE, blame(err)], message: `${blame(err) === 'caFile' ? caFile : keyFile} cannot be used with ${certFile}: ${plain(err)}` }] };
  }
  const material = tlsMaterial(cert, key, ca, leaf);
  return { tls: { certFile, keyFile, ...(caFile !== undefined && { caFile }), minVersion: raw.minVersion, material }, issues };
}

/** Which file a secure-context failure points at: the CA bundle, or else the key (a bad key or one that does not match). */
function blame(err: unknown): 'keyFile' | 'caFile' {
  const m = String((err as Error).message).toLowerCase();
  return m.includes('ca') && !m.includes('key') ? 'caFile' : 'keyFile';
}

function plain(err: unknown): string {
  const e = err as { message?: string; reason?: string };
  return (e.reason ?? e.message ?? String(err)).replace(/^error:[0-9A-F]+:/, '');
}

function tlsMaterial(cert: string, key: string, ca: string | undefined, leaf: X509Certificate): TlsMaterial {
  const fingerprint = createHash('sha256').update(leaf.raw).digest('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
  const notAfter = new Date(leaf.validTo).toISOString();
  const subject = leaf.subject.replace(/\n/g, ', ');
  return {
    cert,
    key,
    ...(ca !== undefined && { ca }),
    fingerprint,
    subject,
    notAfter,
    // The key never leaves the process in JSON (logs, admin state).
    toJSON: () => ({ fingerprint, subject, notAfter }),
  };
}

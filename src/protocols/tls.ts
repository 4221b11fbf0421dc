/**
 * TLS termination on the proxy listener (`listen.tls`).
 *
 *   ALPN        h2 and http/1.1 when listen.http2 is on (h2 preferred),
 *               http/1.1 alone otherwise; a client that offers neither is
 *               refused in the handshake (no_application_protocol)
 *   versions    minVersion TLSv1.2 (default) or TLSv1.3; Node's default
 *               cipher list (no TLS 1.0/1.1, no export or RC4 suites)
 *   mutual TLS  with caFile, a client certificate signed by one of its CAs
 *               is required (the handshake fails without one)
 *   reload      the certificate, key, CA and minVersion are swapped into
 *               the running server with setSecureContext: connections open
 *               keep the context they were made with, new handshakes get
 *               the new one; nothing is dropped. Only material that the
 *               config loader read and checked reaches here
 *               (config/tls-files.ts), so a bad file never replaces a good
 *               certificate.
 */
import type { SecureContextOptions, Server as TlsServer, TlsOptions } from 'node:tls';
import type { TlsConfig } from '../config/types.js';

/** What /admin/state shows of the certificate in use (never the key). */
export interface TlsView {
  readonly certFile: string;
  readonly subject: string;
  readonly fingerprint: string;
  readonly notAfter: string;
  readonly minVersion: string;
  readonly clientCertificates: boolean;
  /** Certificate swaps since start (reloads that changed the material). */
  readonly reloads: number;
}

/** The secure context part of the options: what a reload may change. */
function contextOptions(tls: TlsConfig): SecureContextOptions {
  const m = tls.material;
  return { cert: m.cert, key: m.key, ...(m.ca !== undefined && { ca: m.ca }), minVersion: tls.minVersion };
}

/** The TLS server options of the proxy listener. */
export function tlsServerOptions(tls: TlsConfig, http2: boolean): TlsOptions {
  return {
    ...contextOptions(tls),
    ALPNProtocols: http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
    ...(tls.caFile !== undefined && { requestCert: true, rejectUnauthorized: true }),
  };
}

/** The certificate of a running TLS listener, swapped in place on reload. */
export class TlsTerminator {
  private reloads = 0;

  constructor(
    private readonly server: TlsServer,
    private current: TlsConfig,
  ) {}

  /**
   * Applies a reloaded `listen.tls` (turning mutual TLS on or off is a
   * server option, not part of the context: instance/reload.ts says it needs
   * a restart).
   */
  reconfigure(next: TlsConfig): void {
    const same = next.material.cert === this.current.material.cert && next.material.key === this.current.material.key &&
      next.material.ca === this.current.material.ca && next.minVersion === this.current.minVersion;
    if (!same) {
      this.server.setSecureContext(contextOptions(next));
      this.reloads++;
    }
    this.current = next;
  }

  view(): TlsView {
    const t = this.current;
    return {
      certFile: t.certFile,
      subject: t.material.subject,
      fingerprint: t.material.fingerprint,
      notAfter: t.material.notAfter,
      minVersion: t.minVersion,
      clientCertificates: t.caFile !== undefined,
      reloads: this.reloads,
    };
  }
}

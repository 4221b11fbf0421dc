/**
 * The listener's protocols in /metrics, read at scrape time from the same
 * view /admin/state shows (proxy/front.ts ListenerView): plain numbers kept
 * by the front, nothing updated per request here.
 *
 *   TLS         sluice_tls_certificate_expiry_timestamp_seconds,
 *               sluice_tls_certificate_reloads_total
 *   HTTP/2      sluice_http2_connections (open client connections),
 *               sluice_http2_streams_total, sluice_http2_streams_reset_total
 *               (reset by the client before their response began),
 *               sluice_http2_rapid_reset_closes_total (connections closed
 *               for resetting faster than they completed)
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ListenerView } from '../proxy/front.js';
import { CounterFamily } from './families.js';

function gauge(r: Registry, name: string, help: string, labelNames: string[], fill: (set: (labels: Record<string, string>, v: number) => void) => void): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [r],
    collect() {
      this.reset();
      fill((labels, v) => this.set(labels, v));
    },
  });
}

function counter(r: Registry, name: string, help: string, labelNames: string[], fill: (family: CounterFamily) => void): void {
  const f = new CounterFamily(name, help, labelNames);
  f.collect = () => fill(f);
  r.registerMetric(f.asMetric());
}

/** The certificate is every worker's: with workers > 1 the primary shows one worker's value (aggregator), not a sum. */
function tlsMetrics(r: Registry, view: () => ListenerView): void {
  new Gauge({
    name: 'sluice_tls_certificate_expiry_timestamp_seconds',
    help: "Unix time at which the proxy listener's certificate (listen.tls.certFile) expires.",
    registers: [r],
    aggregator: 'min',
    collect() {
      const t = view().tls;
      this.reset();
      if (t !== null) this.set(Date.parse(t.notAfter) / 1000);
    },
  });
  new Counter({
    name: 'sluice_tls_certificate_reloads_total',
    help: 'Times a reload swapped in new certificate material (open connections keep theirs).',
    registers: [r],
    aggregator: 'max',
    collect() {
      const t = view().tls;
      this.reset();
      if (t !== null) this.inc(t.reloads);
    },
  });
}

function http2Metrics(r: Registry, view: () => ListenerView): void {
  gauge(r, 'sluice_http2_connections', 'HTTP/2 client connections open on the proxy listener.', [], (set) => {
    const h = view().http2Clients;
    if (h !== null) set({}, h.sessions);
  });
  const totals: [string, string, (h: NonNullable<ListenerView['http2Clients']>) => number][] = [
    ['sluice_http2_streams_total', 'HTTP/2 streams (requests) clients opened.', (h) => h.streamsTotal],
    ['sluice_http2_streams_reset_total', 'HTTP/2 streams the client reset before their response began.', (h) => h.streamsResetTotal],
    ['sluice_http2_rapid_reset_closes_total', 'HTTP/2 connections closed (GOAWAY ENHANCE_YOUR_CALM) because they reset streams faster than they completed them (server.http2.maxExcessResets; CVE-2023-44487).', (h) => h.rapidResetCloses],
  ];
  for (const [name, help, value] of totals) {
    counter(r, name, help, [], (f) => {
      const h = view().http2Clients;
      if (h !== null) f.cell().value = value(h);
    });
  }
}

export function registerProtocolMetrics(r: Registry, view: () => ListenerView): void {
  tlsMetrics(r, view);
  http2Metrics(r, view);
}

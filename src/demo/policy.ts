/**
 * The two-lane policy shared by `npm run demo`, `npm run soak` and the
 * benchmarks' control scenarios, so a tweak to the demo setup is made once.
 * Listens on 127.0.0.1 port 0 (callers read the addresses back).
 */
export interface DemoPolicyOptions {
  /** Omit (null) to take the config schema's default algorithm. */
  readonly algorithm: string | null;
  readonly initial: number;
  readonly max: number;
  readonly route: string;
  readonly logLevel?: string;
  /** Honour `x-request-timeout-ms` deadlines. */
  readonly deadline?: boolean;
}

export function demoPolicy(upstream: string, o: DemoPolicyOptions): string {
  const algorithm = o.algorithm === null ? '' : `algorithm: ${o.algorithm}, `;
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
log: { level: ${o.logLevel ?? 'error'} }
lanes:
  - name: interactive
    queue: { maxLength: 50, maxWaitMs: 500 }
  - name: batch
    maxShare: 0.5
    minShare: 0.1
    queue: { maxLength: 100, maxWaitMs: 2000 }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
clients:
  key: { header: x-api-key }
  maxShare: 1
retryAfter: { minSeconds: 1, maxSeconds: 10, jitter: 0.2 }
defaults:
  limit: { ${algorithm}initial: ${o.initial}, min: 2, max: ${o.max} }
  timeouts: { connectMs: 1000, headersMs: 10000, bodyMs: 10000 }
${o.deadline ? '  deadline: { header: x-request-timeout-ms }\n' : ''}routes:
  - name: ${o.route}
    match: { pathPrefix: / }
    upstream: ${upstream}
`;
}

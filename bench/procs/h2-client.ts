/**
 * Process entry for the HTTP/2 upstream client comparison (bench/h2.ts):
 * `n` GET requests with `concurrency` in flight, over HTTP/2 (h2c) to `url`,
 * by undici (a Pool with allowH2, as Sluice's routes with `http2: true`) or
 * by node:http2 (one ClientHttp2Session, the alternative). Prints
 * {"requests", "cpuUs", "wallMs"}: this process's CPU time over the requests.
 */
import http2 from 'node:http2';
import { Pool } from 'undici';

interface Spec {
  readonly url: string;
  readonly client: 'undici' | 'node';
  readonly n: number;
  readonly concurrency: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;

async function viaUndici(): Promise<() => Promise<void>> {
  const pool = new Pool(spec.url, { allowH2: true, connect: { useH2c: true }, connections: null, pipelining: 100, maxConcurrentStreams: 100 } as Pool.Options);
  return async () => {
    const r = await pool.request({ path: '/api/items/42', method: 'GET' });
    await r.body.arrayBuffer();
  };
}

async function viaNode(): Promise<() => Promise<void>> {
  const session = http2.connect(spec.url);
  await new Promise((r) => session.once('connect', r));
  return () =>
    new Promise<void>((resolve, reject) => {
      const s = session.request({ ':path': '/api/items/42' });
      s.on('data', () => undefined);
      s.once('error', reject);
      s.once('end', () => resolve());
    });
}

async function main(): Promise<void> {
  const one = spec.client === 'undici' ? await viaUndici() : await viaNode();
  for (let i = 0; i < 200; i++) await one(); // warm-up
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < spec.n) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, worker));
  const c = process.cpuUsage(c0);
  process.stdout.write(`${JSON.stringify({ requests: spec.n, cpuUs: c.user + c.system, wallMs: performance.now() - t0 })}\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`h2 client: ${String(err)}\n`);
  process.exit(1);
});

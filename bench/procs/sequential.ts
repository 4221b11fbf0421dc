/**
 * Process entry: unloaded latency of several targets, interleaved. Spec (JSON
 * in argv[2]): { urls, durationMs }. One connection per target and one
 * request at a time overall: each step sends one request to every target, in
 * a shuffled order, each after the previous answer. Whatever else the machine
 * does while the run lasts (a shared machine's noise) hits every target
 * alike, so the difference of their percentiles is what a target adds.
 * Prints one JSON line: per url { requests, p50Ms, p90Ms, p99Ms }.
 */
import { build } from 'hdr-histogram-js';
import { Client } from 'undici';

interface Spec {
  readonly urls: readonly string[];
  readonly durationMs: number;
}

const spec = JSON.parse(process.argv[2] ?? '') as Spec;

async function once(client: Client, path: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await client.request({ method: 'GET', path });
  await r.body.dump();
  if (r.statusCode !== 200) throw new Error(`unexpected status ${r.statusCode}`);
  return Number(process.hrtime.bigint() - t0) / 1000;
}

async function main(): Promise<void> {
  const targets = spec.urls.map((u) => {
    const url = new URL(u);
    return {
      url: u,
      path: `${url.pathname}${url.search}`,
      client: new Client(url.origin, { pipelining: 1 }),
      h: build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 }),
    };
  });
  // Warm-up: connections open, JIT warm, nothing recorded.
  for (let i = 0; i < 200; i++) for (const t of targets) await once(t.client, t.path);
  const end = Date.now() + spec.durationMs;
  const order = targets.map((_, i) => i);
  while (Date.now() < end) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
    for (const i of order) {
      const t = targets[i]!;
      t.h.recordValue(await once(t.client, t.path));
    }
  }
  const out: Record<string, { requests: number; p50Ms: number; p90Ms: number; p99Ms: number }> = {};
  for (const t of targets) {
    out[t.url] = {
      requests: t.h.totalCount,
      p50Ms: t.h.getValueAtPercentile(50) / 1000,
      p90Ms: t.h.getValueAtPercentile(90) / 1000,
      p99Ms: t.h.getValueAtPercentile(99) / 1000,
    };
    await t.client.close();
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`sequential: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

/**
 * Process entry: a benchmark upstream on 127.0.0.1 (port 0), printing
 * {"url": ...} on stdout once listening.
 *
 *   --mode fast                    answers every request at once: 200 {"ok":true}
 *                                  (except /hang..., which never answers)
 *   --mode fast-h2                 the same in HTTP/2 only (h2c, prior knowledge)
 *   --mode capacity --workers N --service-ms M [--model jitter|lognormal|bimodal]
 *                                  the demo's capacity-modelled upstream
 *                                  (N workers x M ms, FIFO, POST /_control)
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { isServiceModel } from '../../src/demo/service-time.js';
import { startCapacityUpstream } from '../../src/demo/upstream.js';

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'fast' },
    workers: { type: 'string', default: '10' },
    'service-ms': { type: 'string', default: '50' },
    model: { type: 'string', default: 'jitter' },
  },
});

const BODY = Buffer.from('{"ok":true}');

async function fast(): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    if (req.url?.startsWith('/hang')) return; // held until the client leaves
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
    res.end(BODY);
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function fastH2(): Promise<string> {
  const server = http2.createServer({ settings: { maxConcurrentStreams: 1000 } }, (req, res) => {
    req.resume();
    if (req.url.startsWith('/hang')) return;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
    res.end(BODY);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function main(): Promise<void> {
  let url: string;
  if (values.mode === 'fast') url = await fast();
  else if (values.mode === 'fast-h2') url = await fastH2();
  else if (values.mode === 'capacity') {
    const model = values.model;
    if (!isServiceModel(model)) throw new Error(`unknown --model ${model}`);
    const up = await startCapacityUpstream({ workers: Number(values.workers), serviceTimeMs: Number(values['service-ms']), serviceModel: model });
    url = up.url;
  } else throw new Error(`unknown --mode ${values.mode}`);
  process.stdout.write(`${JSON.stringify({ url })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench upstream: ${String(err)}\n`);
  process.exit(1);
});

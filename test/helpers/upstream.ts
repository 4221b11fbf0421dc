/**
 * A scriptable upstream for integration tests, on 127.0.0.1 port 0.
 *   /echo...          200 JSON {method, url, headers, body} (body streamed back as received)
 *   /hold/<id>        waits until release(id) (or releaseAll), then 200 {id}
 *   /delay/<ms>       answers after ms
 *   /status/<code>    answers with that status
 *   /reset            destroys the socket without answering
 *   /trickle          sends headers, then a chunk, then stalls
 *   /stall            sends headers (content-length 100) and no body at all
 *   /drip/<n>/<ms>    sends n chunks, one every ms, then ends (a slow but complete body)
 *   /reset-mid        sends headers and a chunk, then destroys the socket
 *                     (?cl=1: with a content-length the body never reaches)
 *   /close-after      answers, then closes the connection without saying so
 *                     (no `connection: close`), like an upstream dropping idle keep-alives;
 *                     ?announce=1: says `connection: close` in the response
 *   /garbage          answers with bytes that are not HTTP, then closes
 *   /early/<code>     answers at once with that status, without reading the request body
 *   /hop-response     a response with hop-by-hop fields: Connection naming X-Internal, Keep-Alive,
 *                     Upgrade, Proxy-Authenticate, Proxy-Connection (and an end-to-end X-Kept)
 *   /trailers         a chunked body, then trailers (x-checksum, grpc-status) announced in Trailer
 *   anything else     200 {"path": ...}
 * Every request's URL is recorded in `seen` when it arrives.
 * `setFailing(true)` makes every request (except /echo) a reset, until set back.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestUpstream {
  readonly url: string;
  readonly port: number;
  readonly seen: string[];
  readonly holding: () => number;
  /** While true, every request except /echo has its connection destroyed (a dead upstream). */
  setFailing(failing: boolean): void;
  release(id: string): void;
  releaseAll(): void;
  /** Resolves when `n` requests are being held. */
  waitHolding(n: number): Promise<void>;
  /** TCP connections open to this upstream right now. */
  connections(): Promise<number>;
  close(): Promise<void>;
}

export async function startUpstream(opts: { keepAliveTimeoutMs?: number } = {}): Promise<TestUpstream> {
  const seen: string[] = [];
  let failing = false;
  const held = new Map<string, () => void>();
  let waiters: { n: number; resolve: () => void }[] = [];
  const notify = () => {
    waiters = waiters.filter((w) => {
      if (held.size >= w.n) w.resolve();
      return held.size < w.n;
    });
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    seen.push(url);
    const path = url.split('?')[0] ?? '/';
    if (path.startsWith('/echo') || path.includes('/echo')) {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
        res.end(JSON.stringify({ method: req.method, url, headers: req.headers, body: body.toString('utf8'), bytes: body.length }));
      });
      return;
    }
    const early = /\/early\/(\d+)/.exec(path);
    if (early) {
      res.writeHead(Number(early[1]), { 'content-type': 'application/json' });
      res.end('{"early":true}');
      return;
    }
    req.resume();
    if (failing) {
      req.socket.destroy();
      return;
    }
    const hold = /\/hold\/([^/?]+)/.exec(path);
    if (hold) {
      const id = hold[1] as string;
      const done = () => {
        held.delete(id);
        if (!res.destroyed) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id }));
        }
      };
      held.set(id, done);
      res.on('close', () => held.delete(id));
      notify();
      return;
    }
    const delay = /\/delay\/(\d+)/.exec(path);
    if (delay) {
      const t = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      }, Number(delay[1]));
      res.on('close', () => clearTimeout(t));
      return;
    }
    const status = /\/status\/(\d+)/.exec(path);
    if (status) {
      res.writeHead(Number(status[1]), { 'content-type': 'application/json' });
      res.end('{"upstream":true}');
      return;
    }
    if (path.endsWith('/reset')) {
      req.socket.destroy();
      return;
    }
    if (path.endsWith('/trickle')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk\n');
      return; // never ends; the proxy's body timeout must cut it
    }
    if (path.endsWith('/stall')) {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
      res.flushHeaders();
      return; // no body byte ever comes
    }
    const drip = /\/drip\/(\d+)\/(\d+)/.exec(path);
    if (drip) {
      let left = Number(drip[1]);
      res.writeHead(200, { 'content-type': 'text/plain' });
      const t = setInterval(() => {
        if (left-- > 0) res.write(`chunk ${left}\n`);
        else {
          clearInterval(t);
          res.end('end\n');
        }
      }, Number(drip[2]));
      res.on('close', () => clearInterval(t));
      return;
    }
    if (path.endsWith('/reset-mid')) {
      const cl = url.includes('cl=1');
      res.writeHead(200, { 'content-type': 'text/plain', ...(cl ? { 'content-length': '1000' } : {}) });
      res.write('partial body\n', () => setImmediate(() => req.socket.destroy()));
      return;
    }
    if (path.endsWith('/close-after')) {
      res.writeHead(200, { 'content-type': 'application/json', ...(url.includes('announce=1') ? { connection: 'close' } : {}) });
      res.end('{"ok":true}', () => req.socket.destroy());
      return;
    }
    if (path.endsWith('/hop-response')) {
      res.writeHead(200, {
        'content-type': 'text/plain',
        connection: 'keep-alive, X-Internal',
        'x-internal': 'upstream-secret',
        'keep-alive': 'timeout=4',
        upgrade: 'h2c',
        'proxy-authenticate': 'Basic realm="upstream"',
        'proxy-connection': 'keep-alive',
        'x-kept': 'yes',
      });
      res.end('ok');
      return;
    }
    if (path.endsWith('/trailers')) {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, grpc-status' });
      res.write('part one\n');
      res.addTrailers({ 'x-checksum': 'abc123', 'grpc-status': '0', 'set-cookie': 'late=1' });
      res.end('part two\n');
      return;
    }
    if (path.endsWith('/garbage')) {
      req.socket.end('this is not HTTP at all\r\n\r\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path }));
  };

  const server: Server = createServer(handle);
  server.keepAliveTimeout = opts.keepAliveTimeoutMs ?? 5000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    holding: () => held.size,
    setFailing(f) {
      failing = f;
    },
    release(id) {
      held.get(id)?.();
    },
    releaseAll() {
      for (const done of [...held.values()]) done();
    },
    waitHolding(n) {
      if (held.size >= n) return Promise.resolve();
      return new Promise((resolve) => {
        waiters.push({ n, resolve });
      });
    },
    connections() {
      return new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    },
    async close() {
      for (const done of [...held.values()]) done();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * A real HTTP/2 client (node:http2) for the tests: one connection, requests
 * as streams on it, each answer read whole.
 */
import http2, { type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';

export interface H2Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** Trailers the server sent after the body (empty when none). */
  readonly trailers: IncomingHttpHeaders;
}

/** Opens an h2c (prior knowledge) or h2 (TLS, `ca` given) connection to `url`. */
export function h2Connect(url: string, opts: http2.SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, opts);
    session.once('connect', () => resolve(session));
    session.once('error', reject);
  });
}

/** One request on `session`; resolves with the whole answer (rejects if the stream is reset). */
export function h2Request(session: ClientHttp2Session, path: string, headers: OutgoingHttpHeaders = {}, body?: string | Buffer): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...headers }, { endStream: body === undefined });
    let head: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (head = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => {
      if (head[':status'] === undefined) return reject(new Error(`stream closed without a response (rstCode ${stream.rstCode})`));
      resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks).toString('utf8'), trailers });
    });
    if (body !== undefined) stream.end(body);
  });
}

export function closeSession(session: ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (session.destroyed) return resolve();
    session.close(() => resolve());
  });
}

/**
 * A raw HTTP/2 client over TCP that obeys nothing the server says, for the
 * bounds a well-behaved client (node:http2 queues streams past the peer's
 * SETTINGS) never tests: it writes frames as given and reads the frames the
 * server sends back. Header blocks are HPACK literals without indexing
 * (RFC 7541 §6.2.2), no Huffman.
 */
export interface RawFrame {
  readonly type: number;
  readonly flags: number;
  readonly stream: number;
  readonly payload: Buffer;
}

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7 } as const;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

function literal(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  if (b.length > 126) throw new Error('raw HPACK helper: strings up to 126 bytes');
  return Buffer.concat([Buffer.from([b.length]), b]);
}

/** A HEADERS frame (END_HEADERS, and END_STREAM unless `body`) for a GET of `path`. */
export function headersFrame(stream: number, path: string, authority: string, endStream = true): Buffer {
  const fields: [string, string][] = [[':method', 'GET'], [':scheme', 'http'], [':path', path], [':authority', authority]];
  const block = Buffer.concat(fields.map(([n, v]) => Buffer.concat([Buffer.from([0]), literal(n), literal(v)])));
  return frame(FRAME.HEADERS, 0x4 | (endStream ? 0x1 : 0), stream, block);
}

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Parses the frames in `buf`; returns them and the bytes left over (an incomplete frame). */
export function parseFrames(buf: Buffer): { frames: RawFrame[]; rest: Buffer } {
  const frames: RawFrame[] = [];
  let at = 0;
  while (buf.length - at >= 9) {
    const len = buf.readUIntBE(at, 3);
    if (buf.length - at < 9 + len) break;
    frames.push({ type: buf[at + 3] as number, flags: buf[at + 4] as number, stream: buf.readUInt32BE(at + 5) & 0x7fffffff, payload: buf.subarray(at + 9, at + 9 + len) });
    at += 9 + len;
  }
  return { frames, rest: buf.subarray(at) };
}

/**
 * HTTP/2 by prior knowledge (h2c, RFC 9113 §3.3) and HTTP/1.1 on the same
 * plaintext port: a new connection's first bytes say which. An HTTP/2
 * client starts with the 24-byte preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`;
 * no HTTP/1.1 request line can start that way (PRI is not a method Sluice
 * proxies, and HTTP/1.1 never has `HTTP/2.0` in a request line).
 *
 * The first chunk is read once and pushed back (unshift), so whichever
 * server takes the socket parses it from its first byte. A chunk that is a
 * strict prefix of the preface (a client writing byte by byte) waits for
 * more; a connection that sends nothing decisive within the head timeout
 * is closed, as an HTTP/1.1 connection that sends no head would be.
 *
 * Cost: one read and one unshift per connection, nothing per request.
 */
import type { Socket } from 'node:net';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type Protocol = 'h2' | 'http/1.1';

/** 'h2' or 'http/1.1' when `bytes` decide it; null when they are a strict prefix of the preface. */
export function protocolOf(bytes: Buffer): Protocol | null {
  const n = Math.min(bytes.length, PREFACE.length);
  if (bytes.compare(PREFACE, 0, n, 0, n) !== 0) return 'http/1.1';
  return n === PREFACE.length ? 'h2' : null;
}

/** Calls `to(protocol, socket)` once the connection's first bytes decide its protocol. */
export function sniff(socket: Socket, timeoutMs: number, to: (protocol: Protocol, socket: Socket) => void): void {
  let seen: Buffer | null = null;
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  const done = () => {
    clearTimeout(timer);
    socket.off('readable', onReadable);
    socket.off('close', onClose);
  };
  const onClose = () => done();
  const onReadable = () => {
    const chunk = socket.read() as Buffer | null;
    if (chunk === null) return;
    seen = seen === null ? chunk : Buffer.concat([seen, chunk]);
    const protocol = protocolOf(seen);
    if (protocol === null) return;
    done();
    socket.unshift(seen);
    to(protocol, socket);
  };
  socket.on('readable', onReadable);
  socket.once('close', onClose);
}

/**
 * An Upgrade request that is not a WebSocket for a `websocket:` route
 * (Upgrade: h2c, a WebSocket on a route without `websocket:`, no route at
 * all) keeps the behaviour it had before the listener took upgrades: it is
 * an ordinary request, Upgrade removed (as ./headers.ts would remove it).
 *
 * Node hands every request with `Connection: upgrade` + `Upgrade` to the
 * server's 'upgrade' listener and detaches its HTTP parser from the socket.
 * To make it an ordinary request again, its head is written anew without
 * the upgrade (the Upgrade fields and the `upgrade` token of Connection),
 * put back in front of the socket's unread bytes (its body, what is
 * pipelined behind), and the socket is handed to the HTTP server as a new
 * connection ('secureConnection' for a TLS socket; on an HTTP/2 listener the
 * sniffer finds HTTP/1.1 again): a fresh parser reads it, so the request takes the whole usual
 * way (admission, Expect, body streaming, keep-alive, pipelining) and the
 * connection lives on after the answer.
 *
 * The head is rebuilt from rawHeaders (names, values and order as sent;
 * Node has already rejected a malformed head). A response of the same
 * connection still being written is waited for first, so answers keep
 * their order.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** The response Node is writing on a connection, if any (Node's own field, as ./front.ts reads it). */
type HttpSocket = Duplex & { _httpMessage?: { writableFinished?: boolean; once(e: 'finish', f: () => void): unknown } | null };

/** Runs `fn` once no response of this connection is being written. */
export function whenIdle(socket: Duplex, fn: () => void): void {
  const current = (socket as HttpSocket)._httpMessage;
  if (current === null || current === undefined || current.writableFinished === true) return fn();
  current.once('finish', () => setImmediate(() => whenIdle(socket, fn)));
}

/** The request head as sent, without the upgrade. */
export function headWithoutUpgrade(req: IncomingMessage): Buffer {
  let head = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    let value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower === 'upgrade') continue;
    if (lower === 'connection') {
      value = value
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '' && t.toLowerCase() !== 'upgrade')
        .join(', ');
      if (value === '') continue;
    }
    head += `${name}: ${value}\r\n`;
  }
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/** Hands the upgrade request back to `server` as an ordinary request on the same connection. */
export function replayAsRequest(server: Server, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const bytes = headWithoutUpgrade(req);
  socket.unshift(head.length > 0 ? Buffer.concat([bytes, head]) : bytes);
  // Over TLS the HTTP server takes decrypted sockets in 'secureConnection' ('connection' is the raw TCP one).
  server.emit((socket as Socket & { encrypted?: boolean }).encrypted === true ? 'secureConnection' : 'connection', socket as Socket);
}

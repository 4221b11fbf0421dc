/**
 * Process entry: a WebSocket echo upstream on 127.0.0.1 (port 0) for the
 * WebSocket scenario (bench/websockets.ts), built on the `ws` package;
 * prints {"url": ...} on stdout once listening. Every message comes back
 * as it came (text or binary).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

const server = http.createServer((_req, res) => res.end('websocket upstream\n'));
// No per-message deflate: the relay's cost, not compression, is measured.
const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: false });
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })}\n`);
});
process.on('SIGTERM', () => process.exit(0));

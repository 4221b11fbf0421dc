/**
 * One open WebSocket: the client's socket and the upstream's, relayed byte
 * for byte both ways, with backpressure (a side that cannot keep up pauses
 * the other). Frames are tracked only to know where they end
 * (./ws-frames.ts); nothing per message reaches admission, the limiter or
 * the metrics.
 *
 *   idle      no byte either way for idleTimeoutMs (the client socket's own
 *             timer: every byte relayed is read from or written to it)
 *             → close(1001, 'idle')
 *   close()   Sluice's own close (idle, drain): once both directions are
 *             between frames, a close frame with the code to each peer and
 *             the socket ended; nothing more is relayed; a peer that has
 *             not closed CLOSE_GRACE_MS later is destroyed
 *   the peers either side ending (FIN) ends the other after its pending
 *             bytes, so the peers' own close handshake passes through;
 *             either socket closing closes the other (after the grace)
 *
 * `onEnd(reason)` is called exactly once, when the first socket closes:
 * the reason is Sluice's own close (idle, drain), else the side whose close
 * frame came first (the one that started the closing handshake: in a clean
 * close the server drops TCP first whoever asked), else error when a
 * socket failed, else the side whose socket closed first.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { SocketCloseReason } from '../core/limiter/open-sockets.js';
import { FrameCursor, closeFrame } from './ws-frames.js';

/** After Sluice's own close frames (or one side's close), how long the other gets before it is destroyed. */
export const CLOSE_GRACE_MS = 1000;

export interface RelayOptions {
  readonly idleTimeoutMs: number;
  /** Bytes the client sent after its request head (frames sent before the 101 arrived). */
  readonly clientHead: Buffer;
  /** Bytes the upstream sent right after its 101 head. */
  readonly upstreamHead: Buffer;
  readonly onEnd: (reason: SocketCloseReason) => void;
}

interface OwnClose {
  readonly code: number;
  readonly text: string;
  readonly why: SocketCloseReason;
}

function destroyLater(s: Socket): void {
  if (s.destroyed) return;
  setTimeout(() => s.destroy(), CLOSE_GRACE_MS).unref();
}

export class WsRelay {
  private readonly toUpstream = new FrameCursor();
  private readonly toClient = new FrameCursor();
  private closing: OwnClose | null = null;
  private sentClose = false;
  private failed = false;
  private ended = false;
  /** The side whose close frame passed first. */
  private initiator: 'client' | 'upstream' | null = null;

  constructor(
    private readonly client: Socket,
    private readonly upstream: Socket,
    private readonly opts: RelayOptions,
  ) {
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    this.pipe(client, upstream, this.toUpstream);
    this.pipe(upstream, client, this.toClient);
    if (opts.upstreamHead.length > 0) this.relay(opts.upstreamHead, upstream, client, this.toClient);
    if (opts.clientHead.length > 0) this.relay(opts.clientHead, client, upstream, this.toUpstream);
    client.setTimeout(opts.idleTimeoutMs, () => this.close(1001, 'idle timeout', 'idle'));
    client.once('close', () => this.socketClosed(upstream, 'client'));
    upstream.once('close', () => this.socketClosed(client, 'upstream'));
  }

  /** Sluice closes the WebSocket: `code` to both peers, between frames. Later calls do nothing. */
  close(code: number, text: string, why: SocketCloseReason): void {
    if (this.closing !== null || this.ended) return;
    this.closing = { code, text, why };
    this.client.setTimeout(0);
    this.sendCloseAtBoundary();
    destroyLater(this.client);
    destroyLater(this.upstream);
  }

  private pipe(from: Socket, to: Socket, cursor: FrameCursor): void {
    from.on('data', (chunk: Buffer) => this.relay(chunk, from, to, cursor));
    to.on('drain', () => {
      if (!this.sentClose) from.resume();
    });
    from.on('end', () => to.end());
    from.on('error', () => {
      this.failed = true;
    });
  }

  private relay(chunk: Buffer, from: Socket, to: Socket, cursor: FrameCursor): void {
    // After our close frames nothing more goes either way.
    if (this.sentClose) return;
    cursor.feed(chunk);
    if (this.initiator === null && cursor.closeSeen) this.initiator = from === this.client ? 'client' : 'upstream';
    if (!to.write(chunk)) from.pause();
    if (this.closing !== null) this.sendCloseAtBoundary();
  }

  private sendCloseAtBoundary(): void {
    const c = this.closing;
    if (c === null || this.sentClose || !this.toClient.atBoundary || !this.toUpstream.atBoundary) return;
    this.sentClose = true;
    if (!this.client.destroyed) this.client.end(closeFrame(c.code, c.text, null));
    if (!this.upstream.destroyed) this.upstream.end(closeFrame(c.code, c.text, randomBytes(4)));
  }

  private socketClosed(other: Socket, side: 'client' | 'upstream'): void {
    if (!other.destroyed) {
      other.end();
      destroyLater(other);
    }
    if (this.ended) return;
    this.ended = true;
    this.client.setTimeout(0);
    this.opts.onEnd(this.closing?.why ?? this.initiator ?? (this.failed ? 'error' : side));
  }
}

/**
 * WebSocket framing, only as far as a byte relay needs it (RFC 6455 §5.2):
 * where frames end in one direction's byte stream, so that a close frame of
 * Sluice's own (idle timeout, drain) goes out between two frames, never
 * inside one; and that close frame.
 *
 *   byte 0      FIN, RSV1-3, opcode
 *   byte 1      MASK bit, payload length 0..125 | 126 (16-bit length
 *               follows) | 127 (64-bit length follows)
 *   then        the extended length, the 4-byte masking key when MASK is
 *               set, then the payload
 *
 * Payloads are never read, unmasked or copied: messages pass as they came,
 * extensions (permessage-deflate) included. FrameCursor.feed costs a few
 * comparisons per frame header and one subtraction per chunk of payload,
 * nothing per payload byte.
 */

/** The longest frame header: 2 + 8 (64-bit length) + 4 (masking key). */
const MAX_HEADER = 14;

/** Frame boundaries in one direction of a WebSocket. */
export class FrameCursor {
  /** Payload bytes of the current frame still to come. */
  private left = 0;
  /** A header split across chunks: its bytes so far (allocated only when one is split). */
  private partial: Buffer | null = null;
  private partialLength = 0;
  /** A close frame (opcode 8) began in this direction: its sender started the closing handshake. */
  closeSeen = false;

  /** True between two frames: a frame of our own may be written now. */
  get atBoundary(): boolean {
    return this.left === 0 && this.partialLength === 0;
  }

  feed(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (this.left > 0) {
        const skip = Math.min(this.left, n - i);
        this.left -= skip;
        i += skip;
      } else if (this.partialLength > 0) {
        i = this.completeHeader(chunk, i);
      } else {
        const size = headerSize(chunk, i, n);
        if (size === 0 || i + size > n) {
          this.keepPartial(chunk, i, n);
          i = n;
        } else {
          this.begin(chunk, i);
          i += size;
        }
      }
    }
  }

  /** A frame whose complete header is at `i` begins. */
  private begin(b: Buffer, i: number): void {
    this.left = payloadLength(b, i);
    if (((b[i] as number) & 0x0f) === 8) this.closeSeen = true;
  }

  private keepPartial(chunk: Buffer, from: number, to: number): void {
    this.partial ??= Buffer.allocUnsafe(MAX_HEADER);
    this.partialLength = chunk.copy(this.partial, 0, from, to);
  }

  /** Adds bytes to a split header; returns where the chunk continues (after the header, when complete). */
  private completeHeader(chunk: Buffer, i: number): number {
    const buf = this.partial as Buffer;
    const had = this.partialLength;
    const take = Math.min(MAX_HEADER - had, chunk.length - i);
    chunk.copy(buf, had, i, i + take);
    const have = had + take;
    const size = headerSize(buf, 0, have);
    if (size === 0 || size > have) {
      this.partialLength = have;
      return i + take;
    }
    this.begin(buf, 0);
    this.partialLength = 0;
    // Bytes copied past the header belong to the payload: continue right after the header.
    return i + (size - had);
  }
}

/** The size (2..14) of the header at `i`, or 0 when fewer than 2 of its bytes are there (`end`: where the bytes end). */
function headerSize(b: Buffer, i: number, end: number): number {
  if (end - i < 2) return 0;
  const second = b[i + 1] as number;
  const len = second & 0x7f;
  return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (second & 0x80 ? 4 : 0);
}

/** The payload length of the complete header at `i`. */
function payloadLength(b: Buffer, i: number): number {
  const len = (b[i + 1] as number) & 0x7f;
  if (len === 126) return b.readUInt16BE(i + 2);
  if (len === 127) return Number(b.readBigUInt64BE(i + 2));
  return len;
}

/** RFC 6455 §7.4.1: the endpoint is going away (server shutdown, or here: idle too long). */
export const GOING_AWAY = 1001;

/**
 * A close frame (opcode 8) with a status code and a short reason. Toward an
 * upstream it is masked with `mask` (every client-to-server frame must be,
 * RFC 6455 §5.3); toward a client it is not (`mask` null).
 */
export function closeFrame(code: number, reason: string, mask: Buffer | null): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  if (payload.length > 125) throw new RangeError('close reason too long');
  const head = Buffer.from([0x88, (mask === null ? 0 : 0x80) | payload.length]);
  if (mask === null) return Buffer.concat([head, payload]);
  for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([head, mask, payload]);
}

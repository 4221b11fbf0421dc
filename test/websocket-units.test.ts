/**
 * The pure parts of WebSocket proxying: the per-route socket bound
 * (core/limiter/open-sockets.ts, on a manual clock) and the frame cursor
 * that tells the relay where frames end (proxy/ws-frames.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RetryAfterConfig } from '../src/config/types.js';
import { ManualClock } from '../src/core/clock.js';
import { OpenSockets, type Slot } from '../src/core/limiter/open-sockets.js';
import type { Refusal } from '../src/core/limiter/refusal.js';
import { FrameCursor, closeFrame } from '../src/proxy/ws-frames.js';

const RETRY: RetryAfterConfig = { minSeconds: 1, maxSeconds: 30, jitter: 0 };

function bound(maxOpen: number) {
  const clock = new ManualClock(0);
  const os = new OpenSockets(maxOpen, clock, () => 0.5);
  const take = (): Slot => {
    const s = os.reserve(RETRY);
    assert.ok(!('kind' in s), 'expected a slot');
    return s as Slot;
  };
  const refuse = (): Refusal => {
    const s = os.reserve(RETRY);
    assert.ok('kind' in s, 'expected a refusal');
    return s as Refusal;
  };
  return { clock, os, take, refuse };
}

test('open sockets: reservations count against maxOpen until released or closed; past it, websocket_limit', () => {
  const { os, take, refuse } = bound(2);
  const a = take();
  const b = take();
  assert.equal(refuse().reason, 'websocket_limit');
  assert.equal(refuse().status, 503);
  a.open();
  b.release();
  const c = take();
  assert.deepEqual({ ...os.snapshot(), closed: undefined }, { open: 1, reserved: 1, maxOpen: 2, opened: 1, refused: 2, released: 1, closed: undefined });
  a.close('idle');
  c.open();
  c.close('drain');
  assert.equal(os.open, 0);
  assert.deepEqual(os.snapshot().closed, { client: 0, upstream: 0, idle: 1, drain: 1, error: 0 });
});

test('open sockets: every slot transition happens once (double close, release after open, open after release)', () => {
  const { os, take } = bound(3);
  const a = take();
  assert.equal(a.open(), true);
  assert.equal(a.open(), false);
  a.release();
  a.close('client');
  a.close('client');
  const b = take();
  b.release();
  assert.equal(b.open(), false);
  b.close('error');
  assert.deepEqual({ open: os.snapshot().open, reserved: os.snapshot().reserved, released: os.snapshot().released }, { open: 0, reserved: 0, released: 1 });
  assert.equal(os.snapshot().closed.client, 1);
  assert.equal(os.snapshot().closed.error, 0);
});

test('open sockets: Retry-After is the configured maximum while nothing closes, and follows the close rate once sockets close', () => {
  const { clock, take, refuse } = bound(10);
  const slots = Array.from({ length: 10 }, () => take());
  for (const s of slots) s.open();
  assert.equal(refuse().retryAfterSeconds, 30);
  // Two closes a second, for three seconds: one slot ahead frees in about half a second (clamped to 1).
  for (let i = 0; i < 6; i++) {
    clock.advance(500);
    (slots.pop() as Slot).close('client');
    take().open();
  }
  clock.advance(100);
  assert.equal(refuse().retryAfterSeconds, 1);
});

test('open sockets: a lower maxOpen (reload) refuses until enough sockets closed; open ones stay', () => {
  const { os, take, refuse } = bound(3);
  const slots = [take(), take(), take()];
  for (const s of slots) s.open();
  os.maxOpen = 1;
  refuse();
  (slots[0] as Slot).close('client');
  refuse();
  (slots[1] as Slot).close('client');
  refuse();
  (slots[2] as Slot).close('client');
  take();
});

/** A frame header for a payload of `len` bytes (masked: client to server). */
function frame(opcode: number, len: number, masked: boolean): Buffer {
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const h = Buffer.alloc(2 + ext + (masked ? 4 : 0));
  h[0] = 0x80 | opcode;
  h[1] = (masked ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) h.writeUInt16BE(len, 2);
  if (ext === 8) h.writeBigUInt64BE(BigInt(len), 2);
  return Buffer.concat([h, Buffer.alloc(len, 0x61)]);
}

/** Feeds `bytes` in pieces of `size` and reports, after each piece, whether the cursor is between frames. */
function boundaries(bytes: Buffer, size: number): boolean[] {
  const c = new FrameCursor();
  const out: boolean[] = [];
  for (let i = 0; i < bytes.length; i += size) {
    c.feed(bytes.subarray(i, i + size));
    out.push(c.atBoundary);
  }
  return out;
}

test('frame cursor: between frames after each whole frame, inside one otherwise; any split of headers and payloads', () => {
  const frames = [frame(1, 5, true), frame(2, 300, true), frame(2, 70_000, false), frame(9, 0, false), frame(1, 125, false)];
  const all = Buffer.concat(frames);
  // Fed frame by frame: at a boundary after every one.
  const c = new FrameCursor();
  for (const f of frames) {
    c.feed(f);
    assert.equal(c.atBoundary, true);
  }
  // Fed in every chunk size from 1 to 17 bytes (headers split anywhere): a boundary exactly where frames end.
  const ends = new Set<number>();
  let at = 0;
  for (const f of frames) ends.add((at += f.length));
  for (let size = 1; size <= 17; size++) {
    const seen = boundaries(all, size);
    seen.forEach((b, i) => {
      const end = Math.min(all.length, (i + 1) * size);
      assert.equal(b, ends.has(end), `chunk size ${size}, after byte ${end}`);
    });
  }
});

test('frame cursor: a close frame is noticed (who started the closing handshake), split or whole', () => {
  const c = new FrameCursor();
  c.feed(frame(1, 3, true));
  assert.equal(c.closeSeen, false);
  const close = closeFrame(1000, 'bye', Buffer.from([1, 2, 3, 4]));
  c.feed(close.subarray(0, 1));
  c.feed(close.subarray(1));
  assert.equal(c.closeSeen, true);
  assert.equal(c.atBoundary, true);
});

test('close frame: code and reason, masked toward the upstream (unmasks to the same payload), plain toward the client', () => {
  const plain = closeFrame(1001, 'server shutting down', null);
  assert.equal(plain[0], 0x88);
  assert.equal(plain[1], 2 + 'server shutting down'.length);
  assert.equal(plain.readUInt16BE(2), 1001);
  assert.equal(plain.subarray(4).toString(), 'server shutting down');
  const mask = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
  const masked = closeFrame(1001, 'server shutting down', mask);
  assert.equal((masked[1] as number) & 0x80, 0x80);
  assert.deepEqual(masked.subarray(2, 6), mask);
  const payload = Buffer.from(masked.subarray(6).map((b, i) => b ^ (mask[i % 4] as number)));
  assert.deepEqual(payload, plain.subarray(2));
  assert.throws(() => closeFrame(1000, 'x'.repeat(124), null), RangeError);
});

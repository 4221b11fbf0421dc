/**
 * One route's open WebSockets, bounded by `websocket.maxOpen` and counted
 * apart from the request limiter: an open socket holds no request permit,
 * feeds no RTT sample and never waits in a lane queue.
 *
 *   reserve()   before the gate (an upgrade that passes admission must find
 *               its socket slot): a Slot, or Refusal websocket_limit when
 *               open + reserved >= maxOpen
 *   Slot        reserved ──open()──▶ open ──close(reason)──▶ closed
 *                   └──release()──▶ released  (refused by the gate, upstream
 *                                              said no, client left)
 *               every transition happens at most once; a slot counts
 *               against maxOpen from reserve() to release() or close()
 *
 * Retry-After for websocket_limit: sockets ahead of the caller (the excess
 * over maxOpen, plus one) ÷ the rate open sockets close, through the same
 * clamp and jitter as every refusal (../retry-after.ts); with no close seen
 * recently, the configured maximum.
 *
 * Pure: time comes from the injected clock, jitter from the injected random.
 */
import type { RetryAfterConfig } from '../../config/types.js';
import type { Clock, Random } from '../clock.js';
import { RateMeter, retryAfterSeconds } from '../retry-after.js';
import { refusal, type Refusal } from './refusal.js';

/** Why an open WebSocket ended. */
export type SocketCloseReason = 'client' | 'upstream' | 'idle' | 'drain' | 'error';
export const SOCKET_CLOSE_REASONS: readonly SocketCloseReason[] = ['client', 'upstream', 'idle', 'drain', 'error'];

export interface OpenSocketsSnapshot {
  readonly open: number;
  /** Admitted upgrades whose upstream handshake is not over (they count against maxOpen). */
  readonly reserved: number;
  readonly maxOpen: number;
  /** Upgrades that became WebSockets (101), since start. */
  readonly opened: number;
  /** Upgrades refused websocket_limit, since start. */
  readonly refused: number;
  /** Reservations released without a WebSocket (refused by the gate, another upstream answer, the client left). */
  readonly released: number;
  readonly closed: Readonly<Record<SocketCloseReason, number>>;
}

export interface Slot {
  /** The upstream answered 101: the socket is open. False when the slot was already released. */
  open(): boolean;
  /** The open socket ended (counted under `reason`). */
  close(reason: SocketCloseReason): void;
  /** No socket came of the reservation. */
  release(): void;
}

class RouteSlot implements Slot {
  private state: 'reserved' | 'open' | 'done' = 'reserved';
  constructor(private readonly owner: OpenSockets) {}

  open(): boolean {
    if (this.state !== 'reserved') return false;
    this.state = 'open';
    this.owner.opened();
    return true;
  }

  close(reason: SocketCloseReason): void {
    if (this.state !== 'open') return;
    this.state = 'done';
    this.owner.closedOne(reason);
  }

  release(): void {
    if (this.state !== 'reserved') return;
    this.state = 'done';
    this.owner.releasedOne();
  }
}

export class OpenSockets {
  private openCount = 0;
  private reservedCount = 0;
  private openedTotal = 0;
  private refusedTotal = 0;
  private releasedTotal = 0;
  private readonly closedTotal: Record<SocketCloseReason, number> = { client: 0, upstream: 0, idle: 0, drain: 0, error: 0 };
  private readonly closeRate: RateMeter;

  constructor(
    public maxOpen: number,
    private readonly clock: Clock,
    private readonly random: Random,
  ) {
    this.closeRate = new RateMeter(clock.now());
  }

  /** A slot for an upgrade about to enter the gate, or the refusal when the route is at maxOpen. */
  reserve(retryAfter: RetryAfterConfig): Slot | Refusal {
    const taken = this.openCount + this.reservedCount;
    if (taken >= this.maxOpen) {
      this.refusedTotal++;
      const rate = this.closeRate.perSecond(this.clock.now());
      const ahead = taken - this.maxOpen + 1;
      return refusal('websocket_limit', retryAfterSeconds(rate > 0 ? ahead / rate : Infinity, retryAfter, this.random));
    }
    this.reservedCount++;
    return new RouteSlot(this);
  }

  /** Open sockets now. */
  get open(): number {
    return this.openCount;
  }

  snapshot(): OpenSocketsSnapshot {
    return {
      open: this.openCount,
      reserved: this.reservedCount,
      maxOpen: this.maxOpen,
      opened: this.openedTotal,
      refused: this.refusedTotal,
      released: this.releasedTotal,
      closed: { ...this.closedTotal },
    };
  }

  /** @internal RouteSlot's transitions. */
  opened(): void {
    this.reservedCount--;
    this.openCount++;
    this.openedTotal++;
  }

  /** @internal */
  closedOne(reason: SocketCloseReason): void {
    this.openCount--;
    this.closedTotal[reason]++;
    this.closeRate.mark(this.clock.now());
  }

  /** @internal */
  releasedOne(): void {
    this.reservedCount--;
    this.releasedTotal++;
  }
}

/**
 * A lane's wait queue: the interface the limiter schedules through, and its
 * first-come-first-served implementation (the fair one is ./fair-queue.ts).
 *
 * WaitQueue is an intrusive doubly linked list: O(1) push, take (oldest or
 * newest), and remove-from-anywhere. Removal matters: a client that
 * disconnects while waiting must leave the queue at once, not hold its place
 * until a scan or a timeout finds it (the classic defect of array-backed
 * queues).
 *
 *   head (oldest) <-> ... <-> tail (newest)
 */

export interface QueueNode {
  prev: QueueNode | null;
  next: QueueNode | null;
  /** True while the node is linked into a queue. */
  linked: boolean;
}

/**
 * What a fair queue needs on top (./fair-queue.ts): the client the node
 * waits for and links within that client's own queue. A FIFO queue leaves
 * these alone, so one node type serves both and a lane can switch kinds on
 * reload without reallocating its waiters.
 */
export interface FairNode extends QueueNode {
  readonly clientKey: string;
  peerPrev: FairNode | null;
  peerNext: FairNode | null;
  /** The fair queue's record of this node's client while linked there (opaque to everyone else). */
  flow: object | null;
}

/** The queue of one lane, as the limiter sees it. Every operation is O(1). */
export interface LaneQueue<T extends FairNode> {
  readonly length: number;
  push(node: T): void;
  /** Unlinks node (its client left, or its wait ran out); a no-op when it is not linked. */
  remove(node: T): void;
  /**
   * Unlinks and returns the node to serve next, or null when empty.
   * `newestFirst` (adaptive LIFO): the newest instead of the oldest, among
   * all waiters (FIFO) or within the client whose turn it is (fair).
   */
  take(newestFirst: boolean): T | null;
  /** The node that has waited longest, or null. */
  oldest(): T | null;
  /** How many waiters a new arrival of `clientKey` would be served after (an estimate for the fair queue). */
  ahead(clientKey: string): number;
}

export class WaitQueue<T extends QueueNode> {
  private head: T | null = null;
  private tail: T | null = null;
  length = 0;

  push(node: T): void {
    node.prev = this.tail;
    node.next = null;
    if (this.tail) this.tail.next = node;
    else this.head = node;
    this.tail = node;
    node.linked = true;
    this.length++;
  }

  /** The oldest node, or null. */
  oldest(): T | null {
    return this.head;
  }

  /** The newest node, or null. */
  newest(): T | null {
    return this.tail;
  }

  take(newestFirst: boolean): T | null {
    const node = newestFirst ? this.tail : this.head;
    if (node !== null) this.remove(node);
    return node;
  }

  /** Everyone waiting is served first. */
  ahead(): number {
    return this.length;
  }

  /** Unlinks node; a no-op when it is not linked. */
  remove(node: T): void {
    if (!node.linked) return;
    if (node.prev) node.prev.next = node.next;
    else this.head = node.next as T | null;
    if (node.next) node.next.prev = node.prev;
    else this.tail = node.prev as T | null;
    node.prev = node.next = null;
    node.linked = false;
    this.length--;
  }
}

/**
 * An intrusive doubly linked list: O(1) push, shift (oldest), pop (newest)
 * and remove-from-anywhere. Removal matters: a client that disconnects while
 * waiting must leave the queue at once, not hold its place until a scan or a
 * timeout finds it (the classic defect of array-backed queues).
 *
 *   head (oldest) <-> ... <-> tail (newest)
 */

export interface QueueNode {
  prev: QueueNode | null;
  next: QueueNode | null;
  /** True while the node is linked into a queue. */
  linked: boolean;
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

/**
 * A lane's fair wait queue: waiting requests are served round-robin across
 * client keys, deficit round robin (Shreedhar and Varghese, "Efficient Fair
 * Queuing using Deficit Round Robin", 1995), so one client's burst does not
 * queue everyone else behind it (../shared/DESIGN.md §4).
 *
 * The algorithm
 * Every client with something queued has a flow: its own FIFO of waiters, a
 * quantum (its weight, see ClientWeights) and a deficit. Flows sit in a
 * ring; `current` is the flow whose turn it is. A turn starts by adding the
 * quantum to the flow's deficit; each request served costs 1; when the
 * deficit falls below 1 the turn passes to the next flow. A flow that
 * empties leaves the ring and is forgotten (its deficit with it, as in DRR),
 * so a client with nothing queued costs nothing. A new flow joins at the
 * ring's tail: it is served after every flow already waiting has had one
 * turn.
 *
 *   ring:  current ─▶ flow B ─▶ flow C ─▶ (back to current)
 *   flow:  head (oldest) <-> ... <-> tail (newest)     deficit, quantum
 *
 * Every quantum is >= 1 (weights are scaled so the smallest is 1), so each
 * turn serves at least one request and `take` never walks the ring: push,
 * take and remove are O(1). Memory is one flow per client with something
 * queued, plus the nodes, so the lane's maxLength bounds it.
 *
 * Adaptive LIFO (./standing-queue.ts) still applies, within the client's own
 * flow: `take(true)` serves the newest of the client whose turn it is.
 *
 * A second list keeps every waiter in arrival order, so the oldest wait of
 * the lane (the standing-queue signal, /admin/state) stays O(1).
 */
import { WaitQueue, type FairNode, type LaneQueue } from './wait-queue.js';

/**
 * Per-client weights (`clients.weights`) as DRR quanta. Scaled so the
 * smallest quantum is 1: an unlisted client has weight 1, so with no weight
 * below 1 the quanta are the weights themselves.
 */
export class ClientWeights {
  private readonly quanta = new Map<string, number>();
  private readonly base: number;

  constructor(weights: Readonly<Record<string, number>> = {}) {
    const entries = Object.entries(weights);
    const smallest = Math.min(1, ...entries.map(([, w]) => w));
    this.base = 1 / smallest;
    for (const [key, w] of entries) this.quanta.set(key, w / smallest);
  }

  quantum(clientKey: string): number {
    return this.quanta.get(clientKey) ?? this.base;
  }
}

class Flow<T extends FairNode> {
  head: T | null = null;
  tail: T | null = null;
  length = 0;
  deficit = 0;
  ringPrev: Flow<T> = this;
  ringNext: Flow<T> = this;
  constructor(
    readonly key: string,
    readonly quantum: number,
  ) {}
}

export class FairQueue<T extends FairNode> implements LaneQueue<T> {
  /** Flows of clients that have something queued, by client key. */
  private readonly flows = new Map<string, Flow<T>>();
  /** The flow whose turn it is; null when the queue is empty. */
  private current: Flow<T> | null = null;
  /** Every waiter in arrival order (for `oldest`). */
  private readonly order = new WaitQueue<T>();
  /** Sum of the quanta of the flows in the ring. */
  private totalQuantum = 0;

  constructor(public weights: ClientWeights) {}

  get length(): number {
    return this.order.length;
  }

  /** Clients with something queued. */
  get clients(): number {
    return this.flows.size;
  }

  push(node: T): void {
    this.order.push(node);
    let f = this.flows.get(node.clientKey);
    if (f === undefined) f = this.join(node.clientKey);
    node.peerPrev = f.tail;
    node.peerNext = null;
    if (f.tail !== null) f.tail.peerNext = node;
    else f.head = node;
    f.tail = node;
    f.length++;
    node.flow = f;
  }

  remove(node: T): void {
    if (!node.linked) return;
    this.order.remove(node);
    this.unlink(node);
  }

  take(newestFirst: boolean): T | null {
    const f = this.current;
    if (f === null) return null;
    if (f.deficit < 1) f.deficit += f.quantum;
    const node = (newestFirst ? f.tail : f.head) as T;
    f.deficit -= 1;
    this.order.remove(node);
    // An emptied flow leaves the ring (and the turn passes) in unlink.
    if (f.length > 1 && f.deficit < 1) this.current = f.ringNext;
    this.unlink(node);
    return node;
  }

  oldest(): T | null {
    return this.order.oldest();
  }

  /**
   * Waiters served before a new arrival of `clientKey`: its own queue, plus
   * what the other flows get in the turns it needs (each other flow at most
   * its quantum per turn), never more than the whole queue. An upper bound
   * when some flows hold less than their quantum.
   */
  ahead(clientKey: string): number {
    const f = this.flows.get(clientKey);
    const own = f?.length ?? 0;
    const quantum = f?.quantum ?? this.weights.quantum(clientKey);
    const turns = Math.ceil((own + 1) / quantum);
    const others = this.totalQuantum - (f?.quantum ?? 0);
    return own + Math.min(this.order.length - own, Math.ceil(turns * others));
  }

  /** A new flow at the ring's tail (just before the current one). */
  private join(key: string): Flow<T> {
    const f = new Flow<T>(key, this.weights.quantum(key));
    this.flows.set(key, f);
    this.totalQuantum += f.quantum;
    const cur = this.current;
    if (cur === null) {
      this.current = f;
    } else {
      f.ringNext = cur;
      f.ringPrev = cur.ringPrev;
      cur.ringPrev.ringNext = f;
      cur.ringPrev = f;
    }
    return f;
  }

  /** Takes node out of its flow; an emptied flow leaves the ring. */
  private unlink(node: T): void {
    const f = node.flow as Flow<T>;
    if (node.peerPrev !== null) node.peerPrev.peerNext = node.peerNext;
    else f.head = node.peerNext as T | null;
    if (node.peerNext !== null) node.peerNext.peerPrev = node.peerPrev;
    else f.tail = node.peerPrev as T | null;
    node.peerPrev = node.peerNext = null;
    node.flow = null;
    if (--f.length > 0) return;
    this.flows.delete(f.key);
    // Reset when empty so rounding never accumulates across bursts.
    this.totalQuantum = this.flows.size === 0 ? 0 : this.totalQuantum - f.quantum;
    if (f.ringNext === f) {
      this.current = null;
    } else {
      f.ringPrev.ringNext = f.ringNext;
      f.ringNext.ringPrev = f.ringPrev;
      if (this.current === f) this.current = f.ringNext;
    }
  }
}

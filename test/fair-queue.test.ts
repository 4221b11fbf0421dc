/**
 * Fair queuing inside a lane: the DRR queue on its own (against a reference
 * model) and through the limiter, on the manual clock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LaneConfig } from '../src/config/types.js';
import { ManualClock, seededRandom } from '../src/core/clock.js';
import { FixedLimit } from '../src/core/limit/limit.js';
import { ClientWeights, FairQueue } from '../src/core/limiter/fair-queue.js';
import { Limiter, type Permit } from '../src/core/limiter/limiter.js';
import type { Refusal } from '../src/core/limiter/refusal.js';
import type { FairNode, QueueNode } from '../src/core/limiter/wait-queue.js';
import { limiterVerbs } from './helpers/limiter-verbs.js';

// ---------------------------------------------------------------- the queue alone

class Node implements FairNode {
  prev: QueueNode | null = null;
  next: QueueNode | null = null;
  linked = false;
  peerPrev: FairNode | null = null;
  peerNext: FairNode | null = null;
  flow: object | null = null;
  constructor(
    readonly clientKey: string,
    readonly name: string,
  ) {}
}

function queue(weights: Record<string, number> = {}) {
  const q = new FairQueue<Node>(new ClientWeights(weights));
  const push = (client: string, ...names: string[]) =>
    names.map((n) => {
      const node = new Node(client, n);
      q.push(node);
      return node;
    });
  const takeAll = (newestFirst = false) => {
    const out: string[] = [];
    for (let n = q.take(newestFirst); n !== null; n = q.take(newestFirst)) out.push(n.name);
    return out;
  };
  return { q, push, takeAll };
}

test('fair queue: clients take turns, one request each, in the order they arrived', () => {
  const { q, push, takeAll } = queue();
  push('heavy', 'h1', 'h2', 'h3', 'h4');
  push('light', 'l1');
  push('other', 'o1', 'o2');
  assert.equal(q.length, 7);
  assert.deepEqual(takeAll(), ['h1', 'l1', 'o1', 'h2', 'o2', 'h3', 'h4']);
  assert.equal(q.length, 0);
});

test('fair queue: a client with nothing queued keeps no state', () => {
  const { q, push, takeAll } = queue();
  push('a', 'a1', 'a2');
  push('b', 'b1');
  assert.equal(q.clients, 2);
  takeAll();
  assert.equal(q.clients, 0);
  const [c1] = push('c', 'c1');
  q.remove(c1!);
  assert.equal(q.clients, 0);
  assert.equal(q.take(false), null);
});

test('fair queue: weights give a client that many turns per round', () => {
  const { push, takeAll } = queue({ gold: 2 });
  push('gold', 'g1', 'g2', 'g3', 'g4', 'g5');
  push('free', 'f1', 'f2', 'f3');
  assert.deepEqual(takeAll(), ['g1', 'g2', 'f1', 'g3', 'g4', 'f2', 'g5', 'f3']);
});

test('fair queue: a weight below 1 means a turn every few rounds (the others are scaled up)', () => {
  const { push, takeAll } = queue({ slow: 0.5 });
  push('slow', 's1', 's2', 's3');
  push('fast', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6');
  // quanta: slow 1, fast 2
  assert.deepEqual(takeAll(), ['s1', 'f1', 'f2', 's2', 'f3', 'f4', 's3', 'f5', 'f6']);
});

test('fair queue: fractional weights accumulate across rounds (1.5 turns per round on average)', () => {
  const { push, takeAll } = queue({ a: 1.5 });
  push('a', ...Array.from({ length: 6 }, (_, i) => `a${i + 1}`));
  push('b', ...Array.from({ length: 6 }, (_, i) => `b${i + 1}`));
  assert.deepEqual(takeAll().slice(0, 10), ['a1', 'b1', 'a2', 'a3', 'b2', 'a4', 'b3', 'a5', 'a6', 'b4']);
});

test('fair queue: removing a waiter keeps everyone else in order; removing twice is a no-op', () => {
  const { q, push, takeAll } = queue();
  const [a1, a2] = push('a', 'a1', 'a2', 'a3');
  push('b', 'b1', 'b2');
  q.remove(a2!);
  q.remove(a2!);
  assert.equal(q.length, 4);
  assert.equal(q.take(false)?.name, 'a1');
  q.remove(a1!); // already taken: a no-op
  assert.deepEqual(takeAll(), ['b1', 'a3', 'b2']);
});

test('fair queue: when the client whose turn it is leaves, the turn passes to the next', () => {
  const { q, push, takeAll } = queue({ a: 3 });
  const [, a2, a3] = push('a', 'a1', 'a2', 'a3');
  push('b', 'b1');
  assert.equal(q.take(false)?.name, 'a1');
  q.remove(a2!);
  q.remove(a3!);
  assert.deepEqual(takeAll(), ['b1']);
});

test('fair queue: a newcomer joins at the end of the round, after every client already waiting', () => {
  const { q, push, takeAll } = queue();
  push('a', 'a1', 'a2');
  push('b', 'b1', 'b2');
  assert.equal(q.take(false)?.name, 'a1');
  push('c', 'c1');
  assert.deepEqual(takeAll(), ['b1', 'a2', 'c1', 'b2']);
});

test('fair queue: newest first (adaptive LIFO) applies within the client whose turn it is', () => {
  const { push, takeAll } = queue();
  push('a', 'a1', 'a2', 'a3');
  push('b', 'b1', 'b2');
  assert.deepEqual(takeAll(true), ['a3', 'b2', 'a2', 'b1', 'a1']);
});

test('fair queue: oldest is the longest waiter of the whole lane, whoever holds the turn', () => {
  const { q, push } = queue();
  push('a', 'a1');
  push('b', 'b1', 'b2');
  assert.equal(q.oldest()?.name, 'a1');
  q.take(false);
  assert.equal(q.oldest()?.name, 'b1');
});

test('fair queue: ahead counts the own backlog plus the turns of the others, never more than the queue', () => {
  const { q, push } = queue();
  push('heavy', ...Array.from({ length: 20 }, (_, i) => `h${i}`));
  assert.equal(q.ahead('light'), 1);
  assert.equal(q.ahead('heavy'), 20);
  push('light', 'l1', 'l2');
  // light's third request needs 3 turns; heavy gets one in each.
  assert.equal(q.ahead('light'), 2 + 3);
  push('x', 'x1');
  assert.equal(q.ahead('light'), 2 + Math.min(21, 3 * 2));
});

/** Reference DRR over plain arrays, written the obvious way (O(n)), to check the O(1) one against. */
class ModelDrr {
  private readonly flows: { key: string; items: string[]; deficit: number; quantum: number }[] = [];
  private turn = 0;
  constructor(private readonly weights: ClientWeights) {}
  push(key: string, name: string): void {
    const f = this.flows.find((x) => x.key === key);
    if (f) {
      f.items.push(name);
      return;
    }
    // A new flow goes to the tail of the ring: just before the one whose turn it is.
    this.flows.splice(this.turn, 0, { key, items: [name], deficit: 0, quantum: this.weights.quantum(key) });
    if (this.flows.length > 1) this.turn++;
  }
  remove(name: string): void {
    const i = this.flows.findIndex((x) => x.items.includes(name));
    const f = this.flows[i]!;
    f.items.splice(f.items.indexOf(name), 1);
    if (f.items.length === 0) this.drop(i);
  }
  take(newestFirst: boolean): string | null {
    const f = this.flows[this.turn];
    if (f === undefined) return null;
    if (f.deficit < 1) f.deficit += f.quantum;
    const name = (newestFirst ? f.items.pop() : f.items.shift())!;
    f.deficit -= 1;
    if (f.items.length === 0) this.drop(this.turn);
    else if (f.deficit < 1) this.turn = (this.turn + 1) % this.flows.length;
    return name;
  }
  private drop(i: number): void {
    this.flows.splice(i, 1);
    if (i < this.turn) this.turn--;
    if (this.turn >= this.flows.length) this.turn = 0;
  }
}

test('fair queue: random pushes, takes and removals agree with a plain DRR model', () => {
  const random = seededRandom(14);
  const weights = new ClientWeights({ c0: 2, c1: 0.5, c3: 1.5 });
  for (let round = 0; round < 20; round++) {
    const q = new FairQueue<Node>(weights);
    const model = new ModelDrr(weights);
    const live = new Map<string, Node>();
    let seq = 0;
    for (let step = 0; step < 400; step++) {
      const r = random();
      if (r < 0.5) {
        const key = `c${Math.floor(random() * 5)}`;
        const node = new Node(key, `n${seq++}`);
        q.push(node);
        model.push(key, node.name);
        live.set(node.name, node);
      } else if (r < 0.85) {
        const newestFirst = random() < 0.3;
        const got = q.take(newestFirst);
        assert.equal(got?.name ?? null, model.take(newestFirst), `round ${round} step ${step}`);
        if (got) live.delete(got.name);
      } else if (live.size > 0) {
        const names = [...live.keys()];
        const name = names[Math.floor(random() * names.length)]!;
        q.remove(live.get(name)!);
        model.remove(name);
        live.delete(name);
      }
      assert.equal(q.length, live.size);
    }
  }
});

// ---------------------------------------------------------------- through the limiter

function lane(name: string, fair: boolean, maxLength = 50, maxWaitMs = 10_000): LaneConfig {
  return { name, maxShare: 1, minShare: 0, queue: { maxLength, maxWaitMs, fair } };
}

/**
 * A route with a fixed limit of 20, every slot held by a client that asks for
 * nothing else, so each completion starts exactly one waiter. The limit is
 * large enough that clients.maxShare (1 = 20 slots) never refuses a test client.
 */
function setup(fair: boolean, opts: { weights?: Record<string, number>; maxLength?: number } = {}) {
  const clock = new ManualClock(1000);
  const limiter = new Limiter({
    lanes: [lane('interactive', fair, opts.maxLength)],
    limit: new FixedLimit(20),
    clientMaxShare: 1,
    clientWeights: opts.weights,
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 },
    clock,
    random: seededRandom(3),
  });
  const verbs = limiterVerbs(limiter);
  const busy = Array.from({ length: 20 }, (_, i) => verbs.permit(`busy${i}`, 0, 'filler'));
  return { clock, limiter, busy, ...verbs };
}

/** Completes one request every `serviceMs` (oldest first) until nothing runs; returns the order queued requests started in. */
function serveAll(s: ReturnType<typeof setup>, serviceMs: number): string[] {
  const running: Permit[] = [...s.busy];
  let seen = 0;
  for (let p = running.shift(); p !== undefined; p = running.shift()) {
    s.clock.advance(serviceMs);
    p.settle('success', serviceMs);
    for (; seen < s.later.length; seen++) {
      const r = s.later[seen]!.result;
      if (r.kind === 'permit') running.push(r);
    }
  }
  return s.started();
}

test('limiter, fair lane: a light client behind a heavy client\'s burst starts after one of its requests', () => {
  const s = setup(true);
    for (let i = 1; i <= 10; i++) s.ask(`h${i}`, 0, 'heavy');
  s.ask('light', 0, 'light');
  assert.deepEqual(serveAll(s, 10).slice(0, 3), ['h1', 'light', 'h2']);
});

test('limiter, FIFO lane (fair: false): the light client waits behind the whole burst', () => {
  const s = setup(false);
    for (let i = 1; i <= 10; i++) s.ask(`h${i}`, 0, 'heavy');
  s.ask('light', 0, 'light');
  assert.deepEqual(serveAll(s, 10).slice(-2), ['h10', 'light']);
});

test('limiter, fair lane: clients.weights apply (a weight-3 client gets three turns per round)', () => {
  const s = setup(true, { weights: { gold: 3 } });
  for (let i = 1; i <= 4; i++) s.ask(`g${i}`, 0, 'gold');
  for (let i = 1; i <= 2; i++) s.ask(`f${i}`, 0, 'free');
  assert.deepEqual(serveAll(s, 10), ['g1', 'g2', 'g3', 'f1', 'g4', 'f2']);
});

test('limiter, fair lane: maxLength still bounds the whole lane, light clients included', () => {
  const s = setup(true, { maxLength: 3 });
  for (let i = 1; i <= 3; i++) assert.equal(s.ask(`h${i}`, 0, 'heavy').kind, 'queued');
  const r = s.ask('light', 0, 'light') as Refusal;
  assert.equal(r.kind, 'refused');
  assert.equal(r.reason, 'queue_full');
});

/** A route with a fixed limit of 1 (one client may hold it and queue behind it: a lone client is never over its share). */
function single(fair: boolean, maxWaitMs = 10_000) {
  const clock = new ManualClock(0);
  const limiter = new Limiter({
    lanes: [lane('interactive', fair, 50, maxWaitMs)],
    limit: new FixedLimit(1),
    clientMaxShare: 1,
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 },
    clock,
    random: seededRandom(3),
  });
  return { clock, limiter, ...limiterVerbs(limiter) };
}

test('limiter, fair lane: maxWait still times out a waiter, and it leaves its client\'s queue', () => {
  const { clock, limiter, permit, ask, later, started } = single(true, 100);
  const busy = permit('busy', 0, 'a');
  ask('a1', 0, 'a');
  clock.advance(50);
  ask('b1', 0, 'b');
  clock.advance(50);
  assert.equal((later[0]!.result as Refusal).reason, 'queue_timeout');
  busy.settle('success');
  assert.deepEqual(started(), ['b1']);
  assert.equal(limiter.snapshot().queued, 0);
  assert.equal(clock.pendingTimers(), 0);
});

test('limiter, fair lane: a light client\'s deadline is judged by its turn, not by the whole backlog', () => {
  for (const fair of [true, false]) {
    const { clock, permit, ask } = single(fair);
    for (let i = 0; i < 20; i++) {
      const p = permit(`warm${i}`, 0, 'heavy');
      clock.advance(100);
      p.settle('success');
    }
    permit('busy', 0, 'heavy');
    for (let i = 0; i < 20; i++) ask(`h${i}`, 0, 'heavy');
    // ~10 completions/s: 2 s for the backlog, 0.2 s for one turn of the heavy client and its own.
    const r = ask('light', 0, 'light', clock.now() + 500);
    assert.equal(r.kind, fair ? 'queued' : 'refused', `fair: ${fair}`);
  }
});

test('limiter: a reload that turns fair off keeps every waiter, in arrival order, with its timer', () => {
  const s = setup(true);
  s.ask('a1', 0, 'a');
  s.ask('a2', 0, 'a');
  s.ask('b1', 0, 'b');
  const policy = { lanes: [lane('interactive', false)], clientMaxShare: 1, retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 } };
  s.limiter.reconfigure(policy);
  assert.equal(s.limiter.snapshot().queued, 3);
  assert.deepEqual(serveAll(s, 10), ['a1', 'a2', 'b1']);
  assert.equal(s.clock.pendingTimers(), 0);
});

test('limiter: a reload that turns fair on serves the waiters round-robin from then on', () => {
  const s = setup(false);
    s.ask('a1', 0, 'a');
  s.ask('a2', 0, 'a');
  s.ask('b1', 0, 'b');
  s.limiter.reconfigure({ lanes: [lane('interactive', true)], clientMaxShare: 1, retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 } });
  assert.deepEqual(serveAll(s, 10), ['a1', 'b1', 'a2']);
});

test('limiter: a reload with new weights applies them to clients that queue from then on', () => {
  const s = setup(true);
    s.limiter.reconfigure({ lanes: [lane('interactive', true)], clientMaxShare: 1, clientWeights: { gold: 2 }, retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 } });
  for (let i = 1; i <= 3; i++) s.ask(`g${i}`, 0, 'gold');
  for (let i = 1; i <= 2; i++) s.ask(`f${i}`, 0, 'free');
  assert.deepEqual(serveAll(s, 10), ['g1', 'g2', 'f1', 'g3', 'f2']);
});

/**
 * Time as an injected dependency. Core code never reads the wall clock or
 * sets timers directly: it asks a Clock, so tests drive time with a
 * ManualClock and never sleep (see ../shared/STYLE.md §3).
 */

/** A cancellable timer handle. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic scale (not the epoch). */
  now(): number;
  /** Calls fn once after ms. Real timers are unref()-ed: they never keep the process alive. */
  setTimer(fn: () => void, ms: number): Timer;
}

/** Randomness as an injected dependency: a function returning [0, 1). */
export type Random = () => number;

/** The process clock: performance.now() and unref()-ed setTimeout. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
};

interface ManualTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** Heap order: due time, then creation order. */
function before(a: ManualTimer, b: ManualTimer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * A clock that moves only when told to. `advance(ms)` fires every due timer
 * in time order (ties in creation order), with now() equal to each timer's
 * due time while it runs, so callbacks see the time they were scheduled for.
 * Timers sit in a binary heap (O(log n) per timer), so simulations with
 * thousands of pending timers stay fast; a cancelled timer is skipped when
 * it reaches the top.
 */
export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly heap: ManualTimer[] = [];
  private pending = 0;

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): Timer {
    const timer: ManualTimer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.push(timer);
    this.pending++;
    return {
      cancel: () => {
        if (timer.cancelled) return;
        timer.cancelled = true;
        this.pending--;
      },
    };
  }

  /** Number of timers that are still pending. */
  pendingTimers(): number {
    return this.pending;
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (let next = this.heap[0]; next !== undefined && next.at <= end; next = this.heap[0]) {
      this.pop();
      if (next.cancelled) continue;
      next.cancelled = true;
      this.pending--;
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }

  private push(x: ManualTimer): void {
    const h = this.heap;
    let i = h.length;
    h.push(x);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] as ManualTimer;
      if (!before(x, p)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = x;
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop() as ManualTimer;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && before(h[r] as ManualTimer, h[l] as ManualTimer) ? r : l;
      if (!before(h[c] as ManualTimer, last)) break;
      h[i] = h[c] as ManualTimer;
      i = c;
    }
    h[i] = last;
  }
}

/** A deterministic PRNG (mulberry32) for tests and simulations. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

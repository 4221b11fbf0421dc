/**
 * The remote side of the shared rate store, in memory, for unit tests on the
 * manual clock: the same GCRA step the Redis script runs, a connection that
 * can be "down", and calls that can be held (a slow store) or failed.
 */
import type { ManualClock } from '../../src/core/clock.js';
import { gcraStep, type RateVerdict } from '../../src/core/rate/gcra.js';
import type { RemoteRate } from '../../src/core/rate/rate-store.js';

/** The remote side in memory: the same GCRA step, a controllable connection, and calls that can be held or failed. */
export class MemoryRemote implements RemoteRate {
  ready = true;
  mode: 'answer' | 'hang' | 'fail' = 'answer';
  calls = 0;
  private readonly tat = new Map<string, number>();
  private readonly hung: (() => void)[] = [];
  constructor(
    private readonly clock: ManualClock,
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}
  take(key: string): Promise<RateVerdict> {
    this.calls++;
    if (this.mode === 'fail') return Promise.reject(new Error('ERR connection lost'));
    const answer = () => {
      const s = gcraStep(this.tat.get(key) ?? null, this.clock.now(), this.perSecond, this.burst);
      this.tat.set(key, s.tat);
      return s.verdict;
    };
    if (this.mode === 'hang') return new Promise((resolve) => this.hung.push(() => resolve(answer())));
    return Promise.resolve(answer());
  }
  /** Answers every held call now (too late for the ones that timed out). */
  answerHeld(): void {
    for (const f of this.hung.splice(0)) f();
  }
}


/**
 * Helper verbs for driving a Limiter in unit tests: ask for a slot by name,
 * assert an immediate permit, and read which queued requests started later.
 */
import assert from 'node:assert/strict';
import type { Limiter, Permit } from '../../src/core/limiter/limiter.js';
import type { Refusal } from '../../src/core/limiter/refusal.js';

export function limiterVerbs(limiter: Limiter) {
  /** Every waiter result, in order, tagged with the request's name. */
  const later: { name: string; result: Permit | Refusal }[] = [];
  const ask = (name: string, laneIndex = 0, client = 'c1', deadline?: number) =>
    limiter.acquire(laneIndex, client, (result) => later.push({ name, result }), deadline);
  const permit = (name: string, laneIndex = 0, client = 'c1'): Permit => {
    const r = ask(name, laneIndex, client);
    assert.equal(r.kind, 'permit', `${name} should start at once`);
    return r as Permit;
  };
  const started = () => later.filter((x) => x.result.kind === 'permit').map((x) => x.name);
  const laterPermit = (name: string): Permit => {
    const x = later.find((y) => y.name === name && y.result.kind === 'permit');
    assert.ok(x, `${name} should have started`);
    return x.result as Permit;
  };
  return { later, ask, permit, started, laterPermit };
}

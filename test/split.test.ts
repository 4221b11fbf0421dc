/**
 * One worker's share of a config (core/split.ts): every split bound adds up
 * exactly to the configured one over the workers, and the limiter honours a
 * fixed limit's per-client slots.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../src/config/load.js';
import { ManualClock, seededRandom } from '../src/core/clock.js';
import { FixedLimit } from '../src/core/limit/limit.js';
import { Limiter } from '../src/core/limiter/limiter.js';
import { shareOf, workerConfig, type WorkerShare } from '../src/core/split.js';
import { limiterVerbs } from './helpers/limiter-verbs.js';

const shares = (count: number): WorkerShare[] => Array.from({ length: count }, (_, index) => ({ index, count }));
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

test('shareOf: parts differ by at most 1, the first ones larger, and add up exactly (4 over 3 is 2 + 1 + 1)', () => {
  assert.deepEqual(shares(3).map((s) => shareOf(4, s)), [2, 1, 1]);
  assert.deepEqual(shares(2).map((s) => shareOf(5, s)), [3, 2]);
  for (let count = 1; count <= 7; count++) {
    for (let total = 0; total <= 50; total++) {
      const parts = shares(count).map((s) => shareOf(total, s));
      assert.equal(sum(parts), total, `${total} over ${count}`);
      assert.ok(Math.max(...parts) - Math.min(...parts) <= 1, `${total} over ${count}: ${parts.join('+')}`);
    }
  }
});

const POLICY = `
workers: 3
lanes:
  - { name: interactive, queue: { maxLength: 10 } }
  - { name: batch, maxShare: 0.5, queue: { maxLength: 0 } }
clients: { maxShare: 0.5, rate: { perSecond: 30, burst: 6 } }
routes:
  - name: fixed
    match: { pathPrefix: /f }
    upstream: http://127.0.0.1:1
    limit: { algorithm: fixed, initial: 7 }
  - name: adaptive
    match: { pathPrefix: /a }
    upstream: http://127.0.0.1:1
    limit: { algorithm: gradient, initial: 20, min: 2, max: 100 }
`;

test('workerConfig: fixed limits, queue bounds and a fixed limit\'s client slots are split exactly; adaptive bounds likewise, at least 1', () => {
  const config = parseConfig(POLICY, 'p.yaml');
  const parts = shares(3).map((s) => workerConfig(config, s));
  const fixed = parts.map((c) => c.routes[0]!);
  const adaptive = parts.map((c) => c.routes[1]!);
  assert.deepEqual(fixed.map((r) => r.limit.initial), [3, 2, 2]);
  // max(1, ceil(0.5 x 7)) = 4 slots per client over 3 workers.
  assert.deepEqual(fixed.map((r) => r.clientSlots), [2, 1, 1]);
  assert.deepEqual(fixed.map((r) => r.lanes[0]!.queue.maxLength), [4, 3, 3]);
  assert.deepEqual(fixed.map((r) => r.lanes[1]!.queue.maxLength), [0, 0, 0]);
  assert.deepEqual(adaptive.map((r) => [r.limit.min, r.limit.initial, r.limit.max]), [[1, 7, 34], [1, 7, 33], [1, 6, 33]]);
  // An adaptive worker derives its client slots from its own limit.
  assert.deepEqual(adaptive.map((r) => r.clientSlots), [undefined, undefined, undefined]);
  // Lane shares are not split: each is a share of the worker's own limit.
  assert.deepEqual(fixed.map((r) => r.lanes[1]!.maxShare), [0.5, 0.5, 0.5]);
  // A local rate is divided, so a client's rate is not multiplied by the workers.
  assert.deepEqual(parts.map((c) => [c.clients.rate!.perSecond, c.clients.rate!.burst]), [[10, 2], [10, 2], [10, 2]]);
  assert.equal(parts[0]!.workers, 3);
  assert.ok(Object.isFrozen(parts[0]!.routes[0]!.limit));
  // One worker: the config itself.
  assert.equal(workerConfig(config, { index: 0, count: 1 }), config);
});

test('workerConfig: with the shared (Redis) store the quota stays whole; the fail-open bucket divides by instances x workers', () => {
  const config = parseConfig(
    POLICY.replace('rate: { perSecond: 30, burst: 6 }', 'rate: { perSecond: 30, burst: 6, store: { redis: { url: "redis://127.0.0.1:1" }, instances: 2 } }'),
    'p.yaml',
  );
  const rate = workerConfig(config, { index: 1, count: 3 }).clients.rate!;
  assert.deepEqual([rate.perSecond, rate.burst, rate.store!.instances], [30, 6, 6]);
});

test('limiter: fixed client slots (a worker\'s share) decide when a client may wait, whatever the limit', () => {
  const limiter = new Limiter({
    lanes: [{ name: 'a', maxShare: 1, minShare: 0, queue: { maxLength: 10, maxWaitMs: 1000, fair: true } }],
    limit: new FixedLimit(4),
    clientMaxShare: 1,
    clientSlots: 2,
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 },
    clock: new ManualClock(0),
    random: seededRandom(1),
  });
  const { ask, permit } = limiterVerbs(limiter);
  for (const name of ['h1', 'h2', 'h3', 'h4']) permit(name, 0, name === 'h1' || name === 'h2' ? 'heavy' : 'other');
  // heavy holds 2 = its slots: it may not wait while another client holds slots too.
  const r = ask('h5', 0, 'heavy');
  assert.equal(r.kind, 'refused');
  assert.equal((r as { reason: string }).reason, 'client_share');
  assert.equal(ask('o1', 0, 'other').kind, 'refused');
  assert.equal(ask('x1', 0, 'light').kind, 'queued');
});

test('workerConfig: websocket.maxOpen is split exactly (all workers together hold at most maxOpen); a share below 1 is a config error', () => {
  const config = parseConfig(`${POLICY}  - name: chat\n    match: { pathPrefix: /ws }\n    upstream: http://127.0.0.1:1\n    websocket: { maxOpen: 10, idleTimeoutMs: 5000 }\n`, 'p.yaml');
  const chat = shares(3).map((s) => workerConfig(config, s).routes[2]!);
  assert.deepEqual(chat.map((r) => r.websocket), [{ maxOpen: 4, idleTimeoutMs: 5000 }, { maxOpen: 3, idleTimeoutMs: 5000 }, { maxOpen: 3, idleTimeoutMs: 5000 }]);
  assert.equal(workerConfig(config, { index: 0, count: 3 }).routes[0]!.websocket, undefined);
  assert.throws(
    () => parseConfig(`${POLICY}  - name: chat\n    match: { pathPrefix: /ws }\n    upstream: http://127.0.0.1:1\n    websocket: { maxOpen: 2 }\n`, 'p.yaml'),
    /p\.yaml:19:27: routes\.2\.websocket\.maxOpen: websocket\.maxOpen \(2\) is less than workers \(3\)/,
  );
});

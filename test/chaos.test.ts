/**
 * Chaos: a few thousand requests mixing client aborts (while queued and in
 * flight), upstream resets, timeouts, slow and broken bodies, garbage and
 * deadlines. Afterwards every route shows nothing in flight or queued, every
 * admitted request settled exactly once, the upstream never saw a request
 * whose client had left before dispatch, and open sockets are back to where
 * they started. Bounded: a fixed number of requests, each with a timeout.
 */
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { seededRandom } from '../src/core/clock.js';
import { recordEvents } from './helpers/events.js';
import { eventually, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const TOTAL = 2000;
const WORKERS = 48;

/** Sockets open in this process (Linux: /proc/self/fd; elsewhere: active socket handles). */
function openSockets(): number {
  try {
    return readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:');
      } catch {
        return false; // closed while we looked
      }
    }).length;
  } catch {
    return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
  }
}

function policy(upstream: string): string {
  return `
log: { level: fatal }
lanes:
  - name: interactive
    queue: { maxLength: 40, maxWaitMs: 300 }
  - name: batch
    maxShare: 0.5
    queue: { maxLength: 40, maxWaitMs: 500 }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
clients:
  key: { header: x-api-key }
  maxShare: 0.5
defaults:
  limit: { algorithm: fixed, initial: 16, min: 1, max: 100 }
  timeouts: { connectMs: 500, headersMs: 250, bodyMs: 150 }
  deadline: { header: x-request-timeout-ms }
  circuitBreaker: { consecutiveFailures: 12, openMs: 50, maxOpenMs: 100, halfOpenRatio: 0.5, closeAfterSuccesses: 1 }
routes:
  - name: storm
    match: { pathPrefix: /storm }
    upstream: ${upstream}
  - name: gate
    match: { pathPrefix: /gate }
    upstream: ${upstream}
    limit: { initial: 4 }
    timeouts: { headersMs: 10000 }
    lanes: { interactive: { queue: { maxLength: 50, maxWaitMs: 10000 } } }
    circuitBreaker: { enabled: false }
`;
}

type Kind = { weight: number; path: (i: number) => string; headers?: Record<string, string>; abortAfterMs?: number };

/** The storm's mix; each request draws one kind. */
const KINDS: Kind[] = [
  { weight: 25, path: (i) => `/storm/ok/${i}` },
  { weight: 10, path: (i) => `/storm/delay/${5 + (i % 30)}` },
  { weight: 10, path: () => '/storm/delay/10', headers: { 'x-priority': 'batch' } },
  { weight: 8, path: () => '/storm/reset' },
  { weight: 4, path: () => '/storm/reset-mid' },
  { weight: 2, path: () => '/storm/reset-mid?cl=1' },
  { weight: 2, path: () => '/storm/trickle' }, // body stalls mid-way: body timeout
  { weight: 1, path: () => '/storm/stall' }, // body never starts: 504
  { weight: 1, path: () => '/storm/delay/1000' }, // headers timeout
  { weight: 4, path: () => '/storm/delay/1000', headers: { 'x-request-timeout-ms': '60' } }, // deadline runs out upstream
  { weight: 2, path: () => '/storm/delay/5', headers: { 'x-request-timeout-ms': '1' } }, // tight deadline
  { weight: 5, path: () => '/storm/drip/3/10' }, // slow but complete body
  { weight: 3, path: () => '/storm/garbage' },
  { weight: 3, path: () => '/storm/close-after' },
  { weight: 4, path: () => '/storm/status/503' },
  { weight: 12, path: () => '/storm/delay/50', abortAfterMs: 1 }, // client leaves (queued or in flight)
  { weight: 4, path: (i) => `/storm/bad/%2e%2e/${i}` }, // refused at the door
];
const WEIGHTS = KINDS.reduce((n, k) => n + k.weight, 0);

async function storm(s: Running): Promise<Map<string, number>> {
  const random = seededRandom(7);
  const outcomes = new Map<string, number>();
  const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  // Keep-alive connections, as real clients use; aborts and cut bodies still cost theirs.
  const agent = new Agent({ connections: WORKERS });
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < TOTAL; i = next++) {
      let r = random() * WEIGHTS;
      const kind = KINDS.find((k) => (r -= k.weight) < 0) ?? KINDS[0]!;
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), kind.abortAfterMs !== undefined ? kind.abortAfterMs + Math.floor(random() * 60) : 5000);
      try {
        const a = await request(`${s.url}${kind.path(i)}`, {
          dispatcher: agent,
          headers: { 'x-api-key': `client-${i % 16}`, ...kind.headers },
          signal: ac.signal,
        });
        await a.body.text();
        count(String(a.statusCode));
      } catch {
        count(kind.abortAfterMs !== undefined ? 'client-aborted' : 'cut');
      } finally {
        clearTimeout(timer);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: WORKERS }, worker));
  } finally {
    await agent.close();
  }
  return outcomes;
}

/**
 * Queued aborts, made certain: the route's slots are held at the upstream,
 * so requests queue; half of them leave; then the slots free. None of those
 * that left may ever reach the upstream.
 */
async function gatedAborts(s: Running, up: TestUpstream, rounds: number): Promise<void> {
  const gateQueued = () => s.app.state().routes.find((r) => r.name === 'gate')!.queued;
  for (let round = 0; round < rounds; round++) {
    const holds = Array.from({ length: 4 }, (_, j) => send(`${s.url}/gate/hold/g${round}-${j}`));
    await eventually(() => [0, 1, 2, 3].every((j) => up.seen.includes(`/gate/hold/g${round}-${j}`)), 'gate slots held', 10_000);
    const waiting = Array.from({ length: 12 }, (_, k) => {
      const ac = new AbortController();
      const answer = send(`${s.url}/gate/q/${round}-${k}`, { signal: ac.signal }).catch((e: Error) => e);
      return { k, ac, answer };
    });
    await eventually(() => gateQueued() === 12, 'twelve queued', 10_000);
    for (const w of waiting) if (w.k % 2 === 0) w.ac.abort();
    await eventually(() => gateQueued() === 6, 'the six that left are out of the queue', 10_000);
    for (let j = 0; j < 4; j++) up.release(`g${round}-${j}`);
    for (const h of holds) assert.equal((await h).status, 200);
    for (const w of waiting) {
      const a = await w.answer;
      if (w.k % 2 === 0) assert.ok(a instanceof Error, `q/${round}-${w.k} was aborted`);
      else assert.ok(!(a instanceof Error) && a.status === 200, `q/${round}-${w.k} served`);
    }
    for (const w of waiting) {
      if (w.k % 2 === 0) assert.ok(!up.seen.includes(`/gate/q/${round}-${w.k}`), `aborted q/${round}-${w.k} never reached the upstream`);
    }
  }
}

test('chaos: thousands of mixed faults and aborts leave nothing in flight, queued, unsettled or open', async (t) => {
  // A short upstream keep-alive, so idle pooled connections close within a second or so.
  const up = await startUpstream({ keepAliveTimeoutMs: 2000 });
  const rec = recordEvents();
  const s = await startSluice(policy(up.url), { events: rec.events });
  const baseline = openSockets();
  try {
    const [outcomes] = await Promise.all([storm(s), gatedAborts(s, up, 5)]);

    // Every admitted request settled exactly once, and nothing is held anywhere.
    await eventually(() => rec.settled.length === rec.admitted, `settled ${rec.settled.length} of ${rec.admitted} admitted`, 10_000);
    // In-process state: an HTTP call to the admin port would itself leave a keep-alive socket open.
    for (const r of s.app.state().routes) {
      assert.equal(r.inflight, 0, r.name);
      assert.equal(r.queued, 0, r.name);
      for (const l of r.lanes) assert.deepEqual([l.inflight, l.queued], [0, 0], `${r.name}/${l.name}`);
    }
    t.diagnostic(`outcomes ${JSON.stringify(Object.fromEntries(outcomes))}, admitted ${rec.admitted}, refused ${rec.refused.length}`);
    // Enough got through for the upstream faults below to matter (refusals are part of the mix).
    assert.ok(rec.admitted > TOTAL / 4, `admitted ${rec.admitted}`);
    // The chaos did happen: every kind of fault was met and reported.
    for (const code of ['upstream_reset', 'upstream_body_reset', 'upstream_body_timeout', 'deadline_exceeded', 'bad_upstream_response']) {
      assert.ok(rec.upstreamErrors.includes(code), `${code} reported`);
    }
    // Every answer is one of the defined ones: no 500, nothing undefined.
    for (const key of outcomes.keys()) {
      assert.ok(['200', '400', '429', '502', '503', '504', 'client-aborted', 'cut'].includes(key), `unexpected outcome ${key}`);
    }
    // Open sockets return to where they started (idle keep-alives time out).
    await eventually(() => openSockets() <= baseline, `open sockets back to ${baseline} (now ${openSockets()})`, 10_000);
  } finally {
    await s.close();
    await up.close();
  }
});

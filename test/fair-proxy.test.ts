/**
 * Fair queuing through the real proxy: a light client that arrives behind a
 * heavy client's queued burst. With `queue.fair` it is served after one
 * request of the burst; without, after all of it. Asserted on the order the
 * answers come back in (no timing assertions); the waits are printed as
 * test diagnostics for the issue note. The route never becomes overloaded,
 * so what is measured is the queue's order, not adaptive LIFO.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const SERVICE_MS = 40;
const BURST = 12;

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

function policy(fair: boolean): string {
  return `
log: { level: warn }
clients:
  key: { header: x-api-key }
  maxShare: 1
lanes:
  - name: interactive
    queue: { maxLength: 50, maxWaitMs: 10000, fair: ${fair} }
defaults:
  limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }
  # Never overloaded here: adaptive LIFO (newest first) would also put the light request ahead.
  overload: { enterMs: 60000, exitMs: 20 }
routes:
  - name: api
    match: { pathPrefix: / }
    upstream: ${up.url}
`;
}

interface Run {
  /** Who was forwarded, in the order the upstream saw the requests arrive. */
  order: string[];
  lightMs: number;
  heavyLastMs: number;
}

/** The heavy client's burst fills the queue; then the light client sends one request. */
async function lightBehindBurst(s: Running): Promise<Run> {
  const seenBefore = up.seen.length;
  const timed = (who: string, key: string) => {
    const t0 = performance.now();
    return send(`${s.url}/delay/${SERVICE_MS}?who=${who}`, { headers: { 'x-api-key': key } }).then((a) => {
      assert.equal(a.status, 200, `${who}: ${a.text}`);
      return performance.now() - t0;
    });
  };
  const heavy = Array.from({ length: BURST }, (_, i) => timed(`heavy${i}`, 'heavy'));
  await eventually(async () => (await s.state()).routes[0]!.queued === BURST - 1, 'the burst queued');
  const lightMs = await timed('light', 'light');
  const heavyMs = await Promise.all(heavy);
  const order = up.seen.slice(seenBefore).map((url) => new URL(url, 'http://x').searchParams.get('who') ?? url);
  return { order, lightMs, heavyLastMs: Math.max(...heavyMs) };
}

test('fair lane: a light client behind a heavy client\'s burst is answered after one request of the burst', async (t) => {
  const s = await startSluice(policy(true));
  try {
    const r = await lightBehindBurst(s);
    t.diagnostic(`fair: light waited ${r.lightMs.toFixed(0)} ms (service ${SERVICE_MS} ms, burst ${BURST}); last heavy ${r.heavyLastMs.toFixed(0)} ms`);
    // The request in flight when it arrived, then one of the burst (the heavy client's turn), then the light one.
    assert.ok(r.order.indexOf('light') <= 2, `forwarding order: ${r.order.join(' ')}`);
    assert.equal(r.order.length, BURST + 1);
  } finally {
    await s.close();
  }
});

test('FIFO lane (fair: false): the same light client waits behind the whole burst', async (t) => {
  const s = await startSluice(policy(false));
  try {
    const r = await lightBehindBurst(s);
    t.diagnostic(`fifo: light waited ${r.lightMs.toFixed(0)} ms (service ${SERVICE_MS} ms, burst ${BURST}); last heavy ${r.heavyLastMs.toFixed(0)} ms`);
    assert.equal(r.order.at(-1), 'light', `forwarding order: ${r.order.join(' ')}`);
    assert.equal(r.order.length, BURST + 1);
  } finally {
    await s.close();
  }
});

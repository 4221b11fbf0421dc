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
  /** From the moment the slot frees (the held request is released) to the light request's answer, its own service included. */
  lightMs: number;
  /** From the same moment to the last heavy answer. */
  heavyLastMs: number;
}

/** The heavy client's burst fills the queue; then the light client sends one request. */
async function lightBehindBurst(s: Running): Promise<Run> {
  const seenBefore = up.seen.length;
  const timed = (who: string, key: string, path = `/delay/${SERVICE_MS}`) => {
    const t0 = performance.now();
    return send(`${s.url}${path}?who=${who}`, { headers: { 'x-api-key': key } }).then((a) => {
      assert.equal(a.status, 200, `${who}: ${a.text}`);
      return performance.now() - t0;
    });
  };
  // The first heavy request holds the only slot until the whole burst and the light request wait behind it.
  const heavy = [timed('heavy0', 'heavy', '/hold/heavy0')];
  await up.waitHolding(1);
  for (let i = 1; i < BURST; i++) heavy.push(timed(`heavy${i}`, 'heavy'));
  await eventually(async () => (await s.state()).routes[0]!.queued === BURST - 1, 'the burst queued');
  const light = timed('light', 'light');
  await eventually(async () => (await s.state()).routes[0]!.queued === BURST, 'the light request queued');
  const released = performance.now();
  up.release('heavy0');
  await light;
  const lightMs = performance.now() - released;
  await Promise.all(heavy);
  const heavyMs = [performance.now() - released];
  const order = up.seen.slice(seenBefore).map((url) => new URL(url, 'http://x').searchParams.get('who') ?? url);
  return { order, lightMs, heavyLastMs: Math.max(...heavyMs) };
}

test('fair lane: a light client behind a heavy client\'s burst is answered after one request of the burst', async (t) => {
  const s = await startSluice(policy(true));
  try {
    const r = await lightBehindBurst(s);
    t.diagnostic(`fair: light answered ${r.lightMs.toFixed(0)} ms after the slot freed (service ${SERVICE_MS} ms, ${BURST - 1} heavy queued ahead); last heavy ${r.heavyLastMs.toFixed(0)} ms`);
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
    t.diagnostic(`fifo: light answered ${r.lightMs.toFixed(0)} ms after the slot freed (service ${SERVICE_MS} ms, ${BURST - 1} heavy queued ahead); last heavy ${r.heavyLastMs.toFixed(0)} ms`);
    assert.equal(r.order.at(-1), 'light', `forwarding order: ${r.order.join(' ')}`);
    assert.equal(r.order.length, BURST + 1);
  } finally {
    await s.close();
  }
});

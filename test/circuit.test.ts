/** The circuit breaker through the proxy: real upstream failures, real refusals, state on /admin/state. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { recordEvents, type Recorded } from './helpers/events.js';
import { scrape } from './helpers/prom.js';
import { eventually, refusalOf, send, startSluice, startSluiceFile, writePolicy, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

function policy(o: { openMs?: number; enabled?: boolean } = {}): string {
  return `
log: { level: error }
retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 }
defaults:
  limit: { algorithm: fixed, initial: 8, min: 1, max: 100 }
  timeouts: { connectMs: 1000, headersMs: 2000, bodyMs: 2000 }
  circuitBreaker:
    enabled: ${o.enabled ?? true}
    consecutiveFailures: 3
    openMs: ${o.openMs ?? 300}
    maxOpenMs: 5000
    halfOpenRatio: 0.01
    closeAfterSuccesses: 3
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
  - name: dead
    match: { pathPrefix: /dead }
    upstream: http://127.0.0.1:1
`;
}

async function withSluice(yaml: string, fn: (s: Running, rec: Recorded) => Promise<void>): Promise<void> {
  const rec = recordEvents();
  // Never "lucky": in half-open only the one-probe-at-a-time rule lets requests through.
  const s = await startSluice(yaml, { events: rec.events, random: () => 0.99 });
  try {
    await fn(s, rec);
    await eventually(() => rec.settled.length === rec.admitted, 'every admitted request settled');
  } finally {
    up.setFailing(false);
    up.releaseAll();
    await s.close();
  }
}

async function breakerOf(s: Running, route = 'main') {
  const r = (await s.state()).routes.find((x) => x.name === route)!;
  assert.ok(r.circuitBreaker, 'breaker state is on /admin/state');
  return r.circuitBreaker;
}

test('consecutive failures open the circuit: 503 circuit_open at once, Retry-After = time left open, nothing forwarded', () =>
  withSluice(policy({ openMs: 2000 }), async (s, rec) => {
    up.setFailing(true);
    for (let i = 0; i < 3; i++) assert.equal((await send(`${s.url}/x`)).status, 502);
    const seen = up.seen.length;
    const a = await send(`${s.url}/x`);
    assert.equal(a.status, 503);
    const r = refusalOf(a);
    assert.equal(r.reason, 'circuit_open');
    assert.equal(r.error, 'overloaded');
    assert.equal(r.retryAfter, 2, 'the ~2 s left open, rounded up');
    assert.equal(up.seen.length, seen, 'refused without touching the upstream');
    const b = await breakerOf(s);
    assert.equal(b.state, 'open');
    assert.equal(b.opens, 1);
    assert.deepEqual(rec.breaker, ['open']);
    assert.deepEqual(rec.refused, ['circuit_open']);
    // ...and as metrics.
    const m = await scrape(s.adminUrl);
    assert.equal(m.value('sluice_circuit_breaker_state', { route: 'main', state: 'open' }), 1);
    assert.equal(m.value('sluice_circuit_breaker_state', { route: 'main', state: 'closed' }), 0);
    assert.equal(m.value('sluice_circuit_breaker_opens_total', { route: 'main' }), 1);
    assert.equal(m.value('sluice_rejections_total', { route: 'main', lane: 'interactive', reason: 'circuit_open' }), 1);
    assert.equal(m.value('sluice_upstream_errors_total', { route: 'main', kind: 'reset' }), 3);
    // Other routes are not affected.
    assert.equal((await breakerOf(s, 'dead')).state, 'closed');
  }));

test('connection refused counts as a failure', () =>
  withSluice(policy({ openMs: 2000 }), async (s) => {
    for (let i = 0; i < 3; i++) assert.equal((await send(`${s.url}/dead/x`)).status, 502);
    const a = await send(`${s.url}/dead/x`);
    assert.equal(a.status, 503);
    assert.equal(refusalOf(a).reason, 'circuit_open');
  }));

test('half-open: one probe at a time; a failed probe reopens for twice as long; successes in a row close it', () =>
  withSluice(policy({ openMs: 300 }), async (s, rec) => {
    up.setFailing(true);
    for (let i = 0; i < 3; i++) await send(`${s.url}/x`);
    await eventually(async () => (await breakerOf(s)).state === 'half_open', 'half-open after openMs', 5000);

    // Still failing: the probe fails and the circuit reopens, for 600 ms this time.
    assert.equal((await send(`${s.url}/x`)).status, 502);
    const reopened = await breakerOf(s);
    assert.equal(reopened.state, 'open');
    assert.equal(reopened.openMs, 600);
    await eventually(async () => (await breakerOf(s)).state === 'half_open', 'half-open again', 5000);

    // Healthy again. While a probe is in flight, everything else is refused.
    up.setFailing(false);
    const probe = send(`${s.url}/hold/probe`);
    await up.waitHolding(1);
    const other = await send(`${s.url}/x`);
    assert.equal(other.status, 503);
    assert.equal(refusalOf(other).reason, 'circuit_open');
    up.release('probe');
    assert.equal((await probe).status, 200);
    assert.equal((await breakerOf(s)).state, 'half_open', 'one success does not close it');
    assert.equal((await send(`${s.url}/x`)).status, 200);
    assert.equal((await send(`${s.url}/x`)).status, 200);
    assert.equal((await breakerOf(s)).state, 'closed');
    assert.deepEqual(rec.breaker, ['open', 'half_open', 'open', 'half_open', 'closed']);
  }));

test('upstream answers, 5xx included, are not failures: the adaptive limit handles overload statuses', () =>
  withSluice(policy(), async (s) => {
    for (let i = 0; i < 6; i++) {
      const a = await send(`${s.url}/status/503`);
      assert.equal(a.status, 503);
      assert.deepEqual(a.json(), { upstream: true });
    }
    const b = await breakerOf(s);
    assert.equal(b.state, 'closed');
    assert.equal(b.windowRequests, 6);
    assert.equal(b.windowFailures, 0);
  }));

test('clients leaving mid-request teach the breaker nothing', () =>
  withSluice(policy(), async (s) => {
    for (let i = 0; i < 5; i++) {
      const ac = new AbortController();
      const gone = send(`${s.url}/hold/gone${i}`, { signal: ac.signal }).catch((e: Error) => e);
      await up.waitHolding(1);
      ac.abort();
      await gone;
      await eventually(() => up.holding() === 0, 'upstream saw the abort');
    }
    await eventually(async () => (await s.state()).routes[0]!.inflight === 0, 'slots freed');
    const b = await breakerOf(s);
    assert.equal(b.state, 'closed');
    assert.equal(b.windowRequests, 0);
  }));

test('a disabled breaker shows as null and never refuses', () =>
  withSluice(policy({ enabled: false }), async (s) => {
    up.setFailing(true);
    for (let i = 0; i < 6; i++) assert.equal((await send(`${s.url}/x`)).status, 502);
    assert.equal((await s.state()).routes[0]!.circuitBreaker, null);
  }));

test('shadow mode: an open circuit is a would-be refusal; the request is still forwarded', () =>
  withSluice(`mode: shadow\n${policy({ openMs: 5000 })}`, async (s, rec) => {
    up.setFailing(true);
    for (let i = 0; i < 3; i++) assert.equal((await send(`${s.url}/x`)).status, 502);
    assert.equal((await breakerOf(s)).state, 'open');
    const seen = up.seen.length;
    const a = await send(`${s.url}/x`);
    assert.equal(a.status, 502, 'forwarded (and failed) instead of refused');
    assert.equal(up.seen.length, seen + 1);
    await eventually(() => s.logs.some((l) => l.msg === 'would refuse' && l.reason === 'circuit_open'), 'would-refuse logged');
    assert.deepEqual(rec.shadowRefused, ['circuit_open']);
    assert.deepEqual(rec.refused, []);
  }));

test('reload keeps the breaker (state and backoff) unless the upstream or the breaker config changed', async () => {
  const yaml = (extra = '', upstream = up.url) => policy({ openMs: 5000 }).replace(/upstream: http:\/\/127\.0\.0\.1:\d+\n  - name: dead/, `upstream: ${upstream}\n${extra}  - name: dead`);
  const file = writePolicy(yaml());
  const s = await startSluiceFile(file, { random: () => 0.99 });
  try {
    up.setFailing(true);
    for (let i = 0; i < 3; i++) await send(`${s.url}/x`);
    assert.equal((await breakerOf(s)).state, 'open');
    // Another limit: the breaker stays open.
    writePolicy(yaml('    limit: { algorithm: fixed, initial: 9 }\n'), file);
    assert.equal(s.app.reload().result, 'success');
    assert.equal((await breakerOf(s)).state, 'open');
    assert.equal((await send(`${s.url}/x`)).status, 503);
    // Another upstream: a fresh breaker.
    const other = await startUpstream();
    try {
      writePolicy(yaml('', other.url), file);
      assert.equal(s.app.reload().result, 'success');
      const b = await breakerOf(s);
      assert.equal(b.state, 'closed');
      assert.equal(b.opens, 0);
      assert.equal((await send(`${s.url}/x`)).status, 200);
    } finally {
      await other.close();
    }
  } finally {
    up.setFailing(false);
    await s.close();
  }
});

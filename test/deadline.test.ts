import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ManualClock } from '../src/core/clock.js';
import { formatBudget, MAX_BUDGET_MS, parseBudgetMs } from '../src/proxy/deadline.js';
import { recordEvents } from './helpers/events.js';
import { eventually, refusalOf, send, startSluice, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

test('deadline header values: ms digits, grpc-timeout units, everything else malformed', () => {
  assert.equal(parseBudgetMs('250', 'ms'), 250);
  assert.equal(parseBudgetMs('0', 'ms'), 0);
  assert.equal(parseBudgetMs('007', 'ms'), 7);
  for (const bad of ['', '-5', '+5', '1.5', '1e3', ' 5', '5 ms', '0x10', '5, 6', 'NaN', 'Infinity']) {
    assert.ok(Number.isNaN(parseBudgetMs(bad, 'ms')), JSON.stringify(bad));
  }
  assert.ok(Number.isNaN(parseBudgetMs(['5', '6'], 'ms')));
  assert.ok(Number.isNaN(parseBudgetMs(undefined, 'ms')));
  assert.equal(parseBudgetMs('99999999999999999999', 'ms'), MAX_BUDGET_MS, 'huge budgets are clamped');

  assert.equal(parseBudgetMs('250m', 'grpc-timeout'), 250);
  assert.equal(parseBudgetMs('2S', 'grpc-timeout'), 2000);
  assert.equal(parseBudgetMs('3M', 'grpc-timeout'), 180_000);
  assert.equal(parseBudgetMs('1H', 'grpc-timeout'), 3_600_000);
  assert.equal(parseBudgetMs('1500u', 'grpc-timeout'), 1.5);
  assert.equal(parseBudgetMs('2000000n', 'grpc-timeout'), 2);
  assert.equal(parseBudgetMs('99999999H', 'grpc-timeout'), MAX_BUDGET_MS);
  for (const bad of ['250', '123456789S', '-1S', '1.5S', '5X', 'S', '5s ', '5 S']) {
    assert.ok(Number.isNaN(parseBudgetMs(bad, 'grpc-timeout')), JSON.stringify(bad));
  }
});

test('the forwarded budget is whole ms, at least 1, and fits grpc-timeout`s 8 digits', () => {
  assert.equal(formatBudget(249.7, 'ms'), '249');
  assert.equal(formatBudget(0.2, 'ms'), '1');
  assert.equal(formatBudget(1500, 'grpc-timeout'), '1500m');
  assert.equal(formatBudget(123_456_789, 'grpc-timeout'), '123456S');
  assert.equal(formatBudget(MAX_BUDGET_MS, 'grpc-timeout'), '2147483S');
});

// ---------------------------------------------------------------- through the proxy

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

function policy(deadline: string, o: { limit?: number; headersMs?: number } = {}): string {
  return `
log: { level: error }
lanes:
  - name: interactive
    queue: { maxLength: 20, maxWaitMs: 5000 }
retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0 }
defaults:
  limit: { algorithm: fixed, initial: ${o.limit ?? 4}, min: 1, max: 100 }
  timeouts: { connectMs: 1000, headersMs: ${o.headersMs ?? 5000}, bodyMs: 5000 }
  circuitBreaker: { consecutiveFailures: 3 }
  ${deadline}
routes:
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`;
}

async function withSluice(yaml: string, fn: (s: Running) => Promise<void>, deps = {}): Promise<void> {
  const s = await startSluice(yaml, deps);
  try {
    await fn(s);
  } finally {
    up.releaseAll();
    await s.close();
  }
}

function forwarded(a: { json<T>(): T }, header: string): string | undefined {
  return a.json<{ headers: Record<string, string> }>().headers[header];
}

test('the remaining budget is forwarded upstream in the same header', () =>
  withSluice(policy('deadline: { header: x-request-timeout-ms }'), async (s) => {
    const a = await send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': '5000' } });
    assert.equal(a.status, 200);
    const left = Number(forwarded(a, 'x-request-timeout-ms'));
    assert.ok(left > 0 && left <= 5000, `forwarded ${left}`);
    // No header, no deadline: nothing is added.
    assert.equal(forwarded(await send(`${s.url}/echo`), 'x-request-timeout-ms'), undefined);
  }));

test('grpc-timeout budgets are read and forwarded in grpc-timeout format', () =>
  withSluice(policy('deadline: { format: grpc-timeout }'), async (s) => {
    const a = await send(`${s.url}/echo`, { headers: { 'grpc-timeout': '2S' } });
    assert.equal(a.status, 200);
    const v = forwarded(a, 'grpc-timeout') ?? '';
    assert.match(v, /^\d+m$/);
    assert.ok(Number(v.slice(0, -1)) <= 2000);
  }));

test('the upstream gets no longer than the remaining budget: 504 deadline_exceeded, and the breaker learns nothing', async () => {
  const rec = recordEvents();
  await withSluice(
    policy('deadline: { header: x-request-timeout-ms }', { headersMs: 5000 }),
    async (s) => {
      // Five tight deadlines against a slow upstream: each times out at the budget, not at headersMs (5 s)...
      for (let i = 0; i < 5; i++) {
        const a = await send(`${s.url}/delay/3000`, { headers: { 'x-request-timeout-ms': '100' } });
        assert.equal(a.status, 504);
        assert.deepEqual(a.json(), { error: 'gateway_timeout', reason: 'deadline_exceeded' });
      }
      assert.deepEqual(rec.upstreamErrors, Array(5).fill('deadline_exceeded'));
      await eventually(() => rec.settled.length === 5, 'settled');
      assert.deepEqual(rec.settled, Array(5).fill('ignore'));
      // ...and a client's own tight deadlines never open the circuit for everyone (consecutiveFailures is 3).
      const st = (await s.state()).routes[0]!;
      assert.equal(st.circuitBreaker?.state, 'closed');
      assert.equal(st.inflight, 0);
      assert.equal((await send(`${s.url}/x`)).status, 200);
    },
    { events: rec.events },
  );
});

test('a queued request whose budget the queue ahead cannot meet is refused at once with 503 deadline', async () => {
  // A manual clock that never moves: a refusal can only be the early estimate, never a queue timer.
  const clock = new ManualClock(0);
  await withSluice(
    policy('deadline: { header: x-request-timeout-ms }', { limit: 1 }),
    async (s) => {
      // One completion in the limiter's first 100 ms: a completion rate of 10/s.
      assert.equal((await send(`${s.url}/x`)).status, 200);
      const held = send(`${s.url}/hold/d0`);
      await up.waitHolding(1);
      const queued = [send(`${s.url}/hold/d1`), send(`${s.url}/hold/d2`)];
      await eventually(async () => (await s.state()).routes[0]!.queued === 2, 'two queued');
      // Two ahead + itself at 10/s: about 300 ms, more than the 250 ms budget.
      const a = await send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': '250' } });
      assert.equal(a.status, 503);
      const r = refusalOf(a);
      assert.equal(r.reason, 'deadline');
      assert.equal(r.error, 'overloaded');
      assert.ok(r.retryAfter >= 1);
      // A budget the queue can meet waits its turn and is forwarded with the budget left (the clock stood still).
      const patient = send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': '10000' } });
      await eventually(async () => (await s.state()).routes[0]!.queued === 3, 'patient request queued');
      up.releaseAll();
      await held;
      await eventually(() => up.holding() === 1, 'd1 forwarded');
      up.releaseAll();
      await eventually(() => up.holding() === 1, 'd2 forwarded');
      up.releaseAll();
      await Promise.all(queued);
      const p = await patient;
      assert.equal(p.status, 200);
      assert.equal(forwarded(p, 'x-request-timeout-ms'), '10000');
    },
    { clock },
  );
});

test('malformed, negative and fractional deadlines get 400 bad_deadline and are not forwarded', () =>
  withSluice(policy('deadline: { header: x-request-timeout-ms }'), async (s) => {
    const before = up.seen.length;
    for (const v of ['-5', 'soon', '1.5', '1e3', '']) {
      const a = await send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': v } });
      assert.equal(a.status, 400, JSON.stringify(v));
      assert.deepEqual(a.json(), { error: 'bad_request', reason: 'bad_deadline' });
    }
    assert.equal(up.seen.length, before);
  }));

test('a spent budget (0) is refused with 503 deadline; a huge one is clamped and served', () =>
  withSluice(policy('deadline: { header: x-request-timeout-ms }'), async (s) => {
    const before = up.seen.length;
    const spent = await send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': '0' } });
    assert.equal(spent.status, 503);
    assert.equal(refusalOf(spent).reason, 'deadline');
    assert.equal(up.seen.length, before);
    const huge = await send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': '9'.repeat(30) } });
    assert.equal(huge.status, 200);
    const left = Number(forwarded(huge, 'x-request-timeout-ms'));
    assert.ok(left > 0 && left <= MAX_BUDGET_MS, `forwarded ${left}`);
    const st = (await s.state()).routes[0]!;
    assert.equal(st.inflight, 0);
  }));

test('without `deadline:` on the route the header is not interpreted and passes through as sent', () =>
  withSluice(policy(''), async (s) => {
    const a = await send(`${s.url}/echo`, { headers: { 'x-request-timeout-ms': 'whenever' } });
    assert.equal(a.status, 200);
    assert.equal(forwarded(a, 'x-request-timeout-ms'), 'whenever');
  }));

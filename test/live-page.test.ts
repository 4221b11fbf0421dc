/**
 * End to end: the live page (GET / on the admin listener) in headless
 * Chromium (Debian's `chromium`, driven by playwright-core) while load runs
 * through the proxy.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { LIVE_PAGE } from '../src/observability/live-page.js';
import { send, startSluice } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const CHROMIUM = '/usr/bin/chromium';
// The network is closed: nothing may try to reach out.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// In-page code runs in the browser; this project compiles without the DOM types.
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** In-page condition (serialized by playwright, so it only sees its argument): the in-flight figure reads `want`. */
const inflightIs = (want: string) =>
  document.querySelector('section[data-route="orders"] [data-field="inflight"]')?.textContent === want;

let up: TestUpstream;
let browser: Browser;
before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: apt-get install -y --no-install-recommends chromium (.ci/run does this)`);
  }
  up = await startUpstream();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, timeout: 30_000 });
});
after(async () => {
  await browser?.close();
  await up?.close();
});

test('the page is self-contained: no external URL, no template-literal leftovers', () => {
  assert.doesNotMatch(LIVE_PAGE, /(src|href)\s*=\s*["']?(https?:)?\/\//i);
  assert.doesNotMatch(LIVE_PAGE, /https?:\/\//);
  assert.doesNotMatch(LIVE_PAGE, /\$\{/);
});

test('the live page shows the route, its in-flight requests and refusals while load runs', async () => {
  const s = await startSluice(`
log: { level: error }
lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
  - name: batch
    maxShare: 0.5
    queue: { maxLength: 0, maxWaitMs: 1000 }
defaults:
  limit: { algorithm: fixed, initial: 3 }
routes:
  - name: orders
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
  const page = await browser.newPage();
  const requested: string[] = [];
  const pageErrors: string[] = [];
  page.on('request', (r) => requested.push(r.url()));
  page.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    const answer = await page.goto(`${s.adminUrl}/?every=100`);
    assert.equal(answer?.status(), 200);
    assert.equal(await page.title(), 'Sluice live');
    const route = page.locator('section[data-route="orders"]');
    await route.waitFor({ timeout: 10_000 });
    assert.equal(await route.locator('h2').textContent(), 'orders');
    assert.equal(await route.locator('[data-field="inflight"]').textContent(), '0');

    // Load: three requests held at the upstream fill the limit; more are refused (no queue).
    const held = [send(`${s.url}/hold/p1`), send(`${s.url}/hold/p2`), send(`${s.url}/hold/p3`)];
    await up.waitHolding(3);
    await page.waitForFunction(inflightIs, '3', { timeout: 10_000 });
    assert.equal(await route.locator('[data-field="limit"]').textContent(), '3');
    assert.equal(await route.locator('[data-field="state"]').textContent(), 'normal');
    assert.equal(await route.locator('tr[data-lane="interactive"] td').nth(1).textContent(), '3');

    // Refuse requests until the page has shown a non-zero refusal rate (bounded: at most 5 s / 2000 requests).
    const until = Date.now() + 5000;
    let sawRefusals = false;
    for (let i = 0; i < 2000 && Date.now() < until && !sawRefusals; i++) {
      assert.equal((await send(`${s.url}/x`)).status, 503);
      if (i % 10 === 9) sawRefusals = Number(await route.locator('[data-field="refused"]').textContent()) > 0;
    }
    assert.ok(sawRefusals, 'the page showed refusals per second');

    // The in-flight chart has been drawn: its canvas has non-transparent pixels.
    const drawn = await page.evaluate(() => {
      const c = document.querySelector('section[data-route="orders"] canvas');
      const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data as Uint8ClampedArray;
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if ((data[i] as number) > 0) n++;
      return n;
    });
    assert.ok(drawn > 100, `chart pixels drawn: ${drawn}`);

    up.releaseAll();
    for (const a of await Promise.all(held)) assert.equal(a.status, 200);
    await page.waitForFunction(inflightIs, '0', { timeout: 10_000 });

    assert.deepEqual(pageErrors, []);
    const elsewhere = requested.filter((u) => !u.startsWith(`${s.adminUrl}/`));
    assert.deepEqual(elsewhere, [], 'the page loads nothing from anywhere but the admin listener');
  } finally {
    await page.close();
    up.releaseAll();
    await s.close();
  }
});

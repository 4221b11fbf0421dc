/**
 * End to end: the live page (GET / on the admin listener) in headless
 * Chromium (Debian's `chromium`, driven by playwright-core) while load runs
 * through the proxy. The dead-route test saves a screenshot to
 * bench/results/live-page-dead-route.png (gitignored).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { createServer } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import WebSocket, { WebSocketServer } from 'ws';
import { LIVE_PAGE } from '../src/observability/live-page.js';
import { send, startSluice } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = join(fileURLToPath(new URL('../../', import.meta.url)), 'bench/results/live-page-dead-route.png');
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const BATCH = { 'x-priority': 'batch' };

/** Paced requests to `path`, a few at a time, for `ms` (bounded: at most `count`). */
async function trickle(url: string, path: string, o: { workers: number; everyMs: number; ms: number; count: number; headers?: Record<string, string> }): Promise<number[]> {
  const statuses: number[] = [];
  const end = Date.now() + o.ms;
  let sent = 0;
  const worker = async () => {
    while (sent < o.count && Date.now() < end) {
      sent++;
      const t0 = Date.now();
      statuses.push((await send(`${url}${path}`, { headers: o.headers })).status);
      await sleep(Math.max(0, t0 + o.everyMs - Date.now()));
    }
  };
  await Promise.all(Array.from({ length: o.workers }, worker));
  return statuses;
}

/** In-page: how many pixels of the canvas `chart` of `route` have the colour [r, g, b] (a series, not the axes). */
const pixelsOf = ({ route, chart, rgb }: { route: string; chart: string; rgb: number[] }) => {
  const c = document.querySelector(`section[data-route="${route}"] canvas[data-chart="${chart}"]`);
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data as Uint8ClampedArray;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs((data[i] as number) - (rgb[0] as number)) < 8 && Math.abs((data[i + 1] as number) - (rgb[1] as number)) < 8 && Math.abs((data[i + 2] as number) - (rgb[2] as number)) < 8) n++;
  }
  return n;
};

test('a dead route shows its breaker open in red; latency is drawn per lane; a fresh tab shows the minutes before it opened', async () => {
  const gone = await startUpstream();
  const deadUrl = gone.url;
  await gone.close();
  const s = await startSluice(`
log: { level: fatal }
classify:
  - lane: batch
    when: { header: { name: x-priority, value: batch } }
defaults:
  limit: { algorithm: fixed, initial: 4 }
routes:
  - name: orders
    match: { pathPrefix: /orders }
    upstream: ${up.url}
  - name: dead
    match: { pathPrefix: /dead }
    upstream: ${deadUrl}
    circuitBreaker: { consecutiveFailures: 2, openMs: 60000 }
`);
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    // Three seconds of traffic before any tab is open: the history must keep it.
    const before = await Promise.all([
      trickle(s.url, '/orders/delay/30', { workers: 3, everyMs: 50, ms: 3000, count: 300 }),
      trickle(s.url, '/dead/x', { workers: 1, everyMs: 100, ms: 3000, count: 40 }),
      trickle(s.url, '/orders/delay/80', { workers: 1, everyMs: 100, ms: 3000, count: 30, headers: BATCH }),
    ]);
    assert.ok(before[0].every((x) => x === 200), 'orders answers');
    assert.ok(before[2].every((x) => x === 200), 'orders answers batch');
    assert.deepEqual([...new Set(before[1])].sort(), [502, 503], 'dead: upstream errors, then refused circuit_open');

    await page.goto(`${s.adminUrl}/?every=200&window=20`);
    const dead = page.locator('section[data-route="dead"]');
    await dead.waitFor({ timeout: 10_000 });
    // The tab's first answer already holds the past: samples from the 3 s before it opened.
    assert.ok(Number(await page.locator('body').getAttribute('data-first-batch')) >= 3, 'samples from before the tab opened');
    assert.ok(Number(await page.locator('body').getAttribute('data-span-s')) >= 2);
    const latency = page.locator('section[data-route="orders"] canvas[data-chart="latency"]');
    assert.ok(Number(await latency.getAttribute('data-drawn')) >= 8, 'upstream latency p50/p99 points drawn');
    // One colour per lane (p50 dashed, p99 solid): both lanes' latency is on the canvas.
    assert.ok((await page.evaluate(pixelsOf, { route: 'orders', chart: 'latency', rgb: [88, 166, 255] })) > 20, 'interactive latency drawn');
    assert.ok((await page.evaluate(pixelsOf, { route: 'orders', chart: 'latency', rgb: [210, 168, 255] })) > 20, 'batch latency drawn');
    assert.deepEqual(await latency.locator('xpath=..').locator('.legend span').allTextContents(), ['interactive p50', 'batch p50', 'interactive p99', 'batch p99']);
    assert.ok(Number(await page.locator('section[data-route="orders"] canvas[data-chart="wait"]').getAttribute('data-drawn')) >= 4, 'queue wait drawn');

    const breaker = dead.locator('[data-field="breaker"]');
    assert.equal(await breaker.getAttribute('data-state'), 'open');
    assert.match((await breaker.textContent()) ?? '', /^breaker open/);
    assert.match((await breaker.getAttribute('class')) ?? '', /\bbad\b/);
    assert.match((await dead.getAttribute('class')) ?? '', /\bdown\b/, 'the dead route card is red');
    assert.doesNotMatch((await dead.locator('[data-field="state"]').getAttribute('class')) ?? '', /\bok\b/, 'nothing green on a dead route');
    assert.equal(await page.locator('section[data-route="orders"] [data-field="breaker"]').getAttribute('data-state'), 'closed');
    // Its refusals are circuit_open, drawn in red; its upstream errors were drawn too.
    assert.ok((await page.evaluate(pixelsOf, { route: 'dead', chart: 'refused', rgb: [248, 81, 73] })) > 20, 'circuit_open refusals drawn');
    assert.ok(Number(await dead.locator('canvas[data-chart="errors"]').getAttribute('data-drawn')) > 0);

    // A little more traffic while the page is open, then the picture for the note.
    // The lane table shows upstream latency per lane while traffic flows (a batch p99 of about 80 ms).
    await Promise.all([
      trickle(s.url, '/orders/delay/30', { workers: 3, everyMs: 50, ms: 1500, count: 150 }),
      trickle(s.url, '/dead/x', { workers: 1, everyMs: 100, ms: 1500, count: 20 }),
      trickle(s.url, '/orders/delay/80', { workers: 1, everyMs: 100, ms: 1500, count: 15, headers: BATCH }),
      page.waitForFunction(() => /^\d/.test(document.querySelector('section[data-route="orders"] tr[data-lane="batch"] td:nth-child(11)')?.textContent ?? ''), undefined, { timeout: 10_000 }),
    ]);
    assert.equal(await page.locator('section[data-route="orders"] thead th').nth(10).textContent(), 'upstream p99 ms');
    await page.waitForFunction((n: number) => Number(document.body.getAttribute('data-samples')) > n, 5, { timeout: 10_000 });
    mkdirSync(join(SCREENSHOT, '..'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.deepEqual(pageErrors, []);
  } finally {
    await page.close();
    await s.close();
  }
});

test('a websocket route shows its open WebSockets of maxOpen; a route without websocket: shows none', async () => {
  const httpServer = createServer((_req, res) => res.end('plain'));
  const wss = new WebSocketServer({ server: httpServer });
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const wsUp = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
  const s = await startSluice(`
log: { level: error }
routes:
  - name: chat
    match: { pathPrefix: /ws }
    upstream: ${wsUp}
    websocket: { maxOpen: 50 }
  - name: orders
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
  const page = await browser.newPage();
  const client = new WebSocket(`${s.url.replace(/^http/, 'ws')}/ws`);
  try {
    await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
    await page.goto(`${s.adminUrl}/?every=100`);
    const chat = page.locator('section[data-route="chat"] [data-field="websockets"]');
    await chat.waitFor({ timeout: 10_000 });
    await page.waitForFunction(() => document.querySelector('section[data-route="chat"] [data-field="websockets"]')?.textContent === '1 / 50', undefined, { timeout: 10_000 });
    assert.equal(await page.locator('section[data-route="orders"] [data-field="websockets"]').isVisible(), false);
  } finally {
    client.terminate();
    await page.close();
    await s.close();
    for (const c of wss.clients) c.terminate();
    wss.close();
    httpServer.close();
  }
});

test('the header shows the listener: http + HTTP/2 and its HTTP/2 client connections', async () => {
  const s = await startSluice(`
listen: { host: 127.0.0.1, port: 0, http2: true }
log: { level: error }
routes:
  - name: orders
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
  const page = await browser.newPage();
  const session = http2.connect(s.url);
  try {
    await new Promise((resolve, reject) => session.once('connect', resolve).once('error', reject));
    await page.goto(`${s.adminUrl}/?every=100`);
    await page.waitForFunction(() => /^http \+ HTTP\/2 · h2 connections 1, rapid-reset closes 0$/.test(document.getElementById('listener')?.textContent ?? ''), undefined, { timeout: 10_000 });
  } finally {
    session.destroy();
    await page.close();
    await s.close();
  }
});

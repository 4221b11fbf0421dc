/**
 * workers: 2 through the real CLI (build/src/cli.js as its own process, its
 * workers forked by node:cluster) in front of an upstream in this process
 * that counts how many requests it holds at once. Each request goes on a
 * new connection, so the primary's round robin spreads them over both
 * workers. The tests share one Sluice and run in order: split, metrics,
 * a worker killed, reload, drain.
 */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { request } from 'undici';
import type { AdminState } from '../src/observability/state.js';
import { startCli, type Cli } from './helpers/cli.js';
import { eventually, send, writePolicy, type Answer } from './helpers/sluice.js';

/** Counts concurrent requests; /hold waits while the gate is shut, anything else answers at once. */
async function countingUpstream() {
  let current = 0;
  let max = 0;
  let open = true;
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    req.resume();
    current++;
    max = Math.max(max, current);
    res.on('close', () => current--);
    if (req.url?.startsWith('/hold') && !open) held.push(res);
    else res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    current: () => current,
    max: () => max,
    /** Holds /hold requests from now on; forgets the old maximum. */
    shut() {
      open = false;
      max = current;
    },
    /** Answers what it holds and everything after. */
    open() {
      open = true;
      for (const res of held.splice(0)) res.end('ok');
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function policy(upstream: string, limit: number): string {
  return `workers: 2
shutdown: { readinessGraceMs: 300, drainTimeoutMs: 5000 }
log: { level: info }
routes:
  - name: r
    match: { pathPrefix: / }
    upstream: ${upstream}
    limit: { algorithm: fixed, initial: ${limit} }
`;
}

describe('workers: 2', () => {
  let up: Awaited<ReturnType<typeof countingUpstream>>;
  let file: string;
  let sluice: Cli;

  const state = async (): Promise<AdminState> => (await (await request(`${sluice.admin}/admin/state`)).body.json()) as AdminState;
  const metrics = async (): Promise<string> => (await request(`${sluice.admin}/metrics`)).body.text();
  const series = (text: string, name: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(name));
    assert.ok(line !== undefined, `${name} is exported`);
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  const perWorker = (s: AdminState, f: (r: AdminState['routes'][number]) => number) => (s.workers ?? []).map((w) => f(w.routes[0]!));
  /** `n` held requests, each on its own connection; resolves with their answers (or errors) once all end. */
  const holdMany = (n: number): Promise<(Answer | Error)[]> =>
    Promise.all(Array.from({ length: n }, (_, i) => send(`${sluice.proxy}/hold/${i}`).catch((err: Error) => err)));
  const waitState = (what: string, ok: (s: AdminState) => boolean) =>
    eventually(async () => ok(await state()), what, 15_000);
  /** 12 held requests: 3 at the upstream (an admitted request reaches it a moment later), 9 queued over both workers. */
  const waitFull = () =>
    eventually(async () => {
      const s = await state();
      return s.routes[0]!.inflight === 3 && s.routes[0]!.queued === 9 && up.current() === 3;
    }, 'the upstream holding 3 and 9 queued', 15_000);

  before(async () => {
    up = await countingUpstream();
    file = writePolicy(policy(up.url, 3));
    sluice = await startCli(file);
  });

  // A test that fails while requests are held must not leave them held for the next one.
  afterEach(() => up.open());

  after(async () => {
    up.open();
    if (sluice.child.exitCode === null) sluice.child.kill('SIGKILL');
    await up.close();
  });

  it('splits a fixed limit of 3 as 2 + 1: the upstream never holds more than 3 while both workers queue', async () => {
    const s0 = await state();
    assert.deepEqual(perWorker(s0, (r) => r.limit), [2, 1]);
    assert.equal(s0.routes[0]!.limit, 3);
    up.shut();
    const answers = holdMany(12);
    await waitFull();
    const s = await state();
    assert.deepEqual(perWorker(s, (r) => r.inflight), [2, 1]);
    assert.ok(perWorker(s, (r) => r.queued).every((q) => q > 0), 'both workers queue');
    up.open();
    const done = await answers;
    assert.deepEqual(done.map((a) => (a instanceof Error ? a.message : a.status)), new Array(12).fill(200));
    assert.equal(up.max(), 3);
  });

  it('/metrics sums every worker once: one series each, admitted = the answers, the limit = the configured one', async () => {
    const text = await metrics();
    const samples = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    const names = samples.map((l) => l.slice(0, l.lastIndexOf(' ')));
    assert.deepEqual(names.filter((n, i) => names.indexOf(n) !== i), [], 'no series twice');
    assert.equal(series(text, 'sluice_requests_total{route="r",lane="interactive",outcome="admitted"}'), 12);
    assert.equal(series(text, 'sluice_concurrency_limit{route="r"}'), 3);
    assert.equal(series(text, 'sluice_inflight{route="r",lane="interactive"}'), 0);
    assert.equal(series(text, 'sluice_info{'), 1);
    assert.equal(series(text, 'sluice_workers{state="ready"}'), 2);
    assert.equal(series(text, 'sluice_worker_deaths_total'), 0);
    // Both workers served: the sum is of two non-zero parts.
    const admitted = perWorker(await state(), (r) => r.lanes[0]!.admitted);
    assert.equal(admitted.length, 2);
    assert.ok(admitted.every((n) => n > 0), `admitted per worker: ${admitted.join(', ')}`);
  });

  it('a worker killed with SIGKILL is replaced; its permits die with it and both workers serve their full share again', async () => {
    up.shut();
    const answers = holdMany(6);
    await waitState('3 in flight', (s) => s.routes[0]!.inflight === 3);
    const victim = (await state()).workers![0]!;
    process.kill(victim.pid!, 'SIGKILL');
    await waitState('worker 0 replaced', (s) => {
      const w = s.workers![0]!;
      return w.status === 'ready' && w.pid !== victim.pid && w.restarts === 1;
    });
    up.open();
    const done = await answers;
    // The survivor's requests finish; the victim's connections died with it.
    assert.ok(done.some((a) => !(a instanceof Error) && a.status === 200));
    await waitState('nothing held anywhere', (s) => s.routes[0]!.inflight === 0 && s.routes[0]!.queued === 0);
    const s = await state();
    assert.deepEqual(perWorker(s, (r) => r.inflight), [0, 0]);
    assert.deepEqual(perWorker(s, (r) => r.limit), [2, 1]);
    const text = await metrics();
    assert.equal(series(text, 'sluice_worker_deaths_total'), 1);
    // The dead worker's counts stay in the sum (12 before, plus what the survivor answered since).
    assert.ok(series(text, 'sluice_requests_total{route="r",lane="interactive",outcome="admitted"}') >= 12);
    const death = sluice.logs.find((l) => l.msg === 'worker died; its in-flight requests and queue are gone; replacing it');
    assert.ok(death !== undefined);
    assert.equal(death.signal, 'SIGKILL');

    // No permit leaked: the full limit is in use again, never more.
    up.shut();
    const again = holdMany(12);
    await waitFull();
    up.open();
    const after = await again;
    assert.deepEqual(after.map((a) => (a instanceof Error ? a.message : a.status)), new Array(12).fill(200));
    assert.equal(up.max(), 3);
  });

  it('reload is validated once and applied to every worker, or to none', async () => {
    const reload = async () => {
      const r = await request(`${sluice.admin}/admin/reload`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      return { status: r.statusCode, body: (await r.body.json()) as { result: string; reason?: string; message?: string } };
    };
    writePolicy(policy(up.url, 5), file);
    assert.equal((await reload()).status, 200);
    assert.deepEqual(perWorker(await state(), (r) => r.limit), [3, 2]);

    // Invalid for two workers: refused by the primary, nothing changes anywhere.
    writePolicy(policy(up.url, 1), file);
    const bad = await reload();
    assert.equal(bad.status, 422);
    assert.match(bad.body.message ?? '', /routes\.0\.limit\.initial: a fixed limit of 1 is less than workers \(2\)/);
    assert.deepEqual(perWorker(await state(), (r) => r.limit), [3, 2]);

    // A worker that cannot answer (stopped): the others do not switch either.
    writePolicy(policy(up.url, 7), file);
    const frozen = (await state()).workers![1]!.pid!;
    process.kill(frozen, 'SIGSTOP');
    let stuck: Awaited<ReturnType<typeof reload>>;
    try {
      stuck = await reload();
    } finally {
      process.kill(frozen, 'SIGCONT');
    }
    assert.equal(stuck.status, 503);
    assert.equal(stuck.body.reason, 'workers');
    assert.match(stuck.body.message ?? '', /worker 1: timeout/);
    await waitState('both workers answer, on the old config', (s) => s.workers!.every((w) => w.status === 'ready') && perWorker(s, (r) => r.limit).join() === '3,2');
    const text = await metrics();
    assert.equal(series(text, 'sluice_config_reloads_total{result="success"}'), 1);
    assert.equal(series(text, 'sluice_config_reloads_total{result="error"}'), 2);
  });

  it('SIGTERM to the primary drains every worker: readiness fails first, admitted requests finish, the admin listener goes last', async () => {
    up.shut();
    const answers = holdMany(2);
    await waitState('one held on each worker', (s) => perWorker(s, (r) => r.inflight).join() === '1,1');
    sluice.child.kill('SIGTERM');
    await eventually(async () => (await request(`${sluice.admin}/readyz`)).statusCode === 503, 'readyz fails', 5000);
    assert.equal((await state()).draining, true);
    up.open();
    const done = await answers;
    assert.deepEqual(done.map((a) => (a instanceof Error ? a.message : a.status)), [200, 200]);
    assert.equal(await sluice.exited, 0);
    const drained = sluice.logs.filter((l) => l.msg === 'drained');
    assert.equal(drained.length, 3);
    // The primary's line (no `worker`) comes after both workers'.
    assert.equal(drained[2]!.worker, undefined);
    assert.equal(drained[2]!.workers, 2);
  });
});

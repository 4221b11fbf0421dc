/**
 * Hysteresis layer 2: the route's shed state, alone (manual clock) and in
 * the limiter (shed_batch at the door, adaptive LIFO for the first lane).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { LaneConfig } from '../src/config/types.js';
import { ManualClock, seededRandom } from '../src/core/clock.js';
import { FixedLimit } from '../src/core/limit/limit.js';
import { Limiter, type Permit } from '../src/core/limiter/limiter.js';
import type { Refusal } from '../src/core/limiter/refusal.js';
import { nextShedState, ShedControl, type ShedConfig } from '../src/core/limiter/shed-state.js';

const CFG: ShedConfig = { enterMs: 100, exitMs: 20, cooldownMs: 1000, windowMs: 100 };

/** A ShedControl on a manual clock; `window(ms)` makes one window whose only wait is `ms`. */
function control(cfg: ShedConfig = CFG) {
  const clock = new ManualClock(0);
  const shed = new ShedControl(cfg, clock.now());
  const window = (waitMs: number) => {
    shed.record(waitMs, clock.now());
    clock.advance(cfg.windowMs);
    return shed.state(clock.now()).kind;
  };
  return { clock, shed, window };
}

test('shed state: a window whose p90 queue wait exceeds enterMs makes the route overloaded', () => {
  assert.equal(nextShedState({ kind: 'normal' }, 100, 0, 100, CFG).kind, 'normal');
  assert.deepEqual(nextShedState({ kind: 'normal' }, 101, 0, 100, CFG), { kind: 'overloaded', since: 100, calmSince: null });
  const { window } = control();
  assert.equal(window(50), 'normal');
  assert.equal(window(150), 'overloaded');
});

test('shed state: the signal is the p90, so a few slow waits among many quick ones do not count', () => {
  const { clock, shed } = control();
  for (let i = 0; i < 95; i++) shed.record(0, clock.now());
  for (let i = 0; i < 5; i++) shed.record(500, clock.now());
  clock.advance(100);
  assert.equal(shed.state(clock.now()).kind, 'normal');
  assert.equal(shed.signalMs(clock.now()), 0);
});

test('shed state: a signal hovering between exitMs and enterMs does not flap, in either state', () => {
  const { window } = control();
  const hovering = [30, 90, 60, 99, 21, 75, 40, 95, 50, 80];
  for (const ms of hovering) assert.equal(window(ms), 'normal');
  assert.equal(window(200), 'overloaded');
  for (let i = 0; i < 30; i++) assert.equal(window(hovering[i % hovering.length]!), 'overloaded');
});

test('shed state: leaves only after the signal stayed below exitMs for the whole cooldown', () => {
  const { window } = control();
  window(300);
  // 900 ms of calm, then one window above exitMs: the calm stretch starts over.
  for (let i = 0; i < 9; i++) assert.equal(window(5), 'overloaded');
  assert.equal(window(25), 'overloaded');
  for (let i = 0; i < 9; i++) assert.equal(window(5), 'overloaded');
  assert.equal(window(5), 'normal');
});

test('shed state: an idle route (no requests at all) counts as calm and becomes normal after the cooldown', () => {
  const { clock, shed, window } = control();
  window(300);
  clock.advance(899);
  assert.equal(shed.state(clock.now()).kind, 'overloaded');
  assert.ok(shed.cooldownLeftMs(clock.now()) > 0);
  clock.advance(101);
  assert.equal(shed.state(clock.now()).kind, 'normal');
  assert.equal(shed.cooldownLeftMs(clock.now()), 0);
});

test('shed state: cooldown left counts down through the calm stretch', () => {
  const { clock, shed, window } = control();
  window(300);
  // No calm window yet: a whole cooldown after the current window.
  assert.equal(shed.cooldownLeftMs(clock.now()), 1100);
  window(0);
  window(0);
  assert.equal(shed.cooldownLeftMs(clock.now()), 800);
});

// ---------------------------------------------------------------- in the limiter

function lane(name: string, maxWaitMs = 5000): LaneConfig {
  return { name, maxShare: 1, minShare: 0, queue: { maxLength: 10, maxWaitMs, fair: true } };
}

function setup(overload: ShedConfig = CFG) {
  const clock = new ManualClock(0);
  const limiter = new Limiter({
    lanes: [lane('interactive'), lane('batch')],
    limit: new FixedLimit(1),
    clientMaxShare: 1,
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0.2 },
    clock,
    random: seededRandom(3),
    overload,
  });
  const started: string[] = [];
  const permits = new Map<string, Permit>();
  const ask = (name: string, laneIndex = 0, deadline?: number) => {
    const r = limiter.acquire(
      laneIndex,
      'c',
      (later) => {
        if (later.kind === 'permit') {
          started.push(name);
          permits.set(name, later);
        }
      },
      deadline,
    );
    if (r.kind === 'permit') permits.set(name, r);
    return r;
  };
  const hold = (name: string, laneIndex = 0) => assert.equal(ask(name, laneIndex).kind, 'permit', `${name} starts at once`);
  const finish = (name: string) => permits.get(name)!.settle('success', 1);
  /** One interactive request waits 150 ms in a window, then the window closes: overloaded. */
  const overload_ = () => {
    hold('slow-1');
    ask('slow-2');
    clock.advance(150);
    finish('slow-1');
    finish('slow-2');
    clock.advance(100);
    assert.equal(limiter.snapshot().state, 'overloaded');
    started.length = 0;
  };
  return { clock, limiter, ask, hold, finish, started, overload: overload_ };
}

test('limiter: the route is normal at first, and the snapshot reports the state and the signal', () => {
  const { limiter, overload } = setup();
  assert.equal(limiter.snapshot().state, 'normal');
  assert.equal(limiter.snapshot().queueWaitP90Ms, 0);
  overload();
  assert.ok(Math.abs(limiter.snapshot().queueWaitP90Ms - 150) < 2);
});

test('limiter: shed_batch appears only while overloaded; the first lane is still queued', () => {
  const { clock, limiter, ask, hold, finish, overload } = setup();
  hold('b0', 1);
  finish('b0');
  overload();
  hold('i1');
  const r = ask('b1', 1) as Refusal;
  assert.equal(r.kind, 'refused');
  assert.equal(r.status, 503);
  assert.equal(r.reason, 'shed_batch');
  // Refused at the door instead of queued: nothing was counted.
  assert.equal(limiter.snapshot().inflight, 1);
  assert.equal(limiter.snapshot().queued, 0);
  // The first lane still queues.
  assert.equal(ask('i2', 0).kind, 'queued');
  finish('i1');
  finish('i2');
  // Calm for the cooldown: normal again, batch is admitted.
  clock.advance(1000);
  assert.equal(limiter.snapshot().state, 'normal');
  assert.equal(ask('b2', 1).kind, 'permit');
});

test('limiter: while overloaded, batch that finds a free slot still starts (the upstream is not left idle)', () => {
  const { limiter, ask, finish, overload } = setup();
  overload();
  assert.equal(limiter.snapshot().state, 'overloaded');
  assert.equal(ask('b1', 1).kind, 'permit');
  finish('b1');
});

test('limiter: shed_batch Retry-After is never below the cooldown still to run', () => {
  const { clock, ask, hold, overload } = setup({ ...CFG, cooldownMs: 5000 });
  overload();
  hold('i-full');
  const first = ask('b1', 1) as Refusal;
  assert.equal(first.reason, 'shed_batch');
  assert.ok(first.retryAfterSeconds >= 5 && first.retryAfterSeconds <= 7, `Retry-After ${first.retryAfterSeconds}`);
  clock.advance(3000);
  const later = ask('b2', 1) as Refusal;
  assert.equal(later.reason, 'shed_batch');
  assert.ok(later.retryAfterSeconds >= 2 && later.retryAfterSeconds <= 3, `Retry-After ${later.retryAfterSeconds}`);
});

test('limiter: batch requests queued before the route became overloaded keep their place', () => {
  const { clock, limiter, ask, hold, finish, started } = setup();
  hold('i0');
  assert.equal(ask('b-queued', 1).kind, 'queued');
  ask('i-queued');
  clock.advance(150);
  finish('i0'); // i-queued starts after 150 ms
  clock.advance(100);
  assert.equal(limiter.snapshot().state, 'overloaded');
  finish('i-queued');
  assert.deepEqual(started, ['i-queued', 'b-queued']);
});

test('limiter: while overloaded with a standing queue, the first lane serves newest first', () => {
  const { clock, ask, hold, finish, started, overload } = setup();
  overload();
  hold('h');
  for (const name of ['i1', 'i2', 'i3']) {
    ask(name);
    clock.advance(40);
  }
  // The oldest has waited 120 ms (> 5 ms target for > 100 ms interval): newest first.
  finish('h');
  finish('i3');
  assert.deepEqual(started, ['i3', 'i2']);
});

test('limiter: a deadline estimate counts no queue ahead while the first lane runs newest first', () => {
  // The same queue and completion rate (2 completions in the first ~0.37 s): FIFO puts a newcomer
  // behind three (~0.74 s), LIFO at the front (~0.19 s). A 400 ms budget fits only the latter.
  const tight = (cfg: ShedConfig) => {
    const { clock, limiter, ask, hold, finish } = setup(cfg);
    hold('s1');
    ask('s2');
    clock.advance(150);
    finish('s1');
    finish('s2');
    clock.advance(100);
    const overloaded = limiter.snapshot().state === 'overloaded';
    hold('h');
    for (const name of ['i1', 'i2', 'i3']) {
      ask(name);
      clock.advance(40);
    }
    return { overloaded, kind: ask('tight', 0, clock.now() + 400).kind };
  };
  assert.deepEqual(tight(CFG), { overloaded: true, kind: 'queued' });
  assert.deepEqual(tight({ ...CFG, enterMs: 10_000 }), { overloaded: false, kind: 'refused' });
});

test('limiter: the first lane stays FIFO while normal, even with a standing queue', () => {
  const { clock, ask, hold, finish, started } = setup({ ...CFG, enterMs: 10_000, exitMs: 20 });
  hold('h');
  for (const name of ['i1', 'i2', 'i3']) {
    ask(name);
    clock.advance(40);
  }
  finish('h');
  finish('i1');
  assert.deepEqual(started, ['i1', 'i2']);
});

test('limiter: a queue that drains quickly is no standing queue: FIFO even while overloaded', () => {
  const { clock, ask, hold, finish, started, overload } = setup();
  overload();
  hold('h');
  ask('i1');
  ask('i2');
  clock.advance(2);
  finish('h');
  assert.deepEqual(started, ['i1']);
});

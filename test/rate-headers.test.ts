/** The IETF RateLimit-Policy / RateLimit field values built from clients.rate and a rate verdict. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClientRate } from '../src/core/rate/client-rate.js';
import { appendListField, rateLimitField, rateLimitPolicy } from '../src/core/rate/headers.js';

// One sf-list item: an sf-string and Integer parameters (RFC 9651 §3.1, §3.3.1, §3.3.3).
const ITEM = /^"[a-z]+"(;[a-z]+=\d{1,15})+$/;

test('RateLimit-Policy: the quota a bucket lets through in the time it takes to refill, in whole seconds', () => {
  assert.equal(rateLimitPolicy(100, 200), '"client";q=200;w=2');
  assert.equal(rateLimitPolicy(10, 50), '"client";q=50;w=5');
  // A bucket of 1 at 100/s: 100 requests in a second, spaced out.
  assert.equal(rateLimitPolicy(100, 1), '"client";q=100;w=1');
  assert.equal(rateLimitPolicy(0.5, 1), '"client";q=1;w=2');
  assert.equal(rateLimitPolicy(3, 1.5), '"client";q=3;w=1');
  for (const [p, b] of [[100, 200], [0.1, 10], [7, 3]] as const) assert.match(rateLimitPolicy(p, b), ITEM);
});

test('RateLimit: what is left now and the seconds until one more request, rounded up', () => {
  assert.equal(rateLimitField(5, 0.01), '"client";r=5;t=1');
  assert.equal(rateLimitField(0, 2), '"client";r=0;t=2');
  assert.equal(rateLimitField(3.7, 1.2), '"client";r=3;t=2');
  assert.match(rateLimitField(199, 0.01), ITEM);
});

test('RateLimit follows the bucket: a burst counts r down to 0, and t is never past when the next request is allowed', () => {
  const bucket = new ClientRate(2, 3);
  const fields = [0, 1, 2].map(() => {
    const v = bucket.check('k', 0);
    return rateLimitField(v.remaining, v.waitSeconds);
  });
  assert.deepEqual(fields, ['"client";r=2;t=1', '"client";r=1;t=1', '"client";r=0;t=1']);
  const refused = bucket.check('k', 0);
  assert.equal(refused.kind, 'limited');
  assert.ok(refused.waitSeconds <= 1);
});

test('an upstream\'s own rate-limit field is kept and ours is added to the list', () => {
  assert.equal(appendListField(undefined, '"client";r=1;t=1'), '"client";r=1;t=1');
  assert.equal(appendListField('"api";r=99;t=60', '"client";r=1;t=1'), '"api";r=99;t=60, "client";r=1;t=1');
  assert.equal(appendListField(['"a";r=1', '"b";r=2'], '"client";r=0;t=3'), '"a";r=1, "b";r=2, "client";r=0;t=3');
  assert.equal(appendListField('', '"client";r=0;t=3'), '"client";r=0;t=3');
});

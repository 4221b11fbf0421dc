/**
 * clients.rateLimitHeaders through the real proxy: IETF RateLimit-Policy and
 * RateLimit on admitted responses of a rate-limited client and on its 429s
 * (t equal to Retry-After); none when the option is off.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { send, startSluice } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up.close();
});

const policy = (headers: boolean) => `
log: { level: warn }
clients:
  key: { header: x-api-key }
  rate: { perSecond: 0.5, burst: 3 }
  rateLimitHeaders: ${headers}
routes:
  - name: api
    match: { pathPrefix: / }
    upstream: ${up.url}
`;

test('rateLimitHeaders: admitted responses count the quota down; the 429 says none is left until Retry-After', async () => {
  const s = await startSluice(policy(true));
  try {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await send(`${s.url}/items`, { headers: { 'x-api-key': 'tenant' } }));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 429]);
    // 0.5/s with a bucket of 3: 3 requests in a 6 s window.
    for (const a of answers) assert.equal(a.headers['ratelimit-policy'], '"client";q=3;w=6');
    assert.deepEqual(answers.slice(0, 3).map((a) => a.headers['ratelimit']), ['"client";r=2;t=2', '"client";r=1;t=2', '"client";r=0;t=2']);
    const refused = answers[3]!;
    assert.equal(refused.json<{ reason: string }>().reason, 'client_rate');
    assert.equal(refused.headers['ratelimit'], `"client";r=0;t=${refused.headers['retry-after']}`);
    // Another client has a quota of its own.
    const other = await send(`${s.url}/items`, { headers: { 'x-api-key': 'other' } });
    assert.equal(other.headers['ratelimit'], '"client";r=2;t=2');
  } finally {
    await s.close();
  }
});

test('rateLimitHeaders off (the default): no RateLimit fields, on 200s or 429s', async () => {
  const s = await startSluice(policy(false));
  try {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await send(`${s.url}/items`, { headers: { 'x-api-key': 'tenant' } }));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 429]);
    for (const a of answers) {
      assert.equal(a.headers['ratelimit'], undefined);
      assert.equal(a.headers['ratelimit-policy'], undefined);
    }
  } finally {
    await s.close();
  }
});

/**
 * The admin listener's guard (observability/admin-guard.ts), with real
 * requests to a running Sluice: POST takes JSON only (a cross-site form is
 * 415), the browser-facing endpoints answer only their own Host (DNS
 * rebinding is 421) and Origin (403), admin.token is a bearer token (401),
 * and what /admin/state says about the instance (version, uptime, last reload).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { check, isOwnHost, type AdminAccess } from '../src/observability/admin-guard.js';
import { ConfigError, parseConfig } from '../src/config/load.js';
import type { AdminState } from '../src/observability/state.js';
import { JSON_POST, send, startSluiceFile, type Answer, type Running } from './helpers/sluice.js';

const TOKEN = '0123456789abcdef0123456789abcdef';

function policy(admin = ''): string {
  return `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0${admin} }\nroutes:\n  - name: api\n    match: { pathPrefix: / }\n    upstream: http://127.0.0.1:9\n`;
}

function policyFile(text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'sluice-admin-')), 'sluice.yaml');
  writeFileSync(file, text);
  return file;
}

async function withSluice(admin: string, fn: (s: Running, file: string) => Promise<void>): Promise<void> {
  const file = policyFile(policy(admin));
  const s = await startSluiceFile(file);
  try {
    await fn(s, file);
  } finally {
    await s.close();
  }
}

function reload(s: Running, headers: Record<string, string>, body?: string): Promise<Answer> {
  return send(`${s.adminUrl}/admin/reload`, { method: 'POST', headers, body });
}

/** The JSON contract of a refusal: status, error, reason, a message, no-store. */
function refused(a: Answer): { status: number; error: string; reason: string } {
  assert.equal(a.headers['cache-control'], 'no-store');
  const body = a.json<{ error: string; reason: string; message: string }>();
  assert.equal(typeof body.message, 'string');
  return { status: a.status, error: body.error, reason: body.reason };
}

async function lastReload(s: Running): Promise<AdminState['lastReload']> {
  return (await s.state()).lastReload;
}

test('a cross-site form cannot reload: text/plain, urlencoded, multipart and no content-type are 415, nothing reloads', async () => {
  await withSluice('', async (s) => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      assert.deepEqual(refused(await reload(s, { 'content-type': type }, '{}')), { status: 415, error: 'unsupported_media_type', reason: 'not_json' }, type);
    }
    assert.deepEqual(refused(await reload(s, {})), { status: 415, error: 'unsupported_media_type', reason: 'not_json' });
    // What a browser sends for <form enctype="text/plain"> from another site: its Origin is refused first.
    const form = await reload(s, { 'content-type': 'text/plain', origin: 'http://evil.example' }, '{"a":"=b"}');
    assert.deepEqual(refused(form), { status: 403, error: 'forbidden', reason: 'origin_not_allowed' });
    assert.equal(await lastReload(s), null);
    assert.equal(s.logs.some((l) => l.msg === 'config reloaded'), false);
  });
});

test('a JSON POST reloads: empty body, {} and a charset parameter; a malformed JSON body is 400 in the JSON contract', async () => {
  await withSluice('', async (s) => {
    assert.equal((await reload(s, JSON_POST)).status, 200);
    assert.equal((await reload(s, JSON_POST, '{}')).status, 200);
    assert.equal((await reload(s, { 'content-type': 'Application/JSON; charset=utf-8' }, '{}')).status, 200);
    assert.deepEqual(refused(await reload(s, JSON_POST, '{"no')), { status: 400, error: 'bad_request', reason: 'invalid_json' });
    assert.deepEqual(refused(await reload(s, JSON_POST, `{"x":"${'a'.repeat(70_000)}"}`)), { status: 413, error: 'content_too_large', reason: 'body_too_large' });
    assert.deepEqual(refused(await send(`${s.adminUrl}/admin/nope`)), { status: 404, error: 'not_found', reason: 'no_such_endpoint' });
  });
});

test('DNS rebinding: a Host that is not the listener is 421 on the page, /admin/* and POST; probes and scrapes answer any Host', async () => {
  await withSluice('', async (s) => {
    const port = new URL(s.adminUrl).port;
    for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1.nip.io:${port}`, `localhost.evil.example:${port}`]) {
      for (const [method, path] of [['GET', '/'], ['GET', '/admin/state'], ['GET', '/admin/history'], ['POST', '/admin/reload']] as const) {
        const a = await send(`${s.adminUrl}${path}`, { method, headers: { ...JSON_POST, host } });
        assert.deepEqual(refused(a), { status: 421, error: 'misdirected_request', reason: 'host_not_allowed' }, `${method} ${path} Host ${host}`);
      }
      for (const path of ['/metrics', '/healthz', '/readyz']) {
        assert.equal((await send(`${s.adminUrl}${path}`, { headers: { host } })).status, 200, `${path} Host ${host}`);
      }
    }
    assert.equal(await lastReload(s), null);
    // The listener's own address (any port: tunnels and port-forwards change it), and localhost.
    for (const host of [`127.0.0.1:${port}`, '127.0.0.1:19901', `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`]) {
      assert.equal((await send(`${s.adminUrl}/admin/state`, { headers: { host } })).status, 200, host);
    }
    assert.equal((await reload(s, { ...JSON_POST, host: `localhost:${port}` })).status, 200);
  });
});

test('admin.allowedHosts admits a name, and a reload that adds one applies at once', async () => {
  await withSluice('', async (s, file) => {
    const host = `sluice-admin.internal:${new URL(s.adminUrl).port}`;
    assert.equal((await send(`${s.adminUrl}/admin/state`, { headers: { host } })).status, 421);
    writeFileSync(file, policy(', allowedHosts: [Sluice-Admin.internal]'));
    assert.equal((await reload(s, JSON_POST)).status, 200);
    assert.equal((await send(`${s.adminUrl}/admin/state`, { headers: { host } })).status, 200);
    assert.equal((await reload(s, { ...JSON_POST, host })).status, 200);
    assert.equal((await send(`${s.adminUrl}/admin/state`, { headers: { host: 'other.internal' } })).status, 421);
  });
});

test('an Origin header must name an allowed host: another site or null is 403, the listener itself passes', async () => {
  await withSluice('', async (s) => {
    for (const origin of ['http://evil.example', 'https://evil.example:9901', 'null']) {
      assert.deepEqual(refused(await send(`${s.adminUrl}/admin/state`, { headers: { origin } })), { status: 403, error: 'forbidden', reason: 'origin_not_allowed' }, origin);
      assert.equal((await reload(s, { ...JSON_POST, origin })).status, 403, origin);
    }
    assert.equal((await send(`${s.adminUrl}/admin/state`, { headers: { origin: s.adminUrl } })).status, 200);
    assert.equal((await reload(s, { ...JSON_POST, origin: s.adminUrl })).status, 200);
  });
});

test('admin.token: POST needs Authorization: Bearer <token> (401 with WWW-Authenticate otherwise); reading needs none', async () => {
  await withSluice(`, token: "${TOKEN}"`, async (s) => {
    for (const authorization of [undefined, 'Bearer wrong', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`]) {
      const a = await reload(s, { ...JSON_POST, ...(authorization && { authorization }) });
      assert.deepEqual(refused(a), { status: 401, error: 'unauthorized', reason: 'bad_token' }, String(authorization));
      assert.equal(a.headers['www-authenticate'], 'Bearer realm="sluice-admin"');
    }
    assert.equal(await lastReload(s), null);
    assert.equal((await reload(s, { ...JSON_POST, authorization: `Bearer ${TOKEN}` })).status, 200);
    assert.equal((await reload(s, { ...JSON_POST, authorization: `bearer ${TOKEN}` })).status, 200);
    assert.equal((await send(`${s.adminUrl}/admin/state`)).status, 200);
    assert.equal((await send(`${s.adminUrl}/metrics`)).status, 200);
  });
});

const ACCESS: AdminAccess = { host: '0.0.0.0', allowedHosts: [] };
const postFrom = (localAddress: string, headers: Record<string, string> = {}) => ({
  method: 'POST',
  url: '/admin/reload',
  headers: { host: `${localAddress.includes(':') ? `[${localAddress}]` : localAddress}:9901`, 'content-type': 'application/json', ...headers },
  localAddress,
});

// A connection on a non-loopback address cannot be made in a test (loopback only), so this part is the pure check.
test('off loopback, POST needs admin.token: without one it is refused (token_required), with one the token decides', () => {
  assert.equal(check(postFrom('10.1.2.3'), ACCESS), 'token_required');
  assert.equal(check(postFrom('::ffff:10.1.2.3'), ACCESS), 'token_required');
  assert.equal(check(postFrom('127.0.0.1'), ACCESS), null);
  assert.equal(check(postFrom('::ffff:127.0.0.1'), ACCESS), null);
  assert.equal(check(postFrom('::1'), ACCESS), null);
  const withToken = { ...ACCESS, token: TOKEN };
  assert.equal(check(postFrom('10.1.2.3'), withToken), 'bad_token');
  assert.equal(check(postFrom('10.1.2.3', { authorization: `Bearer ${TOKEN}` }), withToken), null);
  // A wildcard listener answers for the address the connection arrived on, not for any address.
  assert.equal(isOwnHost('10.1.2.3', ACCESS, '::ffff:10.1.2.3'), true);
  assert.equal(isOwnHost('10.9.9.9', ACCESS, '10.1.2.3'), false);
  assert.equal(check({ ...postFrom('10.1.2.3', { authorization: `Bearer ${TOKEN}` }), headers: { host: '10.9.9.9', authorization: `Bearer ${TOKEN}` } }, withToken), 'host_not_allowed');
});

test('config: admin.token shorter than 16 characters and an allowedHosts entry with a port are errors at their line', () => {
  const text = (admin: string) => `admin:\n  host: 127.0.0.1\n${admin}routes:\n  - name: a\n    match: { pathPrefix: / }\n    upstream: http://127.0.0.1:1\n`;
  const problems = (admin: string) => {
    try {
      parseConfig(text(admin), 'x.yaml');
    } catch (err) {
      if (err instanceof ConfigError) return err.problems.map((p) => `${p.line}:${p.path}`);
      throw err;
    }
    return [];
  };
  assert.deepEqual(problems('  token: short\n'), ['3:admin.token']);
  assert.deepEqual(problems('  token: "has a space in it 0123"\n'), ['3:admin.token']);
  assert.deepEqual(problems('  allowedHosts: [a.example:9901]\n'), ['3:admin.allowedHosts.0']);
  assert.deepEqual(problems(`  token: ${TOKEN}\n  allowedHosts: [a.example, "[::1]"]\n`), []);
  assert.deepEqual(parseConfig(text(''), 'x.yaml').admin, { host: '127.0.0.1', port: 9901, allowedHosts: [] });
});

test('/admin/state carries version, start, uptime and the last reload (time, result; the message for an error)', async () => {
  const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  await withSluice('', async (s, file) => {
    const before = Date.now();
    const first = await s.state();
    assert.equal(first.version, version);
    assert.ok(Number.isInteger(first.uptimeSeconds) && first.uptimeSeconds >= 0);
    assert.ok(Date.parse(first.startedAt) <= before);
    assert.equal(first.lastReload, null);
    assert.equal((await reload(s, JSON_POST)).status, 200);
    const ok = await lastReload(s);
    assert.equal(ok?.result, 'success');
    assert.ok(ok !== null && Date.parse(ok.at) >= before && Date.parse(ok.at) <= Date.now());
    writeFileSync(file, 'routes: []\n');
    assert.equal((await reload(s, JSON_POST)).status, 422);
    const bad = await lastReload(s);
    assert.ok(bad !== null && bad.result === 'error');
    assert.equal(bad.reason, 'invalid_config');
    assert.match(bad.message, /sluice\.yaml:1:9: routes: /);
    // The route fields are still there: the new fields are additive.
    assert.equal((await s.state()).routes[0]?.name, 'api');
  });
});

/**
 * Strict and complete HTTP/1.1 (HTTP-edge defects 5, 8, 9): no request is
 * forwarded with header fields dropped; duplicate Host is refused;
 * absolute-form targets are routed by their path; every method Node's
 * parser knows is proxied except TRACE and CONNECT (405 with Allow); any
 * Content-Type passes, body untouched; every answer Sluice writes itself is
 * in the JSON contract with x-request-id.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { scrape } from './helpers/prom.js';
import { rawExchange, splitAnswer, startSluice, type RawAnswer, type Running } from './helpers/sluice.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

let up: TestUpstream;
let s: Running;
before(async () => {
  up = await startUpstream();
  s = await startSluice(`
log: { level: error }
server: { maxHeaderBytes: 131072 }
routes:
  - name: api
    match: { pathPrefix: /echo, host: api.example }
    upstream: ${up.url}
  - name: main
    match: { pathPrefix: / }
    upstream: ${up.url}
`);
});
after(async () => {
  await s.close();
  await up.close();
});

interface Answer extends RawAnswer {
  /** The body, a single chunk unwrapped. */
  readonly body: string;
}

async function ask(bytes: string): Promise<Answer> {
  const r = splitAnswer((await rawExchange(s.url, bytes, { timeoutMs: 3000, until: (d) => /\}(\r\n0\r\n\r\n)?$/.test(d) })).data);
  const chunked = r.headers['transfer-encoding'] === 'chunked';
  return { ...r, body: chunked ? r.rest.replace(/^[0-9a-f]+\r\n/, '').replace(/\r\n0\r\n\r\n$/, '') : r.rest };
}

/** Asserts Sluice's own answer: status, reason, JSON, an x-request-id. */
function ownAnswer(a: Answer, status: number, reason: string): void {
  assert.equal(a.status, status, a.body);
  assert.equal(a.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal((JSON.parse(a.body) as { reason: string }).reason, reason);
  assert.match(a.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
}

const fields = (n: number, last = '') => Array.from({ length: n }, (_, i) => `X-Field-${i}: v\r\n`).join('') + last;

test('more header fields than server.maxHeaderCount get 431, never a request with the rest dropped (defect 5)', async () => {
  const before = up.seen.length;
  // 1,000 fields then an Authorization: Node alone would forward the request without it.
  const many = await ask(`GET /echo/many HTTP/1.1\r\nHost: x\r\n${fields(1000, 'Authorization: Bearer secret\r\n')}Connection: close\r\n\r\n`);
  ownAnswer(many, 431, 'headers_too_large');
  assert.equal(many.headers['connection'], 'close');
  const justOver = await ask(`GET /echo/over HTTP/1.1\r\nHost: x\r\n${fields(199)}Connection: close\r\n\r\n`);
  ownAnswer(justOver, 431, 'headers_too_large');
  assert.equal(up.seen.length, before, 'neither was forwarded');
  // At the limit (200 fields with Host and Connection), every one of them arrives.
  const at = await ask(`GET /echo/at HTTP/1.1\r\nHost: x\r\n${fields(197)}Authorization: Bearer secret\r\nConnection: close\r\n\r\n`);
  assert.equal(at.status, 200);
  const seen = (JSON.parse(at.body) as { headers: Record<string, string> }).headers;
  assert.equal(seen['authorization'], 'Bearer secret');
  assert.equal(seen['x-field-196'], 'v');
  assert.equal((await scrape(s.adminUrl)).value('sluice_client_errors_total', { code: 'headers_too_large' }), 2);
});

test('any method Node parses is proxied (PROPFIND with its body, REPORT, PURGE, MKCOL, QUERY...), except TRACE: 405 with Allow (defect 8)', async () => {
  for (const method of ['PROPFIND', 'REPORT', 'PURGE', 'MKCOL', 'LOCK', 'QUERY', 'SEARCH', 'M-SEARCH']) {
    const a = await ask(`${method} /echo/dav HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\nContent-Length: 9\r\nConnection: close\r\n\r\n<a>b</a>\n`);
    assert.equal(a.status, 200, method);
    const echo = JSON.parse(a.body) as { method: string; body: string };
    assert.equal(echo.method, method);
    assert.equal(echo.body, '<a>b</a>\n', `${method} body`);
  }
  const before = up.seen.length;
  const trace = await ask('TRACE /echo/t HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  ownAnswer(trace, 405, 'method_not_allowed');
  const allow = (trace.headers['allow'] ?? '').split(', ');
  for (const m of ['GET', 'POST', 'PROPFIND', 'PURGE']) assert.ok(allow.includes(m), m);
  for (const m of ['TRACE', 'CONNECT']) assert.ok(!allow.includes(m), m);
  assert.equal(up.seen.length, before);
});

test('a method token the parser does not know gets 501 in the JSON contract (defect 8)', async () => {
  const a = await ask('BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n');
  ownAnswer(a, 501, 'method_not_implemented');
  // Garbage is still a plain 400.
  ownAnswer(await ask('\x01\x02 nonsense\r\n\r\n'), 400, 'bad_request');
});

test('absolute-form targets are accepted and routed by their path and authority (RFC 9112 §3.2.2) (defect 8)', async () => {
  const a = await ask('GET http://api.example/echo/abs?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n');
  assert.equal(a.status, 200);
  const echo = JSON.parse(a.body) as { url: string };
  // The api route (host api.example) took it, and the upstream got origin-form.
  assert.equal(echo.url, '/echo/abs?q=1');
  const bare = await ask('GET http://api.example HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n');
  assert.equal(JSON.parse(bare.body).path, '/');
  ownAnswer(await ask('GET http://user:pw@api.example/echo HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n'), 400, 'bad_request');
});

test('two Host fields get 400 and the connection closes (RFC 9112 §3.2) (defect 8)', async () => {
  const before = up.seen.length;
  const r = await rawExchange(s.url, 'GET /echo/h HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\nGET /echo/next HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.equal(r.closedByServer, true);
  assert.match(r.data, /^HTTP\/1\.1 400 /);
  assert.equal(r.data.match(/HTTP\/1\.1 /g)?.length, 1, 'the pipelined request after it is not served');
  assert.match(r.data, /"reason":"bad_request"/);
  assert.equal(up.seen.length, before);
});

test('any Content-Type passes through with its body untouched: empty, unknown, malformed, invalid JSON (defect 9)', async () => {
  for (const ct of ['Content-Type:\r\n', 'Content-Type: foo\r\n', 'Content-Type: ;;;\r\n', 'Content-Type: application/json\r\n', 'Content-Type: multipart/form-data\r\n', '']) {
    const body = '{not json';
    const a = await ask(`POST /echo/ct HTTP/1.1\r\nHost: x\r\n${ct}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    assert.equal(a.status, 200, `${ct}: ${a.body}`);
    assert.equal((JSON.parse(a.body) as { body: string }).body, body, ct);
  }
  // A chunked body too.
  const c = await ask('PUT /echo/chunked HTTP/1.1\r\nHost: x\r\nContent-Type: \r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n');
  assert.equal((JSON.parse(c.body) as { body: string }).body, 'abcde');
});

test('HTTP/1.1 without Host, and transfer codings Sluice cannot decode, get JSON answers with x-request-id (defect 9)', async () => {
  ownAnswer(await ask('GET /echo/x HTTP/1.1\r\nConnection: close\r\n\r\n'), 400, 'bad_request');
  ownAnswer(await ask('POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'), 501, 'transfer_coding_not_implemented');
  ownAnswer(await ask('POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'), 400, 'bad_request');
  // HTTP/1.0 needs no Host.
  assert.equal((await ask('GET /echo/old HTTP/1.0\r\n\r\n')).status, 200);
});

/**
 * gRPC through Sluice with real peers (@grpc/grpc-js client and server, h2c
 * both sides: listen.http2, and the route's `http2: true` to the upstream; and over TLS):
 * unary and streaming calls pass with their trailers; Sluice's own refusals
 * are gRPC answers (trailers-only, grpc-status 14 / 8, grpc-message = the
 * reason, grpc-retry-pushback-ms = Retry-After); what the limit learns from
 * a streaming call (proxy/grpc-sample.ts).
 */
import grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import type { RouteConfig } from '../src/config/types.js';
import type { Limit, Sample } from '../src/core/limit/limit.js';
import { eventually, startSluice, type Running } from './helpers/sluice.js';
import { EchoClient, startEchoServer, unary, type EchoClientType, type EchoServer } from './helpers/grpc.js';
import { makeCerts } from './helpers/tls.js';

/** A limit that records what it learns (the samples), at a fixed value. */
class RecordingLimit implements Limit {
  readonly samples: Sample[] = [];
  constructor(readonly current: number) {}
  onSample(s: Sample): void {
    this.samples.push(s);
  }
}

let upstream: EchoServer;
let s: Running;
let refusing: Running;
let client: EchoClientType;
let refusingClient: (key: string) => EchoClientType;
const limits = new Map<string, RecordingLimit>();

const route = (name: string, extra = '') => `
  - name: ${name}
    match: { pathPrefix: /test.Echo/ }
    upstream: http://127.0.0.1:${upstream.port}
    http2: true
${extra}`;

before(async () => {
  upstream = await startEchoServer();
  s = await startSluice(`
listen: { host: 127.0.0.1, port: 0, http2: true }
log: { level: error }
routes:${route('grpc')}
`, { createLimit: (r: RouteConfig) => limits.set(r.name, new RecordingLimit(100)).get(r.name) as RecordingLimit });
  refusing = await startSluice(`
listen: { host: 127.0.0.1, port: 0, http2: true }
log: { level: error }
lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
clients:
  key: { header: x-api-key }
  rate: { perSecond: 0.01, burst: 1 }
routes:${route('one', '    limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }')}
`);
  client = new EchoClient(new URL(s.url).host, grpc.credentials.createInsecure());
  const clients = new Map<string, EchoClientType>();
  refusingClient = (key) => {
    let c = clients.get(key);
    if (c === undefined) {
      c = new EchoClient(new URL(refusing.url).host, grpc.credentials.createInsecure(), { 'grpc.primary_user_agent': key });
      clients.set(key, c);
    }
    return c;
  };
});
after(async () => {
  upstream.releaseAll();
  client.close();
  await s.close();
  await refusing.close();
  await upstream.close();
});

test('a unary call passes, with the server trailers; the server status and message pass as they are', async () => {
  const ok = await unary(client, 'hello');
  assert.equal(ok.error, null);
  assert.equal(ok.value?.toString(), 'hello');
  assert.deepEqual(ok.trailers?.get('x-trailer'), ['unary']);
  const failed = await unary(client, 'x', { fail: String(grpc.status.NOT_FOUND) });
  assert.equal(failed.error?.code, grpc.status.NOT_FOUND);
  assert.equal(failed.error?.details, 'the server says no');
  assert.deepEqual(failed.trailers?.get('x-trailer'), ['unary']);
});

test('server streaming, client streaming and bidi calls pass message by message, with their trailers', async () => {
  const md = new grpc.Metadata();
  md.set('count', '4');
  const got: string[] = [];
  const stream = client.makeServerStreamRequest('/test.Echo/ServerStream', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('s'), md, {});
  stream.on('data', (b: Buffer) => got.push(b.toString()));
  const status = await new Promise<grpc.StatusObject>((r) => stream.on('status', r));
  assert.equal(status.code, grpc.status.OK);
  assert.deepEqual(got, ['s', 's', 's', 's']);
  assert.deepEqual(status.metadata.get('x-trailer'), ['serverStream']);

  const concat = await new Promise<Buffer>((resolve, reject) => {
    const call = client.makeClientStreamRequest('/test.Echo/ClientStream', (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), {}, (err, v) => (err ? reject(err) : resolve(v as Buffer)));
    for (const part of ['a', 'b', 'c']) call.write(Buffer.from(part));
    call.end();
  });
  assert.equal(concat.toString(), 'abc');

  // Bidi: each message is echoed before the next is sent (nothing is buffered until the end).
  const bidi = client.makeBidiStreamRequest('/test.Echo/Bidi', (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), {});
  const echoes: string[] = [];
  for (const word of ['one', 'two', 'three']) {
    const echoed = new Promise<string>((r) => bidi.once('data', (b: Buffer) => r(b.toString())));
    bidi.write(Buffer.from(word));
    echoes.push(await echoed);
  }
  bidi.end();
  const bidiStatus = await new Promise<grpc.StatusObject>((r) => bidi.on('status', r));
  assert.deepEqual(echoes, ['one', 'two', 'three']);
  assert.equal(bidiStatus.code, grpc.status.OK);
  assert.deepEqual(bidiStatus.metadata.get('x-trailer'), ['bidi']);
});

test("Sluice's refusals are gRPC answers: 14 UNAVAILABLE for queue_full, 8 RESOURCE_EXHAUSTED for client_rate, with the reason and grpc-retry-pushback-ms", async () => {
  // client_rate: a burst of 1, so this key's second call is over its rate.
  assert.equal((await unary(refusingClient('greedy'), 'first', { 'x-api-key': 'greedy' })).error, null);
  const rate = await unary(refusingClient('greedy'), 'second', { 'x-api-key': 'greedy' });
  assert.equal(rate.error?.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.equal(rate.error?.details, 'client_rate');
  assert.ok(Number(rate.trailers?.get('grpc-retry-pushback-ms')[0]) >= 1000);

  // queue_full: the route's one slot is held by another client's call.
  const held = unary(refusingClient('a'), 'held', { 'x-api-key': 'a', hold: '1' });
  await eventually(() => upstream.holding() === 1, 'the call held upstream');
  const full = await unary(refusingClient('b'), 'refused', { 'x-api-key': 'b' });
  assert.equal(full.error?.code, grpc.status.UNAVAILABLE);
  assert.equal(full.error?.details, 'queue_full');
  const pushback = Number(full.trailers?.get('grpc-retry-pushback-ms')[0]);
  assert.ok(pushback >= 1000 && pushback % 1000 === 0, `pushback ${pushback} ms: Retry-After in ms`);
  upstream.releaseAll();
  assert.equal((await held).error, null);
  await eventually(async () => (await refusing.state()).routes.every((r) => r.inflight === 0), 'nothing in flight');
});

test('what the limit learns: a unary call is an RTT sample; a server stream is sampled at its first message, not its length; a bidi call is no sample', async () => {
  const limit = limits.get('grpc') as RecordingLimit;
  const n0 = limit.samples.length;
  assert.equal((await unary(client, 'rtt')).error, null);
  assert.equal(limit.samples.length, n0 + 1);

  // Four messages 250 ms apart: the call lasts at least 750 ms; its first message comes at once.
  const md = new grpc.Metadata();
  md.set('count', '4');
  md.set('gap-ms', '250');
  const t0 = Date.now();
  const stream = client.makeServerStreamRequest('/test.Echo/ServerStream', (b: Buffer) => b, (b: Buffer) => b, Buffer.from('s'), md, {});
  stream.on('data', () => undefined);
  await new Promise((r) => stream.on('status', r));
  const lasted = Date.now() - t0;
  assert.ok(lasted >= 750);
  await eventually(() => limit.samples.length === n0 + 2, 'the stream settled');
  const sample = limit.samples[n0 + 1] as Sample;
  assert.ok(sample.rttMs < lasted / 2, `sampled ${sample.rttMs} ms of a ${lasted} ms stream`);
  assert.equal(sample.dropped, false);

  const bidi = client.makeBidiStreamRequest('/test.Echo/Bidi', (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), {});
  // The answer begins while the client still sends: its timing is the client's pace.
  const echoed = new Promise((r) => bidi.once('data', r));
  bidi.write(Buffer.from('x'));
  await echoed;
  bidi.on('data', () => undefined);
  bidi.end();
  await new Promise((r) => bidi.on('status', r));
  await eventually(async () => (await s.state()).routes.every((r) => r.inflight === 0), 'the bidi call settled');
  assert.equal(limit.samples.length, n0 + 2, 'a bidi call feeds no sample');
});

test('an upstream that answers UNAVAILABLE (14) backs the limit off like an overload status', async () => {
  const limit = limits.get('grpc') as RecordingLimit;
  const n0 = limit.samples.length;
  const r = await unary(client, 'x', { fail: String(grpc.status.UNAVAILABLE) });
  assert.equal(r.error?.code, grpc.status.UNAVAILABLE);
  await eventually(() => limit.samples.length === n0 + 1, 'the call settled');
  assert.equal(limit.samples[n0]?.dropped, true);
});

test('over TLS (ALPN h2, the certificate verified against its CA): a unary call passes and a refusal is UNAVAILABLE with pushback', async () => {
  const certs = makeCerts();
  const tls = await startSluice(`
listen: { host: 127.0.0.1, port: 0, http2: true, tls: { certFile: ${certs.cert}, keyFile: ${certs.key} } }
log: { level: error }
lanes:
  - name: interactive
    queue: { maxLength: 0, maxWaitMs: 1000 }
routes:${route('tls', '    limit: { algorithm: fixed, initial: 1, min: 1, max: 1 }')}
`);
  const target = `localhost:${new URL(tls.url).port}`;
  const tlsClient = new EchoClient(target, grpc.credentials.createSsl(readFileSync(certs.caCert)));
  try {
    const ok = await unary(tlsClient, 'secure');
    assert.equal(ok.error, null);
    assert.equal(ok.value?.toString(), 'secure');
    const held = unary(tlsClient, 'held', { hold: '1' });
    await eventually(() => upstream.holding() === 1, 'the call held upstream');
    const full = await unary(tlsClient, 'refused');
    assert.equal(full.error?.code, grpc.status.UNAVAILABLE);
    assert.equal(full.error?.details, 'queue_full');
    assert.ok(Number(full.trailers?.get('grpc-retry-pushback-ms')[0]) >= 1000);
    upstream.releaseAll();
    assert.equal((await held).error, null);
  } finally {
    upstream.releaseAll();
    tlsClient.close();
    await tls.close();
  }
});

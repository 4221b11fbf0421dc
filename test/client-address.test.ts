/**
 * Trusted proxies and the client's address (src/proxy/client-address.ts):
 * IPv4 and IPv6 CIDRs, IPv4-mapped IPv6 peers, the X-Forwarded-For walk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cidrProblem } from '../src/config/addresses.js';
import { TrustedProxies, clientAddress, plainAddress } from '../src/proxy/client-address.js';

test('trusted proxies match IPv4 and IPv6 CIDRs, bare addresses and named ranges', () => {
  const t = new TrustedProxies(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', 'fe80::1', 'loopback']);
  for (const yes of ['10.1.2.3', '10.255.255.255', '192.168.1.7', '2001:db8:0:1::5', '2001:DB8::', 'fe80::1', '127.0.0.1', '127.9.9.9', '::1']) assert.equal(t.has(yes), true, yes);
  for (const no of ['11.0.0.1', '192.168.1.8', '2001:db9::1', 'fe80::2', '::2', 'not-an-ip', '', '10.0.0']) assert.equal(t.has(no), false, no);
  assert.equal(new TrustedProxies([]).none, true);
  assert.equal(new TrustedProxies(['0.0.0.0/0']).has('8.8.8.8'), true);
  assert.equal(new TrustedProxies(['::/0']).has('2606:4700::1'), true);
});

test('an IPv4-mapped IPv6 peer (a dual-stack listener) is its IPv4 address, for matching and reporting', () => {
  const t = new TrustedProxies(['10.0.0.0/8']);
  assert.equal(t.has('::ffff:10.2.3.4'), true);
  assert.equal(t.has('::ffff:11.2.3.4'), false);
  assert.equal(plainAddress('::ffff:10.2.3.4'), '10.2.3.4');
  assert.equal(plainAddress('::1'), '::1');
  // A mapped CIDR is an IPv4 one.
  assert.equal(new TrustedProxies(['::ffff:10.0.0.0/104']).has('10.9.9.9'), true);
  assert.equal(new TrustedProxies(['::ffff:10.0.0.0/104']).has('::ffff:10.9.9.9'), true);
  // A zone id does not stop a match.
  assert.equal(new TrustedProxies(['fe80::/10']).has('fe80::1%eth0'), true);
});

test('the client is the right-most X-Forwarded-For hop that is not trusted, when the peer is trusted', () => {
  const t = new TrustedProxies(['10.0.0.0/8']);
  // The peer is not trusted: its claims are never read.
  assert.equal(clientAddress('203.0.113.9', false, '1.1.1.1', t), '203.0.113.9');
  // Trusted peer, one hop before it.
  assert.equal(clientAddress('10.0.0.1', true, '198.51.100.7', t), '198.51.100.7');
  // A client lying in front: the right-most untrusted entry is the one the trusted proxy wrote.
  assert.equal(clientAddress('10.0.0.1', true, '6.6.6.6, 198.51.100.7, 10.0.0.2', t), '198.51.100.7');
  // Headers sent twice are one list; ports and brackets are ignored; mapped forms are IPv4.
  assert.equal(clientAddress('10.0.0.1', true, ['6.6.6.6', '198.51.100.7:5555, 10.0.0.2'], t), '198.51.100.7');
  assert.equal(clientAddress('10.0.0.1', true, '[2001:db8::7]:443', t), '2001:db8::7');
  assert.equal(clientAddress('10.0.0.1', true, '::ffff:198.51.100.7', t), '198.51.100.7');
  // Every hop trusted: the left-most. No header: the peer.
  assert.equal(clientAddress('10.0.0.1', true, '10.0.0.3, 10.0.0.2', t), '10.0.0.3');
  assert.equal(clientAddress('10.0.0.1', true, undefined, t), '10.0.0.1');
  // Garbage stops the walk at the last trusted hop seen.
  assert.equal(clientAddress('10.0.0.1', true, 'unknown, 10.0.0.2', t), '10.0.0.2');
  assert.equal(clientAddress('10.0.0.1', true, 'x', t), '10.0.0.1');
});

test('trustedProxies entries are checked: addresses, CIDRs with a valid prefix, or a named range', () => {
  for (const ok of ['10.0.0.0/8', '1.2.3.4', '::1', 'fd00::/8', '::/0', '0.0.0.0/0', 'loopback', 'private', 'linklocal']) assert.equal(cidrProblem(ok), null, ok);
  assert.match(cidrProblem('10.0.0.0/33') ?? '', /prefix length must be an integer from 0 to 32/);
  assert.match(cidrProblem('fd00::/129') ?? '', /from 0 to 128/);
  assert.match(cidrProblem('10.0.0.0/x') ?? '', /prefix length/);
  assert.match(cidrProblem('example.com') ?? '', /is not an IP address, a CIDR/);
  assert.match(cidrProblem('constructor') ?? '', /is not an IP address/);
  assert.match(cidrProblem('fe80::1%eth0') ?? '', /is not an IP address/);
});

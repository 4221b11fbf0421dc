import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseDocument } from 'yaml';
import * as z from 'zod';
import { ConfigError, formatProblems, loadConfig, parseConfig } from '../src/config/load.js';
import { configSchema } from '../src/config/schema.js';
import type { Config } from '../src/config/types.js';

// The compiled test runs from build/test/, so the repo root is two levels up.
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const examplePath = resolve(repoRoot, 'config.example.yaml');
const fixture = (name: string) => resolve(repoRoot, 'test/fixtures/config', name);

/** YAML from lines, so that a line's index + 1 is its line number in the assertions. */
const yaml = (...lines: string[]) => lines.join('\n') + '\n';

/** A minimal valid route, 4 lines (lines 1-4 when first). */
const ROUTE = ['routes:', '  - name: r', '    match: { pathPrefix: / }', '    upstream: http://127.0.0.1:3000'];

/** The formatted problem lines of a config that must not load. */
function problems(text: string): string[] {
  try {
    parseConfig(text, 'x.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.message.split('\n');
  }
  assert.fail('expected the config to be rejected');
}

const route = (config: Config, name: string) => {
  const found = config.routes.find((r) => r.name === name);
  assert.ok(found, `route ${name}`);
  return found;
};

// ---------------------------------------------------------------- defaults and the example

const DEFAULT_LIMIT = {
  algorithm: 'little',
  initial: 32,
  min: 1,
  max: 1000,
  window: { minSamples: 10, windowMs: 100, percentile: 0.5 },
  overloadStatuses: [429, 503, 504],
  aimd: { backoff: 0.9, increase: 1 },
  gradient: { tolerance: 1, longWindow: 600, smoothing: 0.2, queueAllowance: 'sqrt' },
  little: { queue: 0.3, growth: 1, probeEvery: 30 },
  vegas: { alpha: 3, beta: 6 },
  hysteresis: { increaseAfterWindows: 2, deadBand: 0.05 },
};
const DEFAULT_LANES = [
  { name: 'interactive', maxShare: 1, minShare: 0, queue: { maxLength: 100, maxWaitMs: 1000, fair: true } },
  { name: 'batch', maxShare: 0.5, minShare: 0.1, queue: { maxLength: 500, maxWaitMs: 5000, fair: true } },
];
const DEFAULT_FORWARDING = { trustedProxies: [], xForwardedFor: 'append', xForwardedProto: true, xForwardedHost: true, via: 'sluice', forwarded: false };

const DEFAULT_ROUTE_POLICY = {
  mode: 'enforce',
  limit: DEFAULT_LIMIT,
  overload: { signal: 'queueWaitP90', enterMs: 100, exitMs: 20, cooldownMs: 5000 },
  timeouts: { connectMs: 2000, headersMs: 30000, bodyMs: 30000 },
  circuitBreaker: {
    enabled: true,
    consecutiveFailures: 5,
    failureRatio: 0.5,
    minRequests: 20,
    windowMs: 10000,
    openMs: 5000,
    maxOpenMs: 60000,
    halfOpenRatio: 0.05,
    closeAfterSuccesses: 5,
  },
  lanes: DEFAULT_LANES,
  forwarding: DEFAULT_FORWARDING,
  preserveHost: false,
  http2: false,
};

test('a config with only a route gets every documented default', () => {
  const config = parseConfig(yaml(...ROUTE), 'minimal.yaml');
  assert.deepEqual(config, {
    file: resolve('minimal.yaml'),
    mode: 'enforce',
    workers: 1,
    listen: { host: '0.0.0.0', port: 8080, http2: false },
    admin: { host: '127.0.0.1', port: 9901, allowedHosts: [] },
    server: { headersTimeoutMs: 10000, requestTimeoutMs: 300000, keepAliveTimeoutMs: 72000, maxHeaderBytes: 16384, maxHeaderCount: 200, bodyIdleTimeoutMs: 30000,
      http2: { maxConcurrentStreams: 100, maxHeaderListBytes: 65536, maxExcessResets: 100 },
    },
    log: { level: 'info', pretty: false, access: { enabled: false, sample: 1 } },
    forwarding: DEFAULT_FORWARDING,
    lanes: DEFAULT_LANES,
    classify: [],
    clients: { key: { ip: true }, maxShare: 0.5, weights: {}, rateLimitHeaders: false },
    retryAfter: { minSeconds: 1, maxSeconds: 30, jitter: 0.2 },
    readiness: { maxBacklogSeconds: 10 },
    shutdown: { readinessGraceMs: 5000, drainTimeoutMs: 30000 },
    routes: [
      { name: 'r', match: { pathPrefix: '/' }, upstream: 'http://127.0.0.1:3000', ...DEFAULT_ROUTE_POLICY },
    ],
  });
});

test('config.example.yaml loads, and its global and `defaults:` values are the documented defaults', () => {
  const example = loadConfig(examplePath);
  const minimal = parseConfig(yaml(...ROUTE), 'minimal.yaml');
  assert.equal(example.file, examplePath);

  for (const key of ['mode', 'listen', 'admin', 'server', 'log', 'forwarding', 'lanes', 'retryAfter', 'readiness', 'shutdown'] as const) {
    assert.deepEqual(example[key], minimal[key], key);
  }
  assert.equal(example.clients.maxShare, 0.5);
  // The catch-all route sets nothing of its own, so it shows the `defaults:` block.
  const { name, match, deadline, ...policy } = route(example, 'default');
  const { name: _n, match: _m, ...defaults } = minimal.routes[0]!;
  assert.deepEqual(policy, defaults);
  assert.deepEqual(deadline, { header: 'x-request-timeout-ms', format: 'ms' });
});

test('config.example.yaml sets every key the schema knows', () => {
  // Every key path of the schema; `*` stands for any list item or mapping key.
  const keyPaths = (schema: z.ZodType, prefix: string[]): string[][] => {
    if (schema instanceof z.ZodOptional || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault) {
      return keyPaths(schema.unwrap() as z.ZodType, prefix);
    }
    if (schema instanceof z.ZodObject) {
      return Object.entries(schema.shape as z.ZodRawShape).flatMap(([key, field]) => [
        [...prefix, key],
        ...keyPaths(field as z.ZodType, [...prefix, key]),
      ]);
    }
    if (schema instanceof z.ZodArray) return keyPaths(schema.element as z.ZodType, [...prefix, '*']);
    if (schema instanceof z.ZodRecord) return keyPaths(schema.valueType as z.ZodType, [...prefix, '*']);
    return [];
  };
  const present = (value: unknown, path: string[]): boolean => {
    if (path.length === 0) return true;
    if (value === null || typeof value !== 'object') return false;
    const [head, ...rest] = path as [string, ...string[]];
    if (head === '*') return Object.values(value).some((child) => present(child, rest));
    return Object.hasOwn(value, head) && present((value as Record<string, unknown>)[head], rest);
  };
  const text = readFileSync(examplePath, 'utf8');
  const example: unknown = parseDocument(text).toJS();
  // clients.key is either { header } or { ip: true }: the example sets one and shows the other in a comment.
  // Inside a route's policy keys and lane overrides the keys are those of `defaults:` and `lanes:`,
  // documented there; the routes need only show each such key once.
  // clients.rate.store needs a Redis: the example shows it commented out (checked below).
  // admin.token has no default: the example shows it commented out (checked below).
  const exempt = (path: string[]) =>
    path.join('.') === 'clients.key.ip' ||
    path.join('.') === 'admin.token' ||
    // listen.tls needs certificate files: the example shows it commented out (checked below).
    path.join('.').startsWith('listen.tls') ||
    path.join('.').startsWith('clients.rate.store') ||
    (path[0] === 'routes' && path[2] !== 'match' && path.length > 3) ||
    // defaults.forwarding takes the top-level forwarding keys, documented there.
    (path[0] === 'defaults' && path[1] === 'forwarding' && path.length > 2);
  const missing = keyPaths(configSchema, [])
    .filter((path) => !exempt(path) && !present(example, path))
    .map((path) => path.join('.'));
  assert.deepEqual(missing, []);
  assert.match(text, /\{ ip: true \}/);
  for (const key of ['store:', 'redis:', 'url:', 'timeoutMs:', 'prefix:', 'instances:', 'token:', 'tls:', 'certFile:', 'keyFile:', 'caFile:', 'minVersion:']) assert.match(text, new RegExp(`^ *# *${key}`, 'm'), key);
});

test('config.example.yaml: routes, classify and clients as written', () => {
  const example = loadConfig(examplePath);
  assert.deepEqual(
    example.routes.map((r) => [r.name, r.upstream]),
    [
      ['orders', 'http://127.0.0.1:3000'],
      ['reports', 'http://127.0.0.1:3000'],
      ['chat', 'http://127.0.0.1:3001'],
      ['default', 'http://127.0.0.1:3000'],
    ],
  );
  assert.deepEqual(route(example, 'chat').websocket, { maxOpen: 1000, idleTimeoutMs: 300_000 });
  assert.equal(route(example, 'default').websocket, undefined);
  assert.deepEqual(
    example.classify.map((c) => [c.lane, c.laneIndex]),
    [
      ['batch', 1],
      ['batch', 1],
      ['batch', 1],
    ],
  );
  assert.deepEqual(example.clients, {
    key: { header: 'x-api-key' },
    maxShare: 0.5,
    rate: { perSecond: 100, burst: 200 },
    rateLimitHeaders: true,
    weights: { 'gold-tenant': 3 },
  });

  const orders = route(example, 'orders');
  assert.deepEqual(orders.match, { pathPrefix: '/api/orders', methods: ['GET', 'POST'] });
  assert.deepEqual(orders.limit, { ...DEFAULT_LIMIT, algorithm: 'aimd', initial: 64 });
  assert.deepEqual(orders.lanes[1], {
    name: 'batch',
    maxShare: 0.25,
    minShare: 0.1,
    queue: { maxLength: 50, maxWaitMs: 5000, fair: true },
  });

  const reports = route(example, 'reports');
  assert.equal(reports.mode, 'shadow');
  assert.deepEqual(reports.match, { pathPrefix: '/api/reports/', host: 'localhost' });
  assert.deepEqual(reports.deadline, { header: 'grpc-timeout', format: 'grpc-timeout' });
  assert.deepEqual(reports.overload, { signal: 'queueWaitP90', enterMs: 250, exitMs: 50, cooldownMs: 5000 });
});

// ---------------------------------------------------------------- merging

test('defaults merge into every route: objects key by key, lists replaced, the route winning', () => {
  const config = parseConfig(
    yaml(
      'mode: shadow',
      'defaults:',
      '  limit: { algorithm: aimd, max: 500, overloadStatuses: [503], aimd: { backoff: 0.5 } }',
      '  timeouts: { connectMs: 100 }',
      'routes:',
      '  - name: a',
      '    match: { pathPrefix: /a }',
      '    upstream: http://127.0.0.1:3000',
      '    limit: { initial: 10, overloadStatuses: [429], aimd: { increase: 2 } }',
      '  - name: b',
      '    match: { pathPrefix: /b }',
      '    upstream: http://127.0.0.1:3000',
      '    mode: enforce',
    ),
    'x.yaml',
  );
  const [a, b] = config.routes;
  assert.deepEqual(a!.limit, {
    ...DEFAULT_LIMIT,
    algorithm: 'aimd',
    initial: 10,
    max: 500,
    overloadStatuses: [429],
    aimd: { backoff: 0.5, increase: 2 },
  });
  assert.deepEqual(b!.limit, {
    ...DEFAULT_LIMIT,
    algorithm: 'aimd',
    max: 500,
    overloadStatuses: [503],
    aimd: { backoff: 0.5, increase: 1 },
  });
  assert.deepEqual(a!.timeouts, { connectMs: 100, headersMs: 30000, bodyMs: 30000 });
  // mode: route, else defaults, else the top level
  assert.equal(a!.mode, 'shadow');
  assert.equal(b!.mode, 'enforce');
  assert.equal(a!.deadline, undefined);
});

test('defaults.mode wins over the top-level mode; deadline header follows its format', () => {
  const config = parseConfig(
    yaml(
      'mode: enforce',
      'defaults: { mode: shadow, deadline: { format: grpc-timeout } }',
      'routes:',
      '  - { name: a, match: { pathPrefix: /a }, upstream: "http://127.0.0.1:3000" }',
      '  - { name: b, match: { pathPrefix: /b }, upstream: "http://127.0.0.1:3000", deadline: { header: X-Deadline } }',
      '  - { name: c, match: { pathPrefix: /c }, upstream: "http://127.0.0.1:3000", deadline: { format: ms } }',
    ),
    'x.yaml',
  );
  const [a, b, c] = config.routes;
  assert.equal(a!.mode, 'shadow');
  assert.deepEqual(a!.deadline, { header: 'grpc-timeout', format: 'grpc-timeout' });
  assert.deepEqual(b!.deadline, { header: 'x-deadline', format: 'grpc-timeout' });
  assert.deepEqual(c!.deadline, { header: 'x-request-timeout-ms', format: 'ms' });
});

test('route lanes are the global lanes, in order, with the route overrides deep-merged', () => {
  const config = parseConfig(
    yaml(
      'lanes:',
      '  - name: interactive',
      '  - name: batch',
      '    maxShare: 0.5',
      '    queue: { maxLength: 500, maxWaitMs: 5000 }',
      '  - name: bulk',
      '    maxShare: 0.2',
      ...ROUTE,
      '    lanes:',
      '      bulk: { minShare: 0.1 }',
      '      batch: { maxShare: 0.25, queue: { maxLength: 50 } }',
    ),
    'x.yaml',
  );
  assert.deepEqual(config.lanes.map((l) => l.name), ['interactive', 'batch', 'bulk']);
  assert.deepEqual(config.routes[0]!.lanes, [
    { name: 'interactive', maxShare: 1, minShare: 0, queue: { maxLength: 100, maxWaitMs: 1000, fair: true } },
    { name: 'batch', maxShare: 0.25, minShare: 0, queue: { maxLength: 50, maxWaitMs: 5000, fair: true } },
    { name: 'bulk', maxShare: 0.2, minShare: 0.1, queue: { maxLength: 100, maxWaitMs: 1000, fair: true } },
  ]);
  // the global lanes are untouched by the override
  assert.deepEqual(config.lanes[1], {
    name: 'batch',
    maxShare: 0.5,
    minShare: 0,
    queue: { maxLength: 500, maxWaitMs: 5000, fair: true },
  });
});

test('normalisation: header names lower-cased, methods upper-cased, lanes resolved, upstream reduced to its origin', () => {
  const config = parseConfig(
    yaml(
      'classify:',
      '  - lane: batch',
      '    when: { header: { name: X-Priority, value: Batch }, methods: [get, Post] }',
      '  - lane: interactive',
      '    when: { clientKeys: [k1] }',
      'clients: { key: { header: X-Api-Key }, rate: { perSecond: 0.5 } }',
      'routes:',
      '  - name: r',
      '    match: { pathPrefix: /api, host: Shop.Example.COM, methods: [delete] }',
      '    upstream: HTTPS://Example.com:8443/',
    ),
    'x.yaml',
  );
  assert.deepEqual(config.classify, [
    { lane: 'batch', laneIndex: 1, when: { header: { name: 'x-priority', value: 'Batch' }, methods: ['GET', 'POST'] } },
    { lane: 'interactive', laneIndex: 0, when: { clientKeys: ['k1'] } },
  ]);
  // burst defaults to perSecond, but a bucket needs room for at least one token
  assert.deepEqual(config.clients, { key: { header: 'x-api-key' }, maxShare: 0.5, rate: { perSecond: 0.5, burst: 1 }, weights: {}, rateLimitHeaders: false });
  assert.deepEqual(config.routes[0]!.match, { pathPrefix: '/api', host: 'shop.example.com', methods: ['DELETE'] });
  assert.equal(config.routes[0]!.upstream, 'https://example.com:8443');
});

test('the result is deeply frozen', () => {
  const config = loadConfig(examplePath);
  const orders = route(config, 'orders');
  for (const value of [config, config.listen, config.lanes, config.lanes[0]!.queue, config.classify[0]!.when,
    config.clients.key, config.routes, orders, orders.match.methods, orders.limit.window,
    orders.limit.overloadStatuses, orders.lanes, orders.lanes[1]!.queue]) {
    assert.ok(Object.isFrozen(value));
  }
  assert.throws(() => {
    (config.listen as { port: number }).port = 1;
  }, TypeError);
  assert.throws(() => {
    (orders.limit.overloadStatuses as number[]).push(500);
  }, TypeError);
});

// ---------------------------------------------------------------- one problem at a time

test('unknown keys are reported at the key, with the allowed keys', () => {
  assert.deepEqual(problems(yaml('lisen: { port: 80 }', ...ROUTE)), [
    'x.yaml:1:1: lisen: unknown key (allowed: mode, workers, listen, admin, server, log, forwarding, lanes, classify, clients, retryAfter, readiness, shutdown, defaults, routes)',
  ]);
  assert.deepEqual(problems(yaml(...ROUTE, '    limit: { initial: 5, maxx: 9 }')), [
    'x.yaml:5:26: routes.0.limit.maxx: unknown key (allowed: algorithm, initial, min, max, window, overloadStatuses, aimd, gradient, little, vegas, hysteresis)',
  ]);
  assert.deepEqual(problems(yaml(...ROUTE, '    lanes: { batch: { queue: { max: 1 } } }')), [
    'x.yaml:5:32: routes.0.lanes.batch.queue.max: unknown key (allowed: maxLength, maxWaitMs, fair)',
  ]);
});

test('wrong types', () => {
  assert.deepEqual(problems(yaml('listen:', '  port: "8080"', ...ROUTE)), [
    'x.yaml:2:9: listen.port: must be an integer between 0 and 65535',
  ]);
  assert.deepEqual(problems(yaml('log: { pretty: yes }', ...ROUTE)), ['x.yaml:1:16: log.pretty: must be true or false']);
  assert.deepEqual(problems(yaml('defaults:', '  limit: 5', ...ROUTE)), [
    'x.yaml:2:10: defaults.limit: must be a mapping, not 5',
  ]);
  // an empty value has no text of its own: the key stands in for it
  assert.deepEqual(problems(yaml('lanes:', ...ROUTE)), ['x.yaml:1:1: lanes: must be a list, not an empty value']);
  assert.deepEqual(problems(yaml('mode: strict', ...ROUTE)), ['x.yaml:1:7: mode: must be one of: enforce, shadow']);
  assert.deepEqual(problems(yaml('defaults: { limit: { algorithm: bbr } }', ...ROUTE)), [
    'x.yaml:1:33: defaults.limit.algorithm: must be one of: little, fixed, aimd, gradient, vegas',
  ]);
  assert.deepEqual(problems(yaml('defaults: { limit: { gradient: { queueAllowance: log } } }', ...ROUTE)), [
    'x.yaml:1:50: defaults.limit.gradient.queueAllowance: must be "sqrt" or a number >= 0',
  ]);
});

test('out-of-range numbers and non-integers where an integer is meant', () => {
  const cases: [string, string][] = [
    ['admin: { port: 65536 }', 'x.yaml:1:16: admin.port: must be an integer between 0 and 65535'],
    ['admin: { port: 80.5 }', 'x.yaml:1:16: admin.port: must be an integer between 0 and 65535'],
    ['retryAfter: { jitter: 1.5 }', 'x.yaml:1:23: retryAfter.jitter: must be a number between 0 and 1'],
    ['retryAfter: { minSeconds: 0 }', 'x.yaml:1:27: retryAfter.minSeconds: must be an integer >= 1'],
    ['clients: { maxShare: 0 }', 'x.yaml:1:22: clients.maxShare: must be a number > 0 and <= 1'],
    ['clients: { rate: { perSecond: 0 } }', 'x.yaml:1:31: clients.rate.perSecond: must be a number > 0'],
    ['shutdown: { drainTimeoutMs: 0 }', 'x.yaml:1:29: shutdown.drainTimeoutMs: must be an integer >= 1'],
    ['defaults: { limit: { window: { percentile: 1 } } }', 'x.yaml:1:44: defaults.limit.window.percentile: must be a number > 0 and < 1'],
    ['defaults: { limit: { aimd: { backoff: 1 } } }', 'x.yaml:1:39: defaults.limit.aimd.backoff: must be a number > 0 and < 1'],
    ['defaults: { limit: { initial: 2.5 } }', 'x.yaml:1:31: defaults.limit.initial: must be an integer >= 1'],
    ['defaults: { limit: { overloadStatuses: [503, 99] } }', 'x.yaml:1:46: defaults.limit.overloadStatuses.1: must be an integer between 100 and 599'],
    ['defaults: { timeouts: { connectMs: 0 } }', 'x.yaml:1:36: defaults.timeouts.connectMs: must be an integer >= 1'],
    ['lanes: [{ name: a, queue: { maxLength: -1 } }]', 'x.yaml:1:40: lanes.0.queue.maxLength: must be an integer >= 0'],
    ['lanes: [{ name: a, minShare: -0.1 }]', 'x.yaml:1:30: lanes.0.minShare: must be a number between 0 and 1'],
  ];
  for (const [line, expected] of cases) {
    assert.deepEqual(problems(yaml(line, ...ROUTE)), [expected], line);
  }
});

test('a missing required key is reported at the mapping that should hold it', () => {
  assert.deepEqual(problems(yaml('routes:', '  - name: r', '    match: { host: a.example }')), [
    'x.yaml:2:5: routes.0.upstream: is required',
    'x.yaml:3:12: routes.0.match.pathPrefix: is required',
  ]);
  assert.deepEqual(problems(yaml('mode: enforce')), ['x.yaml:1:1: routes: is required (a list of at least one route)']);
  assert.deepEqual(problems(yaml('routes: []')), ['x.yaml:1:9: routes: needs at least one route']);
});

test('YAML syntax errors carry their own line:col', () => {
  assert.deepEqual(problems(yaml('listen:', '  port: 1', '  port: 2', ...ROUTE)), [
    'x.yaml:3:3: Map keys must be unique',
  ]);
  assert.deepEqual(problems(yaml('listen: { port: 1', ...ROUTE)), [
    'x.yaml:2:1: Flow map in block collection must be sufficiently indented and end with a }',
  ]);
});

test('an empty file, or one whose top level is not a mapping', () => {
  const message = 'must be a mapping of settings with at least `routes`';
  assert.deepEqual(problems(''), [`x.yaml:1:1: the file is empty; it ${message}`]);
  assert.deepEqual(problems('# nothing but a comment\n'), [`x.yaml:1:1: the file is empty; it ${message}`]);
  assert.deepEqual(problems('\n- routes\n'), [`x.yaml:2:1: the file is not a mapping; it ${message}`]);
});

test('lanes: duplicate names, minShare above maxShare, reserved shares over 1', () => {
  assert.deepEqual(
    problems(yaml('lanes:', '  - name: a', '  - name: a', ...ROUTE)),
    ['x.yaml:3:11: lanes.1.name: duplicate lane name "a" (first defined at lanes.0)'],
  );
  assert.deepEqual(
    problems(yaml('lanes:', '  - { name: a, maxShare: 0.5, minShare: 0.6 }', ...ROUTE)),
    ['x.yaml:2:41: lanes.0.minShare: minShare (0.6) is greater than maxShare (0.5)'],
  );
  assert.deepEqual(
    problems(yaml('lanes:', '  - { name: a, minShare: 0.6 }', '  - { name: b, minShare: 0.5 }', ...ROUTE)),
    ['x.yaml:2:3: lanes: minShare of all lanes adds up to 1.1; it must be at most 1'],
  );
});

test('classify: unknown lane, empty `when`, invalid method', () => {
  assert.deepEqual(
    problems(yaml('classify:', '  - lane: bulk', '    when: { pathPrefix: /x }', ...ROUTE)),
    ['x.yaml:2:11: classify.0.lane: lane "bulk" is not defined in lanes (defined: interactive, batch)'],
  );
  assert.deepEqual(problems(yaml('classify:', '  - lane: batch', '    when: {}', ...ROUTE)), [
    'x.yaml:3:11: classify.0.when: needs at least one condition (header, pathPrefix, methods, clientKeys)',
  ]);
  assert.deepEqual(problems(yaml('classify:', '  - lane: batch', '    when: { methods: [GET, FETCH] }', ...ROUTE)), [
    'x.yaml:3:28: classify.0.when.methods.1: "FETCH" is not an HTTP method (e.g. GET, POST, PUT, DELETE)',
  ]);
});

test('clients.key needs exactly one of header and ip', () => {
  assert.deepEqual(problems(yaml('clients:', '  key: { header: x-api-key, ip: true }', ...ROUTE)), [
    'x.yaml:2:8: clients.key: needs exactly one of: header, ip',
  ]);
});

test('routes: duplicate names, bad pathPrefix, host with a port, unknown lane override', () => {
  assert.deepEqual(problems(yaml(...ROUTE, ...ROUTE.slice(1))), [
    'x.yaml:5:11: routes.1.name: duplicate route name "r" (first defined at routes.0)',
  ]);
  assert.deepEqual(problems(yaml('routes:', '  - name: r', '    match: { pathPrefix: api }', '    upstream: http://a')), [
    "x.yaml:3:26: routes.0.match.pathPrefix: must start with '/'",
  ]);
  assert.deepEqual(
    problems(yaml('routes:', '  - name: r', '    match: { pathPrefix: /, host: a.example:80 }', '    upstream: http://a')),
    ['x.yaml:3:35: routes.0.match.host: must be a host name without scheme or port (e.g. shop.example.com)'],
  );
  assert.deepEqual(problems(yaml(...ROUTE, '    lanes:', '      bulk: { maxShare: 0.1 }')), [
    'x.yaml:6:7: routes.0.lanes.bulk: lane "bulk" is not defined in lanes (defined: interactive, batch)',
  ]);
});

test('upstream must be an http(s) origin', () => {
  const cases: [string, string][] = [
    ['http://127.0.0.1:3000/api', 'must be an origin only (scheme://host[:port]), without a path'],
    ['http://127.0.0.1:3000/?a=1', 'must not contain a query or fragment'],
    ['http://127.0.0.1:3000?', 'must not contain a query or fragment'],
    ['http://user:pw@127.0.0.1:3000', 'must not contain credentials'],
    ['ftp://127.0.0.1', 'must be an http:// or https:// URL'],
    ['localhost:3000', 'must be an http:// or https:// URL'],
    ['127.0.0.1:3000', 'must be an absolute URL such as http://127.0.0.1:3000'],
    ['not a url', 'must be an absolute URL such as http://127.0.0.1:3000'],
  ];
  for (const [url, message] of cases) {
    const text = yaml('routes:', '  - name: r', '    match: { pathPrefix: / }', `    upstream: "${url}"`);
    assert.deepEqual(problems(text), [`x.yaml:4:15: routes.0.upstream: ${message}`], url);
  }
  const ok = parseConfig(yaml('routes:', '  - name: r', '    match: { pathPrefix: / }', '    upstream: http://h:1/'), 'x');
  assert.equal(ok.routes[0]!.upstream, 'http://h:1');
});

test('limit: min > max and initial outside [min, max], blamed on the route key if set, else on defaults', () => {
  // the route sets both
  assert.deepEqual(problems(yaml(...ROUTE, '    limit: { min: 10, max: 5 }')), [
    'x.yaml:5:19: routes.0.limit.min: min (10) is greater than max (5)',
  ]);
  // the route set initial: its key
  assert.deepEqual(problems(yaml('defaults: { limit: { max: 50 } }', ...ROUTE, '    limit: { initial: 64 }')), [
    'x.yaml:6:23: routes.0.limit.initial: initial (64) is outside [min 1, max 50]',
  ]);
  // only defaults set initial: the defaults key, once for all routes
  assert.deepEqual(
    problems(yaml('defaults:', '  limit:', '    initial: 2000', ...ROUTE, ...ROUTE.slice(1).map((l) => l.replace('name: r', 'name: s')))),
    ['x.yaml:3:14: defaults.limit.initial: initial (2000) is outside [min 1, max 1000]'],
  );
  // the built-in initial (32) against the route's max: the route's max is what the file says
  assert.deepEqual(problems(yaml(...ROUTE, '    limit: { max: 10 }')), [
    'x.yaml:5:19: routes.0.limit.max: initial (32) is outside [min 1, max 10]',
  ]);
});

test('overload exitMs >= enterMs, vegas alpha >= beta, retryAfter min > max', () => {
  assert.deepEqual(problems(yaml(...ROUTE, '    overload: { enterMs: 50, exitMs: 50 }')), [
    'x.yaml:5:38: routes.0.overload.exitMs: exitMs (50) must be less than enterMs (50)',
  ]);
  assert.deepEqual(problems(yaml('defaults: { overload: { enterMs: 10 } }', ...ROUTE)), [
    'x.yaml:1:34: defaults.overload.enterMs: exitMs (20) must be less than enterMs (10)',
  ]);
  assert.deepEqual(problems(yaml(...ROUTE, '    limit: { vegas: { alpha: 6 } }')), [
    'x.yaml:5:30: routes.0.limit.vegas.alpha: alpha (6) must be less than beta (6)',
  ]);
  assert.deepEqual(problems(yaml('retryAfter: { minSeconds: 60 }', ...ROUTE)), [
    'x.yaml:1:27: retryAfter.minSeconds: minSeconds (60) is greater than maxSeconds (30)',
  ]);
});

test('server: headersTimeoutMs cannot exceed requestTimeoutMs; maxHeaderBytes is bounded', () => {
  assert.deepEqual(problems(yaml('server: { requestTimeoutMs: 5000 }', ...ROUTE)), [
    'x.yaml:1:29: server.requestTimeoutMs: headersTimeoutMs (10000) is greater than requestTimeoutMs (5000): the headers are part of the request',
  ]);
  assert.deepEqual(problems(yaml('server: { maxHeaderBytes: 100 }', ...ROUTE)), [
    'x.yaml:1:27: server.maxHeaderBytes: must be an integer between 1024 and 1048576',
  ]);
  const ok = parseConfig(yaml('server: { headersTimeoutMs: 500, requestTimeoutMs: 500, maxHeaderBytes: 8192 }', ...ROUTE), 'x.yaml');
  assert.deepEqual(ok.server, { headersTimeoutMs: 500, requestTimeoutMs: 500, keepAliveTimeoutMs: 72000, maxHeaderBytes: 8192, maxHeaderCount: 200, bodyIdleTimeoutMs: 30000, http2: { maxConcurrentStreams: 100, maxHeaderListBytes: 65536, maxExcessResets: 100 } });
});

test('per-route lane overrides are checked after merging', () => {
  // global batch: minShare 0.1; the route caps it below that
  assert.deepEqual(problems(yaml(...ROUTE, '    lanes: { batch: { maxShare: 0.05 } }')), [
    'x.yaml:5:33: routes.0.lanes.batch.maxShare: minShare (0.1) is greater than maxShare (0.05)',
  ]);
  assert.deepEqual(problems(yaml(...ROUTE, '    lanes: { interactive: { minShare: 0.95 } }')), [
    'x.yaml:5:12: routes.0.lanes: minShare of all lanes adds up to 1.05; it must be at most 1',
  ]);
});

// ---------------------------------------------------------------- all at once

test('every problem is reported at once, in file order', () => {
  const text = yaml(
    'listen: { port: -1 }', // 1
    'lanes:', // 2
    '  - name: fast', // 3
    '  - name: fast', // 4
    'classify:', // 5
    '  - { lane: slow, when: { pathPrefix: x } }', // 6
    'retryAfter: { minSeconds: 9, maxSeconds: 3 }', // 7
    'defaults:', // 8
    '  limit: { min: 5, max: 4, algoritm: aimd }', // 9
    'routes:', // 10
    '  - name: a', // 11
    '    match: { pathPrefix: /a, methods: [GETT] }', // 12
    '    upstream: http://127.0.0.1:3000/a', // 13
    '    lanes: { slow: {} }', // 14
    '  - name: a', // 15
    '    match: { pathPrefix: /b }', // 16
    '    upstream: http://127.0.0.1:3000', // 17
    '    limit: { initial: 0 }', // 18
  );
  let error: unknown;
  try {
    parseConfig(text, 'x.yaml');
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(error.message.split('\n'), [
    'x.yaml:1:17: listen.port: must be an integer between 0 and 65535',
    'x.yaml:4:11: lanes.1.name: duplicate lane name "fast" (first defined at lanes.0)',
    'x.yaml:6:13: classify.0.lane: lane "slow" is not defined in lanes (defined: fast)',
    "x.yaml:6:39: classify.0.when.pathPrefix: must start with '/'",
    'x.yaml:7:27: retryAfter.minSeconds: minSeconds (9) is greater than maxSeconds (3)',
    'x.yaml:9:17: defaults.limit.min: min (5) is greater than max (4)',
    'x.yaml:9:28: defaults.limit.algoritm: unknown key (allowed: algorithm, initial, min, max, window, overloadStatuses, aimd, gradient, little, vegas, hysteresis)',
    'x.yaml:12:40: routes.0.match.methods.0: "GETT" is not an HTTP method (e.g. GET, POST, PUT, DELETE)',
    'x.yaml:13:15: routes.0.upstream: must be an origin only (scheme://host[:port]), without a path',
    'x.yaml:14:14: routes.0.lanes.slow: lane "slow" is not defined in lanes (defined: fast)',
    'x.yaml:15:11: routes.1.name: duplicate route name "a" (first defined at routes.0)',
    'x.yaml:18:23: routes.1.limit.initial: must be an integer >= 1',
  ]);
  assert.equal(error.problems.length, 12);
  assert.deepEqual(error.problems[0], { file: 'x.yaml', line: 1, col: 17, path: 'listen.port', message: 'must be an integer between 0 and 65535' });
  assert.equal(formatProblems(error.problems), error.message);
});

// ---------------------------------------------------------------- files

test('loadConfig names the file as given; Config.file is absolute', () => {
  assert.throws(
    () => loadConfig(fixture('invalid.yaml')),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.message.split('\n'), [
        `${fixture('invalid.yaml')}:3:5: routes.0.upstream: is required`,
        `${fixture('invalid.yaml')}:4:26: routes.0.match.pathPrefix: must start with '/'`,
      ]);
      return true;
    },
  );
  assert.equal(parseConfig(yaml(...ROUTE), 'relative/p.yaml').file, resolve('relative/p.yaml'));
  assert.equal(parseConfig(yaml(...ROUTE), '').file, '');
});

test('a file that cannot be read is a ConfigError naming the file (line 0: no position in the text)', () => {
  const missing = fixture('does-not-exist.yaml');
  assert.throws(
    () => loadConfig(missing),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 1);
      assert.ok(err.message.startsWith(`${missing}: cannot read the file: ENOENT`), err.message);
      return true;
    },
  );
});

test('fair queuing keys: lanes[].queue.fair (also per route) and clients.weights, with clear errors', () => {
  const config = parseConfig(
    yaml('lanes: [{ name: a, queue: { fair: false } }]', 'clients: { weights: { gold: 4, slow: 0.5 } }', ...ROUTE, '    lanes: { a: { queue: { fair: true } } }'),
    'x.yaml',
  );
  assert.equal(config.lanes[0]!.queue.fair, false);
  assert.equal(config.routes[0]!.lanes[0]!.queue.fair, true);
  assert.deepEqual(config.clients.weights, { gold: 4, slow: 0.5 });
  const cases: [string, string][] = [
    ['lanes: [{ name: a, queue: { fair: yes } }]', 'x.yaml:1:35: lanes.0.queue.fair: must be true or false'],
    ['clients: { weights: { gold: 0 } }', 'x.yaml:1:29: clients.weights.gold: must be a number between 0.01 and 10000'],
    ['clients: { weights: { gold: "3" } }', 'x.yaml:1:29: clients.weights.gold: must be a number between 0.01 and 10000'],
    ['clients: { weights: [gold] }', 'x.yaml:1:21: clients.weights: must be a mapping of client key to weight'],
  ];
  for (const [line, expected] of cases) {
    assert.deepEqual(problems(yaml(line, ...ROUTE)), [expected], line);
  }
});

test('the shared rate store: defaults, and a clear error for a URL that is not Redis', () => {
  const config = parseConfig(yaml('clients:', '  rate: { perSecond: 10, store: { redis: { url: "redis://10.0.0.5:6380/2" } } }', ...ROUTE), 'x.yaml');
  assert.deepEqual(config.clients.rate, {
    perSecond: 10,
    burst: 10,
    store: { redis: { url: 'redis://10.0.0.5:6380/2', timeoutMs: 20, prefix: 'sluice:rate:' }, instances: 1 },
  });
  const cases: [string, string][] = [
    ['clients: { rate: { perSecond: 1, store: { redis: { url: "http://x:6379" } } } }', 'x.yaml:1:57: clients.rate.store.redis.url: must be a redis:// or rediss:// URL such as redis://127.0.0.1:6379'],
    ['clients: { rate: { perSecond: 1, store: { redis: { url: "redis://x", timeoutMs: 0 } } } }', 'x.yaml:1:81: clients.rate.store.redis.timeoutMs: must be an integer between 1 and 10000'],
    ['clients: { rate: { perSecond: 1, store: { redis: { url: "redis://x" }, instances: 0 } } }', 'x.yaml:1:83: clients.rate.store.instances: must be an integer between 1 and 100000'],
    ['clients: { rate: { perSecond: 1, store: { instances: 2 } } }', 'x.yaml:1:41: clients.rate.store.redis: is required'],
    ['clients: { rateLimitHeaders: 1 }', 'x.yaml:1:30: clients.rateLimitHeaders: must be true or false'],
  ];
  for (const [line, expected] of cases) {
    assert.deepEqual(problems(yaml(line, ...ROUTE)), [expected], line);
  }
});

test('forwarding: top level, then defaults.forwarding, then the route (lists replaced whole); via true is "sluice"', () => {
  const c = parseConfig(
    yaml(
      'forwarding: { trustedProxies: [10.0.0.0/8], via: edge-1, forwarded: true }',
      'defaults: { forwarding: { xForwardedFor: replace }, preserveHost: true }',
      ...ROUTE,
      '    forwarding: { trustedProxies: ["fd00::/8", loopback], via: true }',
      '  - name: s',
      '    match: { pathPrefix: /s }',
      '    upstream: http://127.0.0.1:3000',
      '    preserveHost: false',
    ),
    'x.yaml',
  );
  assert.deepEqual(c.forwarding, { trustedProxies: ['10.0.0.0/8'], xForwardedFor: 'append', xForwardedProto: true, xForwardedHost: true, via: 'edge-1', forwarded: true });
  const [r, s] = c.routes;
  assert.deepEqual(r!.forwarding, { trustedProxies: ['fd00::/8', 'loopback'], xForwardedFor: 'replace', xForwardedProto: true, xForwardedHost: true, via: 'sluice', forwarded: true });
  assert.equal(r!.preserveHost, true);
  assert.deepEqual(s!.forwarding, { trustedProxies: ['10.0.0.0/8'], xForwardedFor: 'replace', xForwardedProto: true, xForwardedHost: true, via: 'edge-1', forwarded: true });
  assert.equal(s!.preserveHost, false);
});

test('forwarding, server and log.access values are checked, each problem at its place', () => {
  assert.deepEqual(problems(yaml('forwarding: { trustedProxies: [10.0.0.0/33, example.com], xForwardedFor: add, via: "a b" }', ...ROUTE)), [
    'x.yaml:1:32: forwarding.trustedProxies.0: "10.0.0.0/33": the prefix length must be an integer from 0 to 32',
    'x.yaml:1:45: forwarding.trustedProxies.1: "example.com" is not an IP address, a CIDR (10.0.0.0/8, fd00::/8) or one of: loopback, private, linklocal',
    'x.yaml:1:74: forwarding.xForwardedFor: must be one of: append, replace, off',
    'x.yaml:1:84: forwarding.via: must be true, false or a pseudonym made of letters, digits and !#$%&\'*+.^_`|~-',
  ]);
  assert.deepEqual(problems(yaml('server: { maxHeaderCount: 0, bodyIdleTimeoutMs: -1 }', 'log: { access: { sample: 2 } }', ...ROUTE)), [
    'x.yaml:1:27: server.maxHeaderCount: must be an integer between 1 and 10000',
    'x.yaml:1:49: server.bodyIdleTimeoutMs: must be an integer >= 0',
    'x.yaml:2:26: log.access.sample: must be a number between 0 and 1',
  ]);
  assert.deepEqual(problems(yaml(...ROUTE, '    forwarding: { trustedProxies: nope }', '    preserveHost: yes')), [
    'x.yaml:5:35: routes.0.forwarding.trustedProxies: must be a list of addresses or CIDRs',
    'x.yaml:6:19: routes.0.preserveHost: must be true or false',
  ]);
});

test('workers: an integer or auto (the cores this process may use), default 1; anything else names the rule', () => {
  assert.equal(parseConfig(yaml('workers: 3', ...ROUTE), 'x.yaml').workers, 3);
  assert.equal(parseConfig(yaml('workers: auto', ...ROUTE), 'x.yaml').workers, availableParallelism());
  for (const bad of ['0', '1.5', '"two"', '2000']) {
    assert.deepEqual(problems(yaml(`workers: ${bad}`, ...ROUTE)), ['x.yaml:1:10: workers: must be an integer between 1 and 1024, or auto'], bad);
  }
});

test('workers: a fixed limit, a client share of it or a queue that would leave a worker with 0 is refused at its key', () => {
  const route = (extra: string) => yaml('workers: 3', ...ROUTE, extra);
  assert.deepEqual(problems(route('    limit: { algorithm: fixed, initial: 2 }')), [
    'x.yaml:6:41: routes.0.limit.initial: a fixed limit of 2 is less than workers (3): it is split exactly across the workers and each needs at least 1 (raise the limit or lower workers)',
  ]);
  // 0.5 of 4 is 2 slots per client: fewer than 3 workers.
  assert.deepEqual(problems(route('    limit: { algorithm: fixed, initial: 4 }')), [
    'x.yaml:6:41: routes.0.limit.initial: clients.maxShare 0.5 of a fixed limit of 4 is 2 slot(s) per client, fewer than workers (3): split exactly, a worker would get none (raise the limit or clients.maxShare, or lower workers)',
  ]);
  assert.doesNotThrow(() => parseConfig(route('    limit: { algorithm: fixed, initial: 6 }'), 'x.yaml'));
  assert.deepEqual(problems(route('    limit: { max: 2, initial: 2 }')), [
    'x.yaml:6:19: routes.0.limit.max: limit.max (2) is less than workers (3): the limit\'s bounds are split across the workers and each needs at least 1 (raise limit.max or lower workers)',
  ]);
  // A global lane's queue is reported once, at the lane; 0 (never queue) is fine.
  assert.deepEqual(problems(yaml('workers: 3', 'lanes:', '  - { name: a, queue: { maxLength: 2 } }', '  - { name: b, queue: { maxLength: 0 } }', ...ROUTE)), [
    'x.yaml:3:36: lanes.0.queue.maxLength: queue.maxLength (2) is less than workers (3): it is split exactly across the workers and a worker would get no queue (use 0 for no queue, or at least 3)',
  ]);
  // With one worker none of this applies.
  assert.doesNotThrow(() => parseConfig(yaml(...ROUTE, '    limit: { algorithm: fixed, initial: 1 }'), 'x.yaml'));
});

test('routes[].websocket: {} takes the defaults; bad values and unknown keys are errors with their line', () => {
  const base = 'routes:\n  - name: chat\n    match: { pathPrefix: / }\n    upstream: http://127.0.0.1:3000\n';
  assert.deepEqual(parseConfig(`${base}    websocket: {}\n`, 'ws.yaml').routes[0]?.websocket, { maxOpen: 1000, idleTimeoutMs: 300_000 });
  assert.deepEqual(problems(`${base}    websocket: { maxOpen: 0, idleTimeoutMs: 1.5, max: 3 }\n`), [
    'x.yaml:5:27: routes.0.websocket.maxOpen: must be an integer between 1 and 1000000',
    'x.yaml:5:45: routes.0.websocket.idleTimeoutMs: must be an integer >= 1',
    'x.yaml:5:50: routes.0.websocket.max: unknown key (allowed: maxOpen, idleTimeoutMs)',
  ]);
  // Route-only: defaults: has no websocket key.
  assert.match(problems(`defaults: { websocket: {} }\n${base}`).join('\n'), /defaults\.websocket: unknown key/);
});

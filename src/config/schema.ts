/**
 * Shapes, ranges and defaults of the YAML policy file (see config.example.yaml).
 *
 * Only single-value rules live here. Rules that relate two values (min <= max,
 * lane names that must exist, ...) need the merged picture and live in
 * checks.ts. Messages are written for the person editing the file: the path
 * and line:col are added by load.ts, so a message only says what is wrong.
 */
import { METHODS } from 'node:http';
import * as z from 'zod';
import { cidrProblem } from './addresses.js';

// ---------------------------------------------------------------- building blocks

/**
 * A field's own message for a wrong value, but `undefined` for a missing one, so
 * that a missing required key falls through to the parse-wide "is required".
 */
const unlessMissing = (message: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? undefined : message;

/** A mapping whose keys are all known: a typo is an error, never silently ignored. */
export function obj<S extends z.ZodRawShape>(shape: S) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown key (allowed: ${allowed})` : undefined),
  });
}

/** An integer in [min, max]. One message for type and range: the reader needs the rule, not the failed step. */
function int(min: number, max?: number) {
  const message =
    max === undefined ? `must be an integer >= ${min}` : `must be an integer between ${min} and ${max}`;
  return z
    .number({ error: unlessMissing(message) })
    .refine((n) => Number.isInteger(n) && n >= min && (max === undefined || n <= max), message);
}

/** A (possibly fractional) number; `range` completes "must be a number ...". */
function num(range: string, ok: (n: number) => boolean) {
  const message = `must be a number ${range}`;
  return z.number({ error: unlessMissing(message) }).refine(ok, message);
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: unlessMissing(`must be one of: ${values.join(', ')}`) });
}

const bool = () => z.boolean({ error: unlessMissing('must be true or false') });
const text = () => z.string({ error: unlessMissing('must be a string') }).min(1, 'must not be empty');

/** Lane and route names end up as metric labels and in logs: keep them plain. */
const name = () => text().regex(/^[A-Za-z0-9_.-]+$/, "must contain only letters, digits, '.', '_' and '-'");

// RFC 9110 token: what an HTTP header name or method may be made of.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Header names are compared case-insensitively on the wire, so they are stored lower-cased. */
const headerName = () =>
  text()
    .regex(TOKEN, 'must be a valid HTTP header name')
    .transform((s) => s.toLowerCase());

/** Node's HTTP parser only accepts the methods in http.METHODS; any other would never match. */
const method = () =>
  text()
    .transform((s) => s.toUpperCase())
    .refine((m) => METHODS.includes(m), {
      error: (issue) => `${JSON.stringify(issue.input)} is not an HTTP method (e.g. GET, POST, PUT, DELETE)`,
    });

const methods = () => z.array(method()).min(1, 'must list at least one method');

const pathPrefix = () => text().refine((p) => p.startsWith('/'), "must start with '/'");

/** Compared with the request's Host header minus its port, so a port here could never match. */
const host = () =>
  text()
    .transform((s) => s.toLowerCase())
    .refine(
      (h) => /^([a-z0-9_-]+\.)*[a-z0-9_-]+\.?$/.test(h) || /^\[[0-9a-f:.]+\]$/.test(h),
      'must be a host name without scheme or port (e.g. shop.example.com)',
    );

/** The proxy adds the request's path and query to this, so it must be a bare origin. */
const upstream = () =>
  text().transform((s, ctx) => {
    const fail = (message: string) => {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    };
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      return fail('must be an absolute URL such as http://127.0.0.1:3000');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail('must be an http:// or https:// URL');
    if (url.username !== '' || url.password !== '') return fail('must not contain credentials');
    if (url.pathname !== '/') return fail('must be an origin only (scheme://host[:port]), without a path');
    if (url.search !== '' || url.hash !== '' || s.includes('?') || s.includes('#'))
      return fail('must not contain a query or fragment');
    return url.origin;
  });

/** Where the shared rate store lives: a Redis URL, with credentials and a database number if any. */
const redisUrl = () =>
  text().refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be a redis:// or rediss:// URL such as redis://127.0.0.1:6379');

const MODES = ['enforce', 'shadow'] as const;

/** A trusted proxy: an address, a CIDR or a named range (config/addresses.ts). */
const trustedProxy = () =>
  text().superRefine((s, ctx) => {
    const problem = cidrProblem(s);
    if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
  });

/** Via's received-by: true (the pseudonym "sluice"), false (no Via), or a pseudonym (an RFC 9110 token). */
const via = () =>
  z
    .union([z.boolean(), z.string()], { error: unlessMissing('must be true, false or a pseudonym (e.g. edge-1)') })
    .refine((v) => typeof v === 'boolean' || TOKEN.test(v), 'must be true, false or a pseudonym made of letters, digits and !#$%&\'*+.^_`|~-');

/**
 * `forwarding:` with its defaults: the top level. `defaults.forwarding` and a
 * route's `forwarding` are the same keys without defaults (overrides).
 */
export const forwardingShape = {
  trustedProxies: z.array(trustedProxy(), { error: unlessMissing('must be a list of addresses or CIDRs') }).default(() => []),
  xForwardedFor: oneOf(['append', 'replace', 'off']).default('append'),
  xForwardedProto: bool().default(true),
  xForwardedHost: bool().default(true),
  via: via().default(true),
  forwarded: bool().default(false),
};
const forwardingSchema = obj(forwardingShape);
export type Forwarding = z.output<typeof forwardingSchema>;

// ---------------------------------------------------------------- route policy

/**
 * Everything a route may set for itself. With its defaults this is the
 * `defaults:` section; without them (see `withoutDefaults`) it is the optional
 * part of a route, so that a route carries only what it wrote and the rest
 * comes from `defaults:`.
 */
export const policyShape = {
  // No default here: a route without a mode inherits the top-level `mode`.
  mode: oneOf(MODES).optional(),
  limit: obj({
    algorithm: oneOf(['little', 'fixed', 'aimd', 'gradient', 'vegas']).default('little'),
    initial: int(1).default(32),
    min: int(1).default(1),
    max: int(1).default(1000),
    window: obj({
      minSamples: int(1).default(10),
      windowMs: int(1).default(100),
      percentile: num('> 0 and < 1', (n) => n > 0 && n < 1).default(0.5),
    }).prefault({}),
    overloadStatuses: z.array(int(100, 599)).default(() => [429, 503, 504]),
    aimd: obj({
      backoff: num('> 0 and < 1', (n) => n > 0 && n < 1).default(0.9),
      increase: num('> 0', (n) => n > 0).default(1),
    }).prefault({}),
    gradient: obj({
      tolerance: num('>= 1', (n) => n >= 1).default(1),
      longWindow: int(1).default(600),
      smoothing: num('> 0 and <= 1', (n) => n > 0 && n <= 1).default(0.2),
      queueAllowance: z
        .union([z.literal('sqrt'), z.number()], { error: unlessMissing('must be "sqrt" or a number >= 0') })
        .refine((v) => v === 'sqrt' || v >= 0, 'must be "sqrt" or a number >= 0')
        .default('sqrt'),
    }).prefault({}),
    little: obj({
      queue: num('> 0 and <= 2', (n) => n > 0 && n <= 2).default(0.3),
      growth: num('> 0 and <= 1', (n) => n > 0 && n <= 1).default(1),
      probeEvery: int(2).default(30),
    }).prefault({}),
    vegas: obj({
      alpha: num('> 0', (n) => n > 0).default(3),
      beta: num('> 0', (n) => n > 0).default(6),
    }).prefault({}),
    hysteresis: obj({
      increaseAfterWindows: int(1).default(2),
      deadBand: num('>= 0 and < 1', (n) => n >= 0 && n < 1).default(0.05),
    }).prefault({}),
  }).prefault({}),
  overload: obj({
    signal: oneOf(['queueWaitP90']).default('queueWaitP90'),
    enterMs: int(1).default(100),
    exitMs: int(0).default(20),
    cooldownMs: int(0).default(5000),
  }).prefault({}),
  timeouts: obj({
    connectMs: int(1).default(2000),
    headersMs: int(1).default(30000),
    bodyMs: int(1).default(30000),
  }).prefault({}),
  // Absent = no deadlines. `header` has no schema default because it depends on
  // `format` (x-request-timeout-ms or grpc-timeout); load.ts fills it in.
  deadline: obj({
    header: headerName().optional(),
    format: oneOf(['ms', 'grpc-timeout']).default('ms'),
  }).optional(),
  // No defaults here: what a route does not say comes from the top-level `forwarding:`.
  forwarding: obj(withoutDefaults(forwardingShape)).optional(),
  preserveHost: bool().default(false),
  circuitBreaker: obj({
    enabled: bool().default(true),
    consecutiveFailures: int(1).default(5),
    failureRatio: num('> 0 and <= 1', (n) => n > 0 && n <= 1).default(0.5),
    minRequests: int(1).default(20),
    windowMs: int(1).default(10000),
    openMs: int(1).default(5000),
    maxOpenMs: int(1).default(60000),
    halfOpenRatio: num('> 0 and <= 1', (n) => n > 0 && n <= 1).default(0.05),
    closeAfterSuccesses: int(1).default(5),
  }).prefault({}),
};

export const POLICY_KEYS = Object.keys(policyShape) as (keyof typeof policyShape)[];

export const policySchema = obj(policyShape);
export type Policy = z.output<typeof policySchema>;

// ---------------------------------------------------------------- optional twins

/** Arrays replace rather than merge, so they stay whole. */
export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

type WithoutDefaults<S extends z.ZodRawShape> = {
  [K in keyof S]: z.ZodOptional<z.ZodType<DeepPartial<z.output<S[K]>>>>;
};

/**
 * The same shape with every key optional and every default removed, at every
 * depth. Used where a value is an override: a default there would overwrite
 * what the layer below (defaults:, the global lane) said.
 * Mappings are rebuilt from their shape; none of them carries its own refinement.
 */
export function withoutDefaults<S extends z.ZodRawShape>(shape: S): WithoutDefaults<S> {
  const strip = (schema: z.ZodType): z.ZodType => {
    if (schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault || schema instanceof z.ZodOptional)
      return strip(schema.unwrap() as z.ZodType);
    if (schema instanceof z.ZodObject) return obj(withoutDefaults(schema.shape));
    return schema;
  };
  return Object.fromEntries(
    Object.entries(shape).map(([key, schema]) => [key, strip(schema as z.ZodType).optional()]),
  ) as WithoutDefaults<S>;
}

// ---------------------------------------------------------------- lanes

const laneShape = {
  maxShare: num('> 0 and <= 1', (n) => n > 0 && n <= 1).default(1),
  minShare: num('between 0 and 1', (n) => n >= 0 && n <= 1).default(0),
  queue: obj({
    maxLength: int(0).default(100),
    maxWaitMs: int(1).default(1000),
    fair: bool().default(true),
  }).prefault({}),
};

export const laneSchema = obj({ name: name(), ...laneShape });
export type Lane = z.output<typeof laneSchema>;

/** A route's `lanes.<name>`: overrides of a global lane, without its name. */
export const laneOverrideSchema = obj(withoutDefaults(laneShape));

// ---------------------------------------------------------------- classify, clients

export const ruleSchema = obj({
  lane: text(),
  when: obj({
    header: obj({
      name: headerName(),
      value: z.string({ error: unlessMissing('must be a string (quote numbers: "1")') }),
    }).optional(),
    pathPrefix: pathPrefix().optional(),
    methods: methods().optional(),
    clientKeys: z.array(text()).min(1, 'must list at least one client key').optional(),
  }).refine(
    (when) => Object.keys(when).length > 0,
    'needs at least one condition (header, pathPrefix, methods, clientKeys)',
  ),
});
export type Rule = z.output<typeof ruleSchema>;

const clientsSchema = obj({
  key: obj({
    header: headerName().optional(),
    ip: z.literal(true, { error: unlessMissing('must be true') }).optional(),
  })
    .refine((k) => (k.header === undefined) !== (k.ip === undefined), 'needs exactly one of: header, ip')
    .prefault({ ip: true }),
  maxShare: num('> 0 and <= 1', (n) => n > 0 && n <= 1).default(0.5),
  // A bucket that holds less than one token would never admit anything, hence burst >= 1.
  rate: obj({
    perSecond: num('> 0', (n) => n > 0),
    burst: num('>= 1', (n) => n >= 1).optional(),
    store: obj({
      redis: obj({
        url: redisUrl(),
        // Past this a request is decided by the local bucket; the p99 of a loopback round trip is well under 1 ms.
        timeoutMs: int(1, 10_000).default(20),
        prefix: z.string({ error: unlessMissing('must be a string') }).default('sluice:rate:'),
      }),
      instances: int(1, 100_000).default(1),
    }).optional(),
  }).optional(),
  rateLimitHeaders: bool().default(false),
  // A client's share of its turns in a fair lane, relative to weight 1 (every unlisted client).
  // Turns are whole requests, so weights below 1 scale everyone else's turn up (at most 100x).
  weights: z
    .record(text(), num('between 0.01 and 10000', (n) => n >= 0.01 && n <= 10_000), { error: unlessMissing('must be a mapping of client key to weight') })
    .default(() => ({})),
});

// ---------------------------------------------------------------- routes, top level

export const routeSchema = obj({
  name: name(),
  match: obj({
    pathPrefix: pathPrefix(),
    host: host().optional(),
    methods: methods().optional(),
  }),
  upstream: upstream(),
  lanes: z.record(z.string(), laneOverrideSchema).optional(),
  // Route-only (not in defaults:): how this upstream is spoken to, and whether it proxies WebSocket upgrades (proxy/websocket.ts).
  http2: bool().default(false),
  websocket: obj({
    maxOpen: int(1, 1_000_000).default(1000),
    idleTimeoutMs: int(1).default(300_000),
  }).optional(),
  ...withoutDefaults(policyShape),
});
export type Route = z.output<typeof routeSchema>;

/**
 * listen.tls: the files are read and checked after the schema (config/tls-files.ts),
 * so a missing or mismatched file is reported at its key like any other problem.
 */
const tlsSchema = obj({
  certFile: text(),
  keyFile: text(),
  caFile: text().optional(),
  minVersion: oneOf(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
});

const listen = (host: string, port: number) =>
  obj({
    host: text().default(host),
    port: int(0, 65535).default(port),
    tls: tlsSchema.optional(),
    http2: bool().default(false),
  }).prefault({});

/**
 * The admin listener: its address, and who may change things through it
 * (observability/admin-guard.ts). A token is a shared secret compared in
 * constant time; shorter than 16 characters it would be guessable.
 */
const adminSchema = obj({
  host: text().default('127.0.0.1'),
  port: int(0, 65535).default(9901),
  // Names (besides the listener's own addresses and localhost) a browser may use in Host for the live
  // page and the POST endpoints: a defence against DNS rebinding. Ports are not compared.
  allowedHosts: z.array(host(), { error: unlessMissing('must be a list of host names') }).default(() => []),
  token: z
    .string({ error: unlessMissing('must be a string') })
    .regex(/^[\x21-\x7e]{16,}$/, 'must be at least 16 printable characters without spaces (e.g. openssl rand -hex 32)')
    .optional(),
}).prefault({});
/** Processes serving the proxy port: a count, or `auto` (one per available core, resolved at load). */
export const MAX_WORKERS = 1024;
const workersMessage = `must be an integer between 1 and ${MAX_WORKERS}, or auto`;
const workers = () =>
  z
    .union([z.number(), z.literal('auto')], { error: unlessMissing(workersMessage) })
    .refine((v) => v === 'auto' || (Number.isInteger(v) && v >= 1 && v <= MAX_WORKERS), workersMessage);

export const configSchema = obj({
  mode: oneOf(MODES).default('enforce'),
  workers: workers().default(1),
  listen: listen('0.0.0.0', 8080),
  admin: adminSchema,
  server: obj({
    headersTimeoutMs: int(1).default(10_000),
    requestTimeoutMs: int(1).default(300_000),
    keepAliveTimeoutMs: int(1).default(72_000),
    maxHeaderBytes: int(1024, 1_048_576).default(16_384),
    maxHeaderCount: int(1, 10_000).default(200),
    bodyIdleTimeoutMs: int(0).default(30_000),
    http2: obj({
      maxConcurrentStreams: int(1, 2_147_483_647).default(100),
      maxHeaderListBytes: int(1024, 16_777_215).default(65_536),
      maxExcessResets: int(1, 1_000_000).default(100),
    }).prefault({}),
  }).prefault({}),
  log: obj({
    level: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    pretty: bool().default(false),
    access: obj({
      enabled: bool().default(false),
      sample: num('between 0 and 1', (n) => n >= 0 && n <= 1).default(1),
    }).prefault({}),
  }).prefault({}),
  forwarding: forwardingSchema.prefault({}),
  lanes: z
    .array(laneSchema)
    .min(1, 'needs at least one lane')
    .prefault(() => [
      { name: 'interactive', queue: { maxLength: 100, maxWaitMs: 1000 } },
      { name: 'batch', maxShare: 0.5, minShare: 0.1, queue: { maxLength: 500, maxWaitMs: 5000 } },
    ]),
  classify: z.array(ruleSchema).default(() => []),
  clients: clientsSchema.prefault({}),
  retryAfter: obj({
    minSeconds: int(1).default(1),
    maxSeconds: int(1).default(30),
    jitter: num('between 0 and 1', (n) => n >= 0 && n <= 1).default(0.2),
  }).prefault({}),
  readiness: obj({
    maxBacklogSeconds: num('> 0', (n) => n > 0).default(10),
  }).prefault({}),
  shutdown: obj({
    readinessGraceMs: int(0).default(5000),
    drainTimeoutMs: int(1).default(30000),
  }).prefault({}),
  defaults: policySchema.prefault({}),
  routes: z
    .array(routeSchema, {
      error: (issue) => (issue.input === undefined ? 'is required (a list of at least one route)' : undefined),
    })
    .min(1, 'needs at least one route'),
});
export type RawConfig = z.output<typeof configSchema>;

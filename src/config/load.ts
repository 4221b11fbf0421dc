/**
 * YAML policy file → validated, defaulted, deeply frozen `Config`.
 *
 * Pipeline: YAML syntax → schema (shapes, ranges, defaults; schema.ts) →
 * cross-field checks (checks.ts) → merge `defaults:` and lanes into each route
 * → freeze. Every problem found is reported at once, each with file:line:col
 * and a dotted path, because fixing a config one error per restart is misery.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type YAMLError } from 'yaml';
import * as z from 'zod';
import { crossChecks, type Issue, type Merged, type Parts, type Path, type Workers } from './checks.js';
import {
  configSchema,
  laneSchema,
  POLICY_KEYS,
  policySchema,
  routeSchema,
  ruleSchema,
  type DeepPartial,
  type Forwarding,
  type Lane,
  type Policy,
  type RawConfig,
  type Route,
} from './schema.js';
import { tlsConfig } from './tls-files.js';
import type { Config, ConfigProblem, ForwardingConfig, RouteConfig, TlsConfig } from './types.js';

export class ConfigError extends Error {
  readonly problems: ConfigProblem[];

  constructor(problems: ConfigProblem[]) {
    super(formatProblems(problems));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * One problem per line: `FILE:LINE:COL: path.to.key: message` (the path is
 * left out when empty; line 0 is the whole file, which has no position:
 * `FILE: message`).
 */
export function formatProblems(problems: readonly ConfigProblem[]): string {
  return problems
    .map((p) => `${p.file}${p.line === 0 ? '' : `:${p.line}:${p.col}`}: ${p.path === '' ? '' : `${p.path}: `}${p.message}`)
    .join('\n');
}

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const message = `cannot read the file: ${err instanceof Error ? err.message : String(err)}`;
    throw new ConfigError([{ file, line: 0, col: 0, path: '', message }]);
  }
  return parseConfig(text, file);
}

/**
 * @param file  shown in problems as given; `Config.file` is its absolute form
 * @throws ConfigError listing every problem found
 */
export function parseConfig(text: string, file: string): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true });
  const problem = (line: number, col: number, path: string, message: string): ConfigProblem => ({
    file,
    line,
    col,
    path,
    message,
  });

  // A broken document has no reliable structure to validate: report its syntax errors alone.
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => problem(...yamlErrorPosition(e), '', yamlErrorMessage(e))));
  }
  if (!isMap(doc.contents)) {
    const { line, col } = lineCounter.linePos(locate(doc, []));
    const empty = doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null);
    const what = empty ? 'empty' : 'not a mapping';
    throw new ConfigError([
      problem(line, col, '', `the file is ${what}; it must be a mapping of settings with at least \`routes\``),
    ]);
  }

  let raw: Record<string, unknown>;
  try {
    raw = doc.toJS() as Record<string, unknown>;
  } catch (err) {
    // e.g. an alias bomb (too many alias expansions)
    throw new ConfigError([problem(1, 1, '', err instanceof Error ? err.message : String(err))]);
  }

  const whole = configSchema.safeParse(raw, { error: plainMessage });
  const issues: Issue[] = whole.success ? [] : whole.error.issues.flatMap(fromZod);
  const parts = whole.success ? partsOf(whole.data) : salvage(raw);
  const merged = parts.routes.map((route) => merge(route, parts.defaults, parts.lanes));
  // Where the schema rejected a value, the checks saw the layer below instead; a
  // cross-field message there would be about a value the file does not contain.
  const rejected = new Set(issues.map((issue) => issue.path.join('.')));
  issues.push(
    ...crossChecks(parts, merged, (path) => has(raw, path)).filter((issue) => !rejected.has(issue.path.join('.'))),
  );
  // The certificate files are read only once their keys are valid.
  const rawTls = whole.success ? whole.data.listen.tls : undefined;
  const tls = rawTls === undefined ? undefined : tlsConfig(rawTls, file);
  if (tls !== undefined) issues.push(...tls.issues);

  if (issues.length > 0 || !whole.success) {
    const seen = new Set<string>();
    const problems: ConfigProblem[] = [];
    for (const { path, message, atKey } of issues) {
      const { line, col } = lineCounter.linePos(locate(doc, path, atKey));
      const p = problem(line, col, path.join('.'), message);
      // A problem in `defaults:` or a global lane surfaces once per route: say it once.
      const key = formatProblems([p]);
      if (!seen.has(key)) {
        seen.add(key);
        problems.push(p);
      }
    }
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    throw new ConfigError(problems);
  }

  return deepFreeze(build(whole.data, merged, file, tls?.tls));
}

// ---------------------------------------------------------------- where in the file

/**
 * The offset in the file that `path` points at: the value node, or its key with
 * `atKey`. A path the file does not contain (a missing required key, a value
 * that came from a default) stops at its nearest ancestor that is there, i.e.
 * the mapping that should have contained it.
 */
function locate(doc: Document, path: Path, atKey = false): number {
  let node: unknown = doc.contents;
  let offset = startOf(node) ?? 0;
  for (const [i, segment] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === String(segment));
      if (!pair) break;
      // An empty value (`key:`) has no text of its own, so its key stands in for it.
      const value = isEmpty(pair.value) ? undefined : startOf(pair.value);
      offset = (atKey && i === path.length - 1) || value === undefined ? (startOf(pair.key) ?? offset) : value;
      node = pair.value;
    } else if (isSeq(node)) {
      const item: unknown = node.items[Number(segment)];
      if (item === undefined) break;
      offset = startOf(item) ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return offset;
}

function startOf(node: unknown): number | undefined {
  return (node as { range?: [number, number, number] } | null)?.range?.[0];
}

function isEmpty(node: unknown): boolean {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return !range || range[1] === range[0];
}

function yamlErrorPosition(e: YAMLError): [number, number] {
  const pos = e.linePos?.[0];
  return pos ? [pos.line, pos.col] : [0, 0];
}

/** yaml's pretty message repeats the position and adds a source excerpt; keep the first sentence. */
function yamlErrorMessage(e: YAMLError): string {
  return (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '');
}

// ---------------------------------------------------------------- schema issues

/** The parse-wide fallback message for issues a field did not word itself. */
function plainMessage(issue: z.core.$ZodRawIssue): string | undefined {
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return 'is required';
      return `must be ${EXPECTED[issue.expected] ?? issue.expected}, not ${describe(issue.input)}`;
    case 'invalid_value':
      return `must be one of: ${issue.values.map(String).join(', ')}`;
    case 'too_small':
      return issue.origin === 'array' ? `must have at least ${String(issue.minimum)} item(s)` : undefined;
    default:
      return undefined;
  }
}

const EXPECTED: Record<string, string> = {
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
};

function describe(value: unknown): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return String(value);
}

/** One issue per unknown key, pointing at the key itself. */
function fromZod(issue: z.core.$ZodIssue): Issue[] {
  const path = issue.path.map((p) => (typeof p === 'number' ? p : String(p)));
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ path: [...path, key], message: issue.message, atKey: true }));
  }
  return [{ path, message: issue.message }];
}

/**
 * When the whole file fails the schema, the cross-field checks still run on
 * every part that is valid: a rule or route, and inside them any mapping, is
 * kept with just its valid keys. Where a key is left out the merge supplies
 * the layer below (`defaults:`, built-in defaults), which is consistent by
 * itself. Lanes stay all or nothing: a partial list would make valid lane
 * names look undefined.
 */
function salvage(raw: Record<string, unknown>): Parts {
  const items = (schema: z.ZodType, value: unknown) =>
    Array.isArray(value) ? value.map((item) => validPart(schema, item)) : [];
  const lanes = configSchema.shape.lanes.safeParse(raw['lanes']);
  const workers = configSchema.shape.workers.safeParse(raw['workers']);
  const clients = unwrap(configSchema.shape.clients) as z.ZodObject<{ maxShare: z.ZodType<number> }>;
  const maxShare = clients.shape.maxShare.safeParse(isPlainObject(raw['clients']) ? raw['clients']['maxShare'] : undefined);
  return {
    workers: workers.success ? resolveWorkers(workers.data) : undefined,
    clientMaxShare: maxShare.success ? maxShare.data : undefined,
    lanes: lanes.success ? lanes.data : undefined,
    classify: items(ruleSchema, raw['classify']) as Parts['classify'],
    retryAfter: configSchema.shape.retryAfter.parse(validPart(configSchema.shape.retryAfter, raw['retryAfter']) ?? {}),
    server: configSchema.shape.server.parse(validPart(configSchema.shape.server, raw['server']) ?? {}),
    defaults: policySchema.parse(validPart(policySchema, raw['defaults']) ?? {}),
    routes: items(routeSchema, raw['routes']) as Parts['routes'],
  };
}

/** `value` if it passes `schema`; else, for a mapping, the keys that pass (recursively); else undefined. */
function validPart(schema: z.ZodType, value: unknown): unknown {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  if (!isPlainObject(value)) return undefined;
  const inner = unwrap(schema);
  if (inner instanceof z.ZodObject) {
    return Object.fromEntries(
      Object.entries(inner.shape as z.ZodRawShape).flatMap(([key, field]) => {
        const part = validPart(field as z.ZodType, value[key]);
        return part === undefined ? [] : [[key, part]];
      }),
    );
  }
  if (inner instanceof z.ZodRecord) {
    // A route's lane overrides: keep every lane name, so an unknown one is
    // still reported next to a bad value inside it.
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, validPart(inner.valueType as z.ZodType, item) ?? {}]),
    );
  }
  return undefined;
}

function unwrap(schema: z.ZodType): z.ZodType {
  return schema instanceof z.ZodOptional || schema instanceof z.ZodDefault || schema instanceof z.ZodPrefault
    ? unwrap(schema.unwrap() as z.ZodType)
    : schema;
}

function has(value: unknown, path: Path): boolean {
  let node = value;
  for (const segment of path) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, segment)) return false;
    node = (node as Record<string | number, unknown>)[segment];
  }
  return true;
}

// ---------------------------------------------------------------- merging and building

/** `workers: auto` is one worker per core this process may use. */
function resolveWorkers(value: number | 'auto'): Workers {
  return value === 'auto' ? { count: availableParallelism(), auto: true } : { count: value, auto: false };
}

function partsOf(data: RawConfig): Parts {
  return { ...data, workers: resolveWorkers(data.workers), clientMaxShare: data.clients.maxShare };
}

function merge(
  route: DeepPartial<Route> | undefined,
  defaults: Policy | undefined,
  lanes: readonly Lane[] | undefined,
): Merged {
  if (!route) return { policy: undefined, lanes: undefined };
  const own = Object.fromEntries(POLICY_KEYS.filter((k) => route[k] !== undefined).map((k) => [k, route[k]]));
  return {
    // Parsing the merge again fills what neither layer set (e.g. deadline.format
    // when only the route has a deadline). Both layers hold only values that
    // passed the schema, so this cannot fail.
    policy: defaults && policySchema.parse(deepMerge(defaults, own)),
    lanes: lanes?.map((lane) => laneSchema.parse(deepMerge(lane, route.lanes?.[lane.name]))),
  };
}

/** Mappings merge key by key; lists and scalars are replaced; `undefined` leaves the base alone. */
function deepMerge<T>(base: T, over: DeepPartial<T> | undefined): T {
  if (over === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(over)) return over as T;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    out[key] = deepMerge(out[key], value as never);
  }
  return out as T;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const DEADLINE_HEADER = { ms: 'x-request-timeout-ms', 'grpc-timeout': 'grpc-timeout' } as const;

function build(data: RawConfig, merged: readonly Merged[], file: string, tls: TlsConfig | undefined): Config {
  const { lanes, clients } = data;
  const routes = data.routes.map((route, i): RouteConfig => {
    const { policy, lanes: routeLanes } = merged[i]!;
    const { mode, deadline, forwarding, ...rest } = policy!;
    return {
      name: route.name,
      match: route.match,
      upstream: route.upstream,
      http2: route.http2,
      mode: mode ?? data.mode,
      ...rest,
      forwarding: forwardingConfig(deepMerge<Forwarding>(data.forwarding, forwarding as DeepPartial<Forwarding> | undefined)),
      lanes: routeLanes!,
      ...(route.websocket && { websocket: route.websocket }),
      ...(deadline && {
        deadline: { header: deadline.header ?? DEADLINE_HEADER[deadline.format], format: deadline.format },
      }),
    };
  });
  return {
    file: file === '' ? '' : resolve(file),
    mode: data.mode,
    workers: resolveWorkers(data.workers).count,
    listen: { host: data.listen.host, port: data.listen.port, http2: data.listen.http2, ...(tls && { tls }) },
    admin: data.admin,
    server: data.server,
    log: data.log,
    forwarding: forwardingConfig(data.forwarding),
    lanes,
    classify: data.classify.map((rule) => ({
      lane: rule.lane,
      laneIndex: lanes.findIndex((l) => l.name === rule.lane),
      when: rule.when,
    })),
    clients: {
      key: clients.key.header !== undefined ? { header: clients.key.header } : { ip: true },
      maxShare: clients.maxShare,
      weights: { ...clients.weights },
      rateLimitHeaders: clients.rateLimitHeaders,
      ...(clients.rate && {
        rate: {
          perSecond: clients.rate.perSecond,
          burst: clients.rate.burst ?? Math.max(1, clients.rate.perSecond),
          ...(clients.rate.store && { store: clients.rate.store }),
        },
      }),
    },
    retryAfter: data.retryAfter,
    readiness: data.readiness,
    shutdown: data.shutdown,
    routes,
  };
}

function forwardingConfig(f: Forwarding): ForwardingConfig {
  return { ...f, trustedProxies: [...f.trustedProxies], via: f.via === true ? 'sluice' : f.via };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

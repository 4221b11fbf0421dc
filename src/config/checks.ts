/**
 * Rules that relate two or more values, run after the schema. They also run
 * when the schema failed, on whatever passed it (see `salvage` in load.ts),
 * so a typo in one place does not hide a problem somewhere else.
 */
import type { DeepPartial, Lane, Policy, Route, Rule } from './schema.js';

export type Path = readonly (string | number)[];

/** A problem before it is given a place in the file. `atKey`: point at the key, not its value. */
export interface Issue {
  readonly path: Path;
  readonly message: string;
  readonly atKey?: boolean;
}

/** `workers` as loaded: the count (auto resolved) and whether the file said auto. */
export interface Workers {
  readonly count: number;
  readonly auto: boolean;
}

export interface Parts {
  readonly workers: Workers | undefined;
  /** clients.maxShare, when valid. */
  readonly clientMaxShare: number | undefined;
  readonly lanes: readonly Lane[] | undefined;
  readonly classify: readonly (DeepPartial<Rule> | undefined)[];
  readonly retryAfter: { readonly minSeconds: number; readonly maxSeconds: number } | undefined;
  readonly server: { readonly headersTimeoutMs: number; readonly requestTimeoutMs: number } | undefined;
  readonly defaults: Policy | undefined;
  /** A rule or route that failed the schema holds only its valid keys (at any depth); `undefined` if none. */
  readonly routes: readonly (DeepPartial<Route> | undefined)[];
}

/** What a route ends up with: `defaults` and the route merged, lanes with the route's overrides. */
export interface Merged {
  readonly policy: Policy | undefined;
  readonly lanes: readonly Lane[] | undefined;
}

/** What every check needs: where to report, and whom to blame for a merged value. */
interface Ctx {
  readonly report: (path: Path, message: string, atKey?: boolean) => void;
  /** The first of `paths` the file actually sets (the route's own key wins over `defaults:`, as in the merge), else `fallback`. */
  readonly blame: (paths: Path[], fallback: Path) => Path;
  readonly isSet: (path: Path) => boolean;
  readonly laneNames: readonly string[] | undefined;
  readonly undefinedLane: (lane: string) => string;
  readonly workers: Workers | undefined;
  readonly clientMaxShare: number | undefined;
}

/**
 * @param merged  the merged policy and lanes of each route (same order as `parts.routes`)
 * @param isSet   whether the file itself has a value at `path` (as opposed to a default)
 */
export function crossChecks(parts: Parts, merged: readonly Merged[], isSet: (path: Path) => boolean): Issue[] {
  const issues: Issue[] = [];
  const laneNames = parts.lanes?.map((l) => l.name);
  const ctx: Ctx = {
    report: (path, message, atKey = false) => issues.push({ path, message, atKey }),
    blame: (paths, fallback) => paths.find(isSet) ?? fallback,
    isSet,
    laneNames,
    undefinedLane: (lane) => `lane "${lane}" is not defined in lanes (defined: ${[...new Set(laneNames)].join(', ')})`,
    workers: parts.workers,
    clientMaxShare: parts.clientMaxShare,
  };
  topLevelChecks(parts, ctx);
  duplicates(parts.routes.map((r) => r?.name), 'route', ['routes'], ctx.report);
  parts.routes.forEach((route, r) => {
    if (route) routeChecks(route, r, merged[r], parts.lanes, ctx);
  });
  return issues;
}

/** Lanes, classify rules, retryAfter and server: each against itself and the lanes. */
function topLevelChecks(parts: Parts, ctx: Ctx): void {
  const { lanes, retryAfter, server } = parts;
  const { report, blame, laneNames } = ctx;
  if (lanes) {
    duplicates(lanes.map((l) => l.name), 'lane', ['lanes'], report);
    checkShares(lanes, (i, keys) => blame(keys.map((k) => ['lanes', i, k]), ['lanes', i]), ['lanes'], report);
  }
  if (laneNames) {
    parts.classify.forEach((rule, i) => {
      const lane = rule?.lane;
      if (lane !== undefined && !laneNames.includes(lane)) report(['classify', i, 'lane'], ctx.undefinedLane(lane));
    });
  }
  if (retryAfter && retryAfter.minSeconds > retryAfter.maxSeconds) {
    const at = blame([['retryAfter', 'minSeconds'], ['retryAfter', 'maxSeconds']], ['retryAfter']);
    report(at, `minSeconds (${retryAfter.minSeconds}) is greater than maxSeconds (${retryAfter.maxSeconds})`);
  }
  if (server && server.headersTimeoutMs > server.requestTimeoutMs) {
    const at = blame([['server', 'headersTimeoutMs'], ['server', 'requestTimeoutMs']], ['server']);
    report(
      at,
      `headersTimeoutMs (${server.headersTimeoutMs}) is greater than requestTimeoutMs (${server.requestTimeoutMs}): the headers are part of the request`,
    );
  }
}

/** One route: its lane overrides, its merged policy, its merged lanes' shares. */
function routeChecks(route: DeepPartial<Route>, r: number, merged: Merged | undefined, lanes: readonly Lane[] | undefined, ctx: Ctx): void {
  const here: Path = ['routes', r];
  const { laneNames, blame, isSet, report } = ctx;
  if (laneNames) {
    for (const lane of Object.keys(route.lanes ?? {})) {
      if (!laneNames.includes(lane)) report([...here, 'lanes', lane], ctx.undefinedLane(lane), true);
    }
  }
  const policy = merged?.policy;
  const at = (...keys: Path[]) => blame([...keys.map((k) => [...here, ...k]), ...keys.map((k) => ['defaults', ...k])], here);
  if (policy) policyChecks(policy, at, report);
  const routeLanes = merged?.lanes;
  // Same messages as the global check, so an unchanged global lane is reported once (see dedupe in load.ts).
  const laneAt = (i: number, keys: readonly (string | Path)[]) => {
    const override: Path = [...here, 'lanes', routeLanes![i]!.name];
    const paths = keys.map((k) => (typeof k === 'string' ? [k] : k));
    return blame([...paths.map((k) => [...override, ...k]), ...paths.map((k) => ['lanes', i, ...k])], override);
  };
  if (routeLanes && lanes) {
    const overridesMinShare = routeLanes.some((l) => isSet([...here, 'lanes', l.name, 'minShare']));
    checkShares(routeLanes, laneAt, overridesMinShare ? [...here, 'lanes'] : ['lanes'], report);
  }
  const workers = ctx.workers;
  if (workers && workers.count > 1) {
    splitChecks({ policy, lanes: routeLanes }, workers, ctx.clientMaxShare, { at, laneAt }, report);
    const maxOpen = route.websocket?.maxOpen ?? (route.websocket ? 1000 : undefined);
    if (maxOpen !== undefined && maxOpen < workers.count) {
      const key: Path = isSet([...here, 'websocket', 'maxOpen']) ? [...here, 'websocket', 'maxOpen'] : [...here, 'websocket'];
      report(key, `websocket.maxOpen (${maxOpen}) is less than ${workersPhrase(workers)}: it is split exactly across the workers and a worker would refuse every WebSocket (raise it or lower workers)`);
    }
  }
}

function workersPhrase(workers: Workers): string {
  return workers.auto ? `workers (auto: ${workers.count} cores here)` : `workers (${workers.count})`;
}

/**
 * With workers > 1 every bound that is split exactly across the workers
 * (core/split.ts) must leave each worker at least 1: a worker with no slot of
 * a fixed limit, of a client's share or of a queue would refuse what its
 * siblings accept. A queue of 0 (never queue) stays 0 everywhere.
 */
function splitChecks(
  merged: Merged,
  workers: Workers,
  clientMaxShare: number | undefined,
  where: { at: (...keys: Path[]) => Path; laneAt: (lane: number, keys: readonly (string | Path)[]) => Path },
  report: Ctx['report'],
): void {
  const n = workersPhrase(workers);
  const limit = merged.policy?.limit;
  if (limit && limit.algorithm === 'fixed') {
    if (limit.initial < workers.count) {
      report(
        where.at(['limit', 'initial']),
        `a fixed limit of ${limit.initial} is less than ${n}: it is split exactly across the workers and each needs at least 1 (raise the limit or lower workers)`,
      );
    } else if (clientMaxShare !== undefined) {
      const slots = Math.max(1, Math.ceil(clientMaxShare * limit.initial));
      if (slots < workers.count) {
        report(
          where.at(['limit', 'initial']),
          `clients.maxShare ${clientMaxShare} of a fixed limit of ${limit.initial} is ${slots} slot(s) per client, fewer than ${n}: split exactly, a worker would get none (raise the limit or clients.maxShare, or lower workers)`,
        );
      }
    }
  } else if (limit && limit.max < workers.count) {
    report(
      where.at(['limit', 'max']),
      `limit.max (${limit.max}) is less than ${n}: the limit's bounds are split across the workers and each needs at least 1 (raise limit.max or lower workers)`,
    );
  }
  merged.lanes?.forEach((lane, i) => {
    const max = lane.queue.maxLength;
    if (max > 0 && max < workers.count) {
      report(
        where.laneAt(i, [['queue', 'maxLength']]),
        `queue.maxLength (${max}) is less than ${n}: it is split exactly across the workers and a worker would get no queue (use 0 for no queue, or at least ${workers.count})`,
      );
    }
  });
}

/** A merged policy's values against each other; `at` blames the keys the file sets. */
function policyChecks(policy: Policy, at: (...keys: Path[]) => Path, report: Ctx['report']): void {
  const { limit, overload, circuitBreaker: cb } = policy;
  const [initial, min, max] = [['limit', 'initial'], ['limit', 'min'], ['limit', 'max']];
  if (limit.min > limit.max) {
    report(at(min, max), `min (${limit.min}) is greater than max (${limit.max})`);
  } else if (limit.initial < limit.min || limit.initial > limit.max) {
    report(at(initial, min, max), `initial (${limit.initial}) is outside [min ${limit.min}, max ${limit.max}]`);
  }
  if (overload.exitMs >= overload.enterMs) {
    report(at(['overload', 'exitMs'], ['overload', 'enterMs']), `exitMs (${overload.exitMs}) must be less than enterMs (${overload.enterMs})`);
  }
  if (limit.vegas.alpha >= limit.vegas.beta) {
    report(at(['limit', 'vegas', 'alpha'], ['limit', 'vegas', 'beta']), `alpha (${limit.vegas.alpha}) must be less than beta (${limit.vegas.beta})`);
  }
  if (cb.openMs > cb.maxOpenMs) {
    report(at(['circuitBreaker', 'openMs'], ['circuitBreaker', 'maxOpenMs']), `openMs (${cb.openMs}) is greater than maxOpenMs (${cb.maxOpenMs})`);
  }
}

function checkShares(
  lanes: readonly Lane[],
  at: (lane: number, keys: readonly string[]) => Path,
  sumAt: Path,
  report: (path: Path, message: string) => void,
): void {
  lanes.forEach((lane, i) => {
    if (lane.minShare > lane.maxShare) {
      const message = `minShare (${lane.minShare}) is greater than maxShare (${lane.maxShare})`;
      report(at(i, ['minShare', 'maxShare']), message);
    }
  });
  // Reserved shares are promises to each lane; together they cannot exceed the whole limit.
  const sum = lanes.reduce((total, lane) => total + lane.minShare, 0);
  if (sum > 1 + 1e-9) {
    report(sumAt, `minShare of all lanes adds up to ${Number(sum.toFixed(6))}; it must be at most 1`);
  }
}

function duplicates(
  names: readonly (string | undefined)[],
  what: string,
  list: Path,
  report: (path: Path, message: string) => void,
): void {
  const first = new Map<string, number>();
  names.forEach((name, i) => {
    if (name === undefined) return;
    const seen = first.get(name);
    if (seen === undefined) {
      first.set(name, i);
    } else {
      report([...list, i, 'name'], `duplicate ${what} name "${name}" (first defined at ${[...list, seen].join('.')})`);
    }
  });
}

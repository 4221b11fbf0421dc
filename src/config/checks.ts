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

export interface Parts {
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

/**
 * @param merged  the merged policy and lanes of each route (same order as `parts.routes`)
 * @param isSet   whether the file itself has a value at `path` (as opposed to a default)
 */
export function crossChecks(parts: Parts, merged: readonly Merged[], isSet: (path: Path) => boolean): Issue[] {
  const issues: Issue[] = [];
  const report = (path: Path, message: string, atKey = false) => issues.push({ path, message, atKey });
  // A merged value is blamed on the first of `paths` the file actually sets:
  // the route's own key wins over `defaults:`, as it does in the merge.
  const blame = (paths: Path[], fallback: Path) => paths.find(isSet) ?? fallback;

  const { lanes, retryAfter } = parts;
  const laneNames = lanes?.map((l) => l.name);
  const undefinedLane = (lane: string) =>
    `lane "${lane}" is not defined in lanes (defined: ${[...new Set(laneNames)].join(', ')})`;

  if (lanes) {
    duplicates(lanes.map((l) => l.name), 'lane', ['lanes'], report);
    checkShares(lanes, (i, keys) => blame(keys.map((k) => ['lanes', i, k]), ['lanes', i]), ['lanes'], report);
  }

  if (laneNames) {
    parts.classify.forEach((rule, i) => {
      const lane = rule?.lane;
      if (lane !== undefined && !laneNames.includes(lane)) report(['classify', i, 'lane'], undefinedLane(lane));
    });
  }

  if (retryAfter && retryAfter.minSeconds > retryAfter.maxSeconds) {
    const at = blame([['retryAfter', 'minSeconds'], ['retryAfter', 'maxSeconds']], ['retryAfter']);
    report(at, `minSeconds (${retryAfter.minSeconds}) is greater than maxSeconds (${retryAfter.maxSeconds})`);
  }

  const { server } = parts;
  if (server && server.headersTimeoutMs > server.requestTimeoutMs) {
    const at = blame([['server', 'headersTimeoutMs'], ['server', 'requestTimeoutMs']], ['server']);
    report(
      at,
      `headersTimeoutMs (${server.headersTimeoutMs}) is greater than requestTimeoutMs (${server.requestTimeoutMs}): the headers are part of the request`,
    );
  }

  duplicates(parts.routes.map((r) => r?.name), 'route', ['routes'], report);

  parts.routes.forEach((route, r) => {
    if (!route) return;
    const here: Path = ['routes', r];

    if (laneNames) {
      for (const lane of Object.keys(route.lanes ?? {})) {
        if (!laneNames.includes(lane)) report([...here, 'lanes', lane], undefinedLane(lane), true);
      }
    }

    const policy = merged[r]?.policy;
    if (policy) {
      const at = (...keys: Path[]) =>
        blame([...keys.map((k) => [...here, ...k]), ...keys.map((k) => ['defaults', ...k])], here);
      const { limit, overload, circuitBreaker: cb } = policy;
      const [initial, min, max] = [['limit', 'initial'], ['limit', 'min'], ['limit', 'max']];

      if (limit.min > limit.max) {
        report(at(min, max), `min (${limit.min}) is greater than max (${limit.max})`);
      } else if (limit.initial < limit.min || limit.initial > limit.max) {
        report(at(initial, min, max), `initial (${limit.initial}) is outside [min ${limit.min}, max ${limit.max}]`);
      }
      if (overload.exitMs >= overload.enterMs) {
        report(
          at(['overload', 'exitMs'], ['overload', 'enterMs']),
          `exitMs (${overload.exitMs}) must be less than enterMs (${overload.enterMs})`,
        );
      }
      if (limit.vegas.alpha >= limit.vegas.beta) {
        report(
          at(['limit', 'vegas', 'alpha'], ['limit', 'vegas', 'beta']),
          `alpha (${limit.vegas.alpha}) must be less than beta (${limit.vegas.beta})`,
        );
      }
      if (cb.openMs > cb.maxOpenMs) {
        report(
          at(['circuitBreaker', 'openMs'], ['circuitBreaker', 'maxOpenMs']),
          `openMs (${cb.openMs}) is greater than maxOpenMs (${cb.maxOpenMs})`,
        );
      }
    }

    const routeLanes = merged[r]?.lanes;
    if (routeLanes && lanes) {
      // Same messages as the global check, so an unchanged global lane is reported once (see dedupe in load.ts).
      const laneAt = (i: number, keys: readonly string[]) => {
        const override: Path = [...here, 'lanes', routeLanes[i]!.name];
        return blame([...keys.map((k) => [...override, k]), ...keys.map((k) => ['lanes', i, k])], override);
      };
      const overridesMinShare = routeLanes.some((l) => isSet([...here, 'lanes', l.name, 'minShare']));
      checkShares(routeLanes, laneAt, overridesMinShare ? [...here, 'lanes'] : ['lanes'], report);
    }
  });

  return issues;
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

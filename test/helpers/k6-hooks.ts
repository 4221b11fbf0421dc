/**
 * Module loader hooks (node:module register) that resolve the k6 built-in
 * modules to small stand-ins, so the k6 scripts in loadtests/ can be
 * imported and run by node:test: k6 itself cannot be installed here. The
 * stand-ins forward every call to `globalThis.__k6` (see
 * test/loadtests.test.ts), which answers requests and records checks,
 * metric samples and sleeps.
 */
const STUBS: Record<string, string> = {
  k6: `
    const k = () => globalThis.__k6;
    export const check = (v, sets, tags) => k().check(v, sets, tags);
    export const sleep = (s) => k().sleep(s);
    export const group = (name, fn) => fn();
    export default { check, sleep, group };`,
  'k6/http': `
    const k = () => globalThis.__k6;
    const http = {
      get: (url, params) => k().request('GET', url, null, params),
      post: (url, body, params) => k().request('POST', url, body, params),
      expectedStatuses: (...statuses) => ({ expectedStatuses: statuses }),
      setResponseCallback: (cb) => k().setResponseCallback(cb),
    };
    export default http;
    export const get = http.get;
    export const post = http.post;
    export const expectedStatuses = http.expectedStatuses;
    export const setResponseCallback = http.setResponseCallback;`,
  'k6/metrics': `
    const k = () => globalThis.__k6;
    class Metric {
      constructor(name) { this.name = name; k().metric(name, this.constructor.type); }
      add(value, tags) { k().sample(this.name, value, tags); }
    }
    export class Rate extends Metric { static type = 'rate'; }
    export class Counter extends Metric { static type = 'counter'; }
    export class Trend extends Metric { static type = 'trend'; }
    export class Gauge extends Metric { static type = 'gauge'; }`,
  'k6/execution': `
    export default { get scenario() { return globalThis.__k6.scenario; } };`,
};

interface ResolveResult {
  url: string;
  shortCircuit?: boolean;
}
interface LoadResult {
  format: string;
  source?: string;
  shortCircuit?: boolean;
}

export async function resolve(
  specifier: string,
  context: unknown,
  next: (s: string, c: unknown) => Promise<ResolveResult>,
): Promise<ResolveResult> {
  if (specifier in STUBS) return { url: `k6stub:${specifier}`, shortCircuit: true };
  return next(specifier, context);
}

export async function load(url: string, context: unknown, next: (u: string, c: unknown) => Promise<LoadResult>): Promise<LoadResult> {
  if (url.startsWith('k6stub:')) return { format: 'module', source: STUBS[url.slice('k6stub:'.length)], shortCircuit: true };
  return next(url, context);
}

/**
 * One worker's share of a config (`workers` > 1): the bounds that protect an
 * upstream are split exactly across the workers, so that all of them
 * together never exceed what the config says.
 *
 *   shareOf(total, i of n) = floor(total / n) + (i < total mod n ? 1 : 0)
 *
 * The parts differ by at most 1 and add up to `total` exactly: 4 over 3
 * workers is 2 + 1 + 1, never 2 + 2 + 2. The first `total mod n` workers get
 * the extra one, for every bound alike (worker 0 is the largest).
 *
 * What is split, per route:
 *   fixed limit      initial (the limit) exactly; min and max likewise (at least 1)
 *   adaptive limit   max exactly; initial and min likewise, clamped into
 *                    [1, max]: each worker learns its own limit from the load
 *                    it sees (its share), like independent sidecars, within
 *                    its share of the bounds
 *   client slots     fixed limit only: max(1, ceil(clients.maxShare x limit))
 *                    split exactly (RouteConfig.clientSlots); an adaptive
 *                    worker derives them from its own limit
 *   queue bounds     every lane's queue.maxLength exactly
 *   websocket        maxOpen exactly (open WebSockets are a worker's own
 *                    sockets; all workers together hold at most maxOpen)
 * and for the instance:
 *   clients.rate     local buckets: perSecond / n and burst / n (at least 1),
 *                    so a client's rate is not multiplied by the workers; the
 *                    shared store (Redis) already holds one quota for all:
 *                    its fail-open bucket divides by instances x n
 * Not split: lane shares (maxShare/minShare) become slots of each worker's own
 * limit (max(1, ceil(share x limit))), so every lane can start on every
 * worker; they are caps inside the limit, which is what the upstream sees.
 *
 * config/checks.ts refuses a config where a split bound would leave a worker
 * with 0 (a fixed limit or a client's slots below the worker count, a
 * queue.maxLength between 1 and the worker count, limit.max or
 * websocket.maxOpen below it), so
 * every share here is at least 1 where 0 would mean "refuse everything".
 */
import type { ClientsConfig, Config, LaneConfig, LimitConfig, RouteConfig } from '../config/types.js';

/** A worker's place among the workers serving the proxy port: `index` of `count`, 0-based. */
export interface WorkerShare {
  readonly index: number;
  readonly count: number;
}

/** The whole of everything: one process, nothing split. */
export const WHOLE: WorkerShare = Object.freeze({ index: 0, count: 1 });

/** Worker `s.index`'s exact part of an integer `total` split over `s.count` workers. */
export function shareOf(total: number, s: WorkerShare): number {
  const base = Math.floor(total / s.count);
  return base + (s.index < total % s.count ? 1 : 0);
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}

function splitLimit(limit: LimitConfig, s: WorkerShare): LimitConfig {
  const max = Math.max(1, shareOf(limit.max, s));
  const min = clamp(shareOf(limit.min, s), 1, max);
  const initial = clamp(shareOf(limit.initial, s), min, max);
  return { ...limit, initial, min, max };
}

function splitLanes(lanes: readonly LaneConfig[], s: WorkerShare): LaneConfig[] {
  return lanes.map((l) => ({ ...l, queue: { ...l.queue, maxLength: shareOf(l.queue.maxLength, s) } }));
}

function splitRoute(r: RouteConfig, clientMaxShare: number, s: WorkerShare): RouteConfig {
  const fixed = r.limit.algorithm === 'fixed';
  return {
    ...r,
    limit: splitLimit(r.limit, s),
    lanes: splitLanes(r.lanes, s),
    ...(fixed && { clientSlots: shareOf(Math.max(1, Math.ceil(clientMaxShare * r.limit.initial)), s) }),
    ...(r.websocket && { websocket: { ...r.websocket, maxOpen: shareOf(r.websocket.maxOpen, s) } }),
  };
}

function splitClients(c: ClientsConfig, s: WorkerShare): ClientsConfig {
  const rate = c.rate;
  if (rate === undefined) return c;
  if (rate.store !== undefined) return { ...c, rate: { ...rate, store: { ...rate.store, instances: rate.store.instances * s.count } } };
  return { ...c, rate: { ...rate, perSecond: rate.perSecond / s.count, burst: Math.max(1, rate.burst / s.count) } };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Worker `s`'s share of `config` (see the file comment); the config itself when there is one worker. */
export function workerConfig(config: Config, s: WorkerShare): Config {
  if (s.count <= 1) return config;
  if (!Number.isInteger(s.index) || s.index < 0 || s.index >= s.count) throw new RangeError(`worker index ${s.index} is not in 0..${s.count - 1}`);
  return deepFreeze({
    ...config,
    lanes: splitLanes(config.lanes, s),
    clients: splitClients(config.clients, s),
    routes: config.routes.map((r) => splitRoute(r, config.clients.maxShare, s)),
  });
}

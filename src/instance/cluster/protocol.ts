/**
 * The messages between the primary and its workers (node:cluster IPC with
 * `serialization: 'advanced'`: structured clone, so Infinity in a metric and
 * a frozen Config cross as they are).
 *
 *   primary → worker                     worker → primary
 *                                        hello (listening for start)
 *   start {config, share}                ready {proxyUrl} | failed {message}
 *   ask {id, what: sample | metrics}     reply {id, ok, value | error}
 *   ask {id, what: prepare, config}      reply {id, ok, changes | error}
 *   ask {id, what: commit | abort}       reply {id, ok}
 *   drain                                drained {report}, then it exits
 *
 * Every ask gets exactly one reply with its id; the primary gives up on a
 * reply after a timeout (instance/cluster/workers.ts). The start waits for
 * hello: a message sent before the worker listens for it would be lost (its
 * modules load asynchronously).
 */
import type { Config } from '../../config/types.js';
import type { WorkerShare } from '../../core/split.js';
import type { WorkerSample } from '../../observability/cluster-view.js';
import type { RegistryJson } from '../../observability/cluster-metrics.js';
import type { RouteChanges } from '../../observability/state.js';
import type { DrainReport } from '../drain.js';

export const PREFIX = 'sluice:';

export type Ask =
  | { readonly what: 'sample' }
  | { readonly what: 'metrics' }
  | { readonly what: 'prepare'; readonly config: Config }
  | { readonly what: 'commit' }
  | { readonly what: 'abort' };

/** What each ask's reply carries. */
export interface Answers {
  readonly sample: WorkerSample;
  readonly metrics: RegistryJson;
  readonly prepare: RouteChanges;
  readonly commit: null;
  readonly abort: null;
}

export type ToWorker =
  | { readonly type: 'sluice:start'; readonly config: Config; readonly share: WorkerShare }
  | ({ readonly type: 'sluice:ask'; readonly id: number } & Ask)
  | { readonly type: 'sluice:drain' };

export type FromWorker =
  | { readonly type: 'sluice:hello' }
  | { readonly type: 'sluice:ready'; readonly proxyUrl: string }
  | { readonly type: 'sluice:failed'; readonly message: string }
  | { readonly type: 'sluice:reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly type: 'sluice:reply'; readonly id: number; readonly ok: false; readonly error: string }
  | { readonly type: 'sluice:drained'; readonly report: DrainReport };

/** A message of ours (other code on the channel, e.g. prom-client's, uses other types). */
export function isOurs<T extends { type: string }>(msg: unknown): msg is T {
  return msg !== null && typeof msg === 'object' && typeof (msg as { type?: unknown }).type === 'string' && (msg as { type: string }).type.startsWith(PREFIX);
}

/**
 * The deployment examples stay true: the edge policy and the sidecar's
 * embedded policy pass `sluice validate`, and the Kubernetes objects agree
 * with the policy they carry (ports, probes, grace periods).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../src/config/load.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = join(root, 'build/src/cli.js');

function validate(file: string) {
  return spawnSync(process.execPath, [cli, 'validate', file], { encoding: 'utf8', timeout: 20_000 });
}

test('deploy/edge/sluice.yaml passes `sluice validate`: several services, per-client keys and rates', () => {
  const file = join(root, 'deploy/edge/sluice.yaml');
  const r = validate(file);
  assert.equal(r.status, 0, r.stderr);
  const config = parseConfig(readFileSync(file, 'utf8'), file);
  assert.ok(new Set(config.routes.map((x) => x.upstream)).size >= 3, 'in front of several services');
  assert.ok('header' in config.clients.key, 'clients are keyed by an API key header');
  assert.ok(config.clients.rate, 'per-client rate');
  // workers: auto; its limits, client shares and queues split over up to 64 cores.
  assert.doesNotThrow(() => parseConfig(readFileSync(file, 'utf8').replace('workers: auto', 'workers: 64'), file));
});

interface K8s {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  data?: Record<string, string>;
  spec?: any; // free-form Kubernetes spec, read by path below
}

test('deploy/kubernetes/sidecar.yaml: a valid policy, probes and ports that match it, grace periods that cover the drain', () => {
  const file = join(root, 'deploy/kubernetes/sidecar.yaml');
  const docs = parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    assert.deepEqual(d.errors, []);
    return d.toJS() as K8s;
  });
  const byKind = (kind: string) => docs.find((d) => d.kind === kind)!;
  const cm = byKind('ConfigMap');
  const deployment = byKind('Deployment');
  const service = byKind('Service');

  const policyText = cm.data?.['config.yaml'] ?? '';
  const policyFile = join(mkdtempSync(join(tmpdir(), 'sluice-k8s-')), 'config.yaml');
  writeFileSync(policyFile, policyText);
  const v = validate(policyFile);
  assert.equal(v.status, 0, v.stderr);
  const policy = parseConfig(policyText, 'config.yaml');

  const pod = deployment.spec.template.spec;
  const sluice = pod.containers.find((c: { name: string }) => c.name === 'sluice');
  const app = pod.containers.find((c: { name: string }) => c.name !== 'sluice');
  const port = (name: string) => sluice.ports.find((p: { name: string }) => p.name === name).containerPort as number;

  assert.equal(port('http'), policy.listen.port);
  assert.equal(port('admin'), policy.admin.port);
  assert.equal(policy.admin.host, '0.0.0.0', 'kubelet probes reach the admin listener');
  assert.deepEqual(sluice.readinessProbe.httpGet, { path: '/readyz', port: 'admin' });
  assert.deepEqual(sluice.livenessProbe.httpGet, { path: '/healthz', port: 'admin' });

  // The config comes from the ConfigMap, mounted as a directory so updates reach it.
  const configArg = sluice.args[sluice.args.indexOf('--config') + 1] as string;
  const mount = sluice.volumeMounts.find((m: { mountPath: string }) => configArg.startsWith(`${m.mountPath}/`));
  assert.ok(mount && mount.subPath === undefined, 'a directory mount, not subPath');
  const volume = pod.volumes.find((x: { name: string }) => x.name === mount.name);
  assert.equal(volume.configMap.name, cm.metadata.name);
  assert.equal(configArg.slice(mount.mountPath.length + 1), 'config.yaml');

  // The Service sends traffic to sluice, never straight to the app.
  assert.deepEqual(service.spec.selector, deployment.spec.template.metadata.labels);
  assert.ok(service.spec.ports.every((p: { targetPort: string }) => p.targetPort === 'http'));
  for (const r of policy.routes) assert.match(r.upstream, /^http:\/\/127\.0\.0\.1:\d+$/, 'the upstream is the app in the same pod');

  // The app outlives sluice's drain; the pod's grace period outlives both.
  const { readinessGraceMs, drainTimeoutMs } = policy.shutdown;
  const drainSeconds = (readinessGraceMs + drainTimeoutMs) / 1000;
  const preStop = app.lifecycle.preStop.exec.command as string[];
  assert.equal(preStop[0], 'sleep');
  assert.ok(Number(preStop[1]) >= drainSeconds, `app preStop sleep ${preStop[1]} s covers the drain (${drainSeconds} s)`);
  assert.ok(pod.terminationGracePeriodSeconds >= Number(preStop[1]) + 5, 'the grace period leaves the app time to stop');
  assert.equal(sluice.securityContext.runAsNonRoot, true);

  // Memory from what was measured (the manifest's comment): a request above the 125 MiB peak
  // RSS under overload, a limit with room above it; no CPU limit to throttle the shedder.
  const mib = (q: string) => Number(/^(\d+)Mi$/.exec(q)?.[1] ?? NaN);
  assert.ok(mib(sluice.resources.requests.memory) >= 125, `memory request ${sluice.resources.requests.memory}`);
  assert.ok(mib(sluice.resources.limits.memory) >= 1.5 * mib(sluice.resources.requests.memory), `memory limit ${sluice.resources.limits.memory}`);
  assert.equal(sluice.resources.limits.cpu, undefined);
});

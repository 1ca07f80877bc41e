// `ambit check` as an operator runs it (the built CLI): pre-install checks of this machine, and cluster
// checks against the test API server world (discovery for the CRDs, the ztunnel and capture-agent
// DaemonSets' readiness) — a healthy world exits 0, a missing CRD group or a DaemonSet short of ready
// pods exits 1 naming the fix.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findKind } from './k8s-api-server/resources.js';
import { TestKubernetesApiServer } from './k8s-api-server/server.js';
import { ambit as runAmbit } from './demo-run.js';

const dir = mkdtempSync(join(tmpdir(), 'ambit-check-'));
let server: TestKubernetesApiServer;
const kubeconfig = join(dir, 'kubeconfig');

const check = (...args: string[]) =>
  runAmbit(['check', '--dir', join(dir, 'no-demo'), ...args], { timeoutMs: 30_000 });

const ds = (name: string, ready: number) => ({
  apiVersion: 'apps/v1',
  kind: 'DaemonSet',
  metadata: { name, namespace: 'istio-system' },
  spec: {
    selector: { matchLabels: { app: name } },
    template: {
      metadata: { labels: { app: name } },
      spec: { containers: [{ name, image: `ambit/${name}:dev` }] },
    },
  },
  status: { desiredNumberScheduled: 2, numberReady: ready },
});

beforeAll(async () => {
  server = new TestKubernetesApiServer();
  await server.listen();
  writeFileSync(kubeconfig, server.kubeconfig());
  const create = (apiVersion: string, kind: string, body: Record<string, unknown>, ns?: string) =>
    server.store.create(findKind(apiVersion, kind)!, ns, body as never);
  for (const n of ['node-a', 'node-b'])
    create('v1', 'Node', { apiVersion: 'v1', kind: 'Node', metadata: { name: n } });
  create('v1', 'Namespace', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } });
  create('apps/v1', 'DaemonSet', ds('ztunnel', 2), 'istio-system');
  create('apps/v1', 'DaemonSet', ds('ambit-bpf-agent', 1), 'istio-system');
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ambit check', () => {
  it('pre-install: kernel, bpffs, cgroup v2, nftables and CNI, each with a verdict', async () => {
    const r = await check('--pre', '-o', 'json');
    const rs = JSON.parse(r.stdout) as { name: string; status: string; fix?: string }[];
    expect(rs.map((x) => x.name)).toEqual(['kernel', 'bpffs', 'cgroup v2', 'nftables', 'CNI']);
    for (const x of rs) if (x.status !== 'ok') expect(x.fix, x.name).toBeTruthy();
    expect(r.code).toBe(rs.some((x) => x.status === 'fail') ? 1 : 0);
  });

  it('cluster: CRDs served and ztunnel ready; a DaemonSet short of ready pods fails with its fix', async () => {
    const r = await check('--kubeconfig', kubeconfig);
    expect(r.stdout).toMatch(/√ CRDs security\.istio\.io\/v1: .* served/);
    expect(r.stdout).toMatch(/√ CRDs gateway\.networking\.k8s\.io\/v1: .* served/);
    expect(r.stdout).toMatch(/√ ztunnel: DaemonSet istio-system\/ztunnel: 2\/2 ready on 2 nodes/);
    expect(r.stdout).toMatch(
      /× capture agent: DaemonSet istio-system\/ambit-bpf-agent: 1\/2 ready, 2 nodes\n\s+fix: kubectl -n istio-system describe daemonset ambit-bpf-agent/,
    );
    expect(r.code).toBe(1);
    // Once every agent is ready the cluster part passes.
    const t = findKind('apps/v1', 'DaemonSet')!;
    const cur = server.store.get(t, 'istio-system', 'ambit-bpf-agent');
    server.store.update(
      t,
      'istio-system',
      'ambit-bpf-agent',
      { ...cur, status: { desiredNumberScheduled: 2, numberReady: 2 } },
      'status',
    );
    const again = await check('--kubeconfig', kubeconfig, '-o', 'json');
    const cluster = (JSON.parse(again.stdout) as { group: string; status: string }[]).filter(
      (x) => x.group === 'cluster',
    );
    expect(cluster.every((x) => x.status === 'ok')).toBe(true);
  });

  it('an unreachable API server is a failure that names the kubeconfig', async () => {
    const bad = join(dir, 'bad-kubeconfig');
    writeFileSync(bad, server.kubeconfig().replace(/127\.0\.0\.1:\d+/, '127.0.0.1:1'));
    const r = await check('--kubeconfig', bad);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/× API server: not reachable.*\n\s+fix: check the kubeconfig/);
  });
});

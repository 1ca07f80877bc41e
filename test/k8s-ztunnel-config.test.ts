// `ambit ztunnel-config` in a cluster, as istioctl reaches ztunnel: the ztunnel pod of a node (--node) or
// of a pod's node (--pod), through a port-forward of the Kubernetes API (the test API server relays
// `pods/<name>/portforward` over WebSocket to each ztunnel's real admin server, ztunnel/admin.ts).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlowEvents } from '../core/telemetry/flow-events.js';
import { TrafficMetrics } from '../core/telemetry/metrics.js';
import { AdminServer } from '../ztunnel/admin.js';
import { LoggerFamily } from '../ztunnel/logging.js';
import { TestKubernetesApiServer } from './k8s-api-server/server.js';
import { ambit as runAmbit } from './demo-run.js';

let api: TestKubernetesApiServer;
let dir: string;
let kubeconfig: string;
const admins = new Map<string, { server: AdminServer; logs: LoggerFamily }>();

/** One node's ztunnel admin surface: its node's workload and certificate. */
async function ztunnelAdmin(node: string, workload: string, sa: string, ip: string) {
  const logs = new LoggerFamily('info', { write() {} });
  const server = new AdminServer({
    config: { node },
    workloads: () => [
      {
        name: workload,
        namespace: 'shop',
        addresses: [ip],
        node,
        tunnelProtocol: 'HBONE',
        serviceAccount: sa,
        status: 'HEALTHY',
      },
    ],
    services: () => [{ name: 'web', namespace: 'shop', addresses: ['10.96.0.10'], endpoints: 1 }],
    policies: () => [],
    certificates: async () => [
      {
        identity: `spiffe://cluster.local/ns/shop/sa/${sa}`,
        state: 'Available',
        certChain: [
          {
            pem: '',
            serialNumber: 'ab12',
            validFrom: '2026-01-01T00:00:00.000Z',
            expirationTime: '2999-01-01T00:00:00.000Z',
          },
        ],
        rootCerts: [],
      },
    ],
    logger: logs.root,
    logLevel: () => logs.level,
    setLogLevel: (l) => logs.setLevel(l),
    metrics: new TrafficMetrics(),
    flows: new FlowEvents(),
    ready: () => true,
    quit: () => {},
  });
  await server.listen({
    adminAddress: '127.0.0.1',
    adminPort: 0,
    statsAddress: '127.0.0.1',
    statsPort: 0,
    readinessAddress: '127.0.0.1',
    readinessPort: 0,
  });
  return { server, logs };
}

/** The built `ambit`, kept away from any demo on this machine. */
const ambit = (args: string[]) =>
  runAmbit(args, { timeoutMs: 30_000, env: { ...process.env, AMBIT_DEMO_DIR: join(dir, 'no-demo') } });

async function pod(ns: string, name: string, node: string, ip: string, labels: Record<string, string>) {
  const core = kc().makeApiClient(CoreV1Api);
  await core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { name, labels }, spec: { nodeName: node, containers: [{ name: 'c', image: 'i' }] } },
  });
  await core.replaceNamespacedPodStatus({
    namespace: ns,
    name,
    body: { metadata: { name }, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } },
  });
}

function kc(): KubeConfig {
  const k = new KubeConfig();
  k.loadFromString(api.kubeconfig());
  return k;
}

beforeAll(async () => {
  api = new TestKubernetesApiServer();
  await api.listen();
  dir = mkdtempSync(join(tmpdir(), 'ambit-zc-k8s-'));
  kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, api.kubeconfig());
  admins.set('ztunnel-a', await ztunnelAdmin('node-a', 'frontend', 'frontend', '10.244.1.10'));
  admins.set('ztunnel-b', await ztunnelAdmin('node-b', 'web', 'web', '10.244.2.10'));
  // Pod IPs are not routable here: the API server's port-forward dials each ztunnel's admin listener.
  api.portForward = (p, port) => {
    const a = admins.get(p.metadata.name);
    return a && port === 15000 ? { host: '127.0.0.1', port: a.server.ports.admin } : undefined;
  };
  const core = kc().makeApiClient(CoreV1Api);
  for (const ns of ['istio-system', 'shop']) await core.createNamespace({ body: { metadata: { name: ns } } });
  await pod('istio-system', 'ztunnel-a', 'node-a', '10.0.1.5', { app: 'ztunnel' });
  await pod('istio-system', 'ztunnel-b', 'node-b', '10.0.2.5', { app: 'ztunnel' });
  await pod('shop', 'web-0', 'node-b', '10.244.2.10', { app: 'web' });
});

afterAll(async () => {
  for (const a of admins.values()) await a.server.close();
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ambit ztunnel-config through the Kubernetes API (port-forward, like istioctl)', () => {
  it('reads the ztunnel of a node, or of a pod’s node', async () => {
    const k = ['--kubeconfig', kubeconfig];
    const w = await ambit(['ztunnel-config', 'workloads', '--node', 'node-a', ...k]);
    expect(w.code, w.stderr).toBe(0);
    expect(w.stdout).toMatch(
      /^NAMESPACE\s+POD NAME\s+ADDRESS\s+NODE\s+WAYPOINT\s+PROTOCOL\nshop\s+frontend\s+10\.244\.1\.10\s+node-a\s+None\s+HBONE\n$/,
    );
    const c = await ambit(['zc', 'certificates', '--pod', 'shop/web-0', '-o', 'yaml', ...k]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/identity: spiffe:\/\/cluster\.local\/ns\/shop\/sa\/web/);
    const all = await ambit(['zc', 'all', '--node', 'node-b', ...k]);
    expect(all.stdout).toMatch(
      /WORKLOADS\n[\s\S]*shop\s+web\s+10\.244\.2\.10\s+node-b[\s\S]*SERVICES\n[\s\S]*shop\s+web\s+10\.96\.0\.10/,
    );
  }, 60_000);

  it('sets a ztunnel’s log level through the forward (POST /logging)', async () => {
    const r = await ambit(['zc', 'log', '--node', 'node-b', '--level', 'debug', '--kubeconfig', kubeconfig]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ztunnel istio-system\/ztunnel-b on node-b\s+debug/);
    expect(admins.get('ztunnel-b')?.logs.level).toBe('debug');
    expect(admins.get('ztunnel-a')?.logs.level).toBe('info');
  }, 30_000);

  it('with several ztunnels a target must be chosen (exit 2); an unknown node is a failure (exit 1)', async () => {
    const k = ['--kubeconfig', kubeconfig];
    const none = await ambit(['zc', 'workloads', ...k]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('pass --node (node-a, node-b) or --pod ns/name');
    const bad = await ambit(['zc', 'workloads', '--node', 'node-z', ...k]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      'no ztunnel pod on node node-z (label app=ztunnel in namespace istio-system',
    );
  }, 30_000);
});

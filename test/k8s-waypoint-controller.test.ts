// The waypoint controller against the test API server (a test double for the apiserver): a Gateway of
// class istio-waypoint gets its ServiceAccount, Deployment and Service, and a status address; other
// classes are left alone; a deleted Service comes back; deleting the Gateway garbage-collects them.
import {
  AppsV1Api,
  type CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WaypointController, deploymentFor } from '../controllers/waypoint.js';
import { startTestCluster } from './k8s-api-server/cluster.js';
import type { TestKubernetesApiServer } from './k8s-api-server/server.js';

let api: TestKubernetesApiServer;
let kc: KubeConfig;
let core: CoreV1Api;
let apps: AppsV1Api;
let custom: CustomObjectsApi;
let rbac: RbacAuthorizationV1Api;
let controller: WaypointController;

async function until<T>(what: string, get: () => Promise<T | undefined>, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
    const v = await get().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

const gateway = (name: string, gatewayClassName: string) => ({
  group: 'gateway.networking.k8s.io',
  version: 'v1',
  namespace: 'shop',
  plural: 'gateways',
  body: {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace: 'shop', labels: { 'istio.io/waypoint-for': 'service' } },
    spec: { gatewayClassName, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  },
});

beforeAll(async () => {
  ({ api, kc, core } = await startTestCluster([]));
  apps = kc.makeApiClient(AppsV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
  controller = new WaypointController({
    kubeConfig: kc,
    image: 'ghcr.io/example/ambit:test',
    logger: pino({ level: 'silent' }),
  });
  await controller.start();
});

afterAll(async () => {
  await controller?.stop();
  await api?.close();
});

describe('waypoint controller', () => {
  it('gives a Gateway of class istio-waypoint a ServiceAccount, Deployment and Service, and a status address', async () => {
    const gw = (await custom.createNamespacedCustomObject(gateway('waypoint', 'istio-waypoint'))) as {
      metadata: { uid: string };
    };
    const svc = await until('Service', () =>
      core.readNamespacedService({ namespace: 'shop', name: 'waypoint' }),
    );
    expect(svc.spec?.ports?.map((p) => `${p.name}:${p.port}`)).toEqual([
      'status-port:15021',
      'mesh:15008',
      'metrics:15020',
    ]);
    expect(svc.spec?.selector).toEqual({ 'gateway.networking.k8s.io/gateway-name': 'waypoint' });
    const sa = await core.readNamespacedServiceAccount({ namespace: 'shop', name: 'waypoint' });
    // The waypoint reads the mesh state with its own ServiceAccount: bound to the reader ClusterRole.
    const crb = await rbac.readClusterRoleBinding({ name: 'ambit-waypoint-shop-waypoint' });
    expect(crb.roleRef).toMatchObject({ kind: 'ClusterRole', name: 'ambit-waypoint' });
    expect(crb.subjects).toEqual([
      expect.objectContaining({ kind: 'ServiceAccount', name: 'waypoint', namespace: 'shop' }),
    ]);
    const dep = await apps.readNamespacedDeployment({ namespace: 'shop', name: 'waypoint' });
    for (const o of [svc, sa, dep])
      expect(o.metadata?.ownerReferences).toEqual([
        expect.objectContaining({
          apiVersion: 'gateway.networking.k8s.io/v1',
          kind: 'Gateway',
          name: 'waypoint',
          uid: gw.metadata.uid,
        }),
      ]);
    const pod = dep.spec?.template.spec;
    // Identity = the ServiceAccount named after the Gateway; CA token projected with audience istio-ca.
    expect(pod?.serviceAccountName).toBe('waypoint');
    expect(
      pod?.volumes?.find((v) => v.name === 'istio-token')?.projected?.sources?.[0]?.serviceAccountToken
        ?.audience,
    ).toBe('istio-ca');
    expect(pod?.containers[0]?.image).toBe('ghcr.io/example/ambit:test');
    // Istio's waypoint container name, which Istio's dashboards and Kiali select container_* series by.
    expect(pod?.containers[0]?.name).toBe('istio-proxy');
    expect(pod?.containers[0]?.ports).toContainEqual({
      name: 'metrics',
      containerPort: 15020,
      protocol: 'TCP',
    });
    expect(pod?.containers[0]?.args).toEqual([
      'waypoint',
      '--kubernetes',
      '--name',
      'waypoint',
      '--namespace',
      'shop',
      '--ca',
      'istiod.istio-system.svc:15012',
      '--ca-root',
      '/var/run/secrets/istio/root-cert.pem',
      '--token',
      '/var/run/secrets/tokens/istio-token',
    ]);
    expect(dep.spec?.template.metadata?.labels?.['gateway.networking.k8s.io/gateway-name']).toBe('waypoint');

    const status = await until('Gateway status', async () => {
      const g = (await custom.getNamespacedCustomObject({
        group: 'gateway.networking.k8s.io',
        version: 'v1',
        namespace: 'shop',
        plural: 'gateways',
        name: 'waypoint',
      })) as {
        status?: {
          addresses?: { type: string; value: string }[];
          conditions?: { type: string; status: string }[];
        };
      };
      return g.status?.addresses ? g.status : undefined;
    });
    expect(status.addresses).toEqual([
      { type: 'IPAddress', value: svc.spec?.clusterIP },
      { type: 'Hostname', value: 'waypoint.shop.svc.cluster.local' },
    ]);
    expect(status.conditions?.map((c) => `${c.type}=${c.status}`)).toEqual([
      'Accepted=True',
      'Programmed=True',
    ]);
  });

  const owner = { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'w', uid: 'u1' };
  /** The waypoint container's args of a Deployment deploymentFor built. */
  const args = (d: Record<string, unknown>) =>
    (d as unknown as { spec: { template: { spec: { containers: { args: string[] }[] } } } }).spec.template
      .spec.containers[0]!.args;

  it("passes the configured OTLP endpoint to every waypoint's --tracing-endpoint", () => {
    const traced = deploymentFor('w', 'shop', {}, owner, {
      image: 'ambit:test',
      tracingEndpoint: 'http://collector.obs:4318/v1/traces',
    });
    expect(args(traced).slice(-2)).toEqual(['--tracing-endpoint', 'http://collector.obs:4318/v1/traces']);
    expect(args(deploymentFor('w', 'shop', {}, owner, { image: 'ambit:test' }))).not.toContain(
      '--tracing-endpoint',
    );
  });

  it("passes the mesh's path normalization to every waypoint's --path-normalization", () => {
    const strict = deploymentFor('w', 'shop', {}, owner, {
      image: 'ambit:test',
      tracingEndpoint: 'http://collector.obs:4318/v1/traces',
      pathNormalization: 'DECODE_AND_MERGE_SLASHES',
    });
    expect(args(strict).slice(-4)).toEqual([
      '--tracing-endpoint',
      'http://collector.obs:4318/v1/traces',
      '--path-normalization',
      'DECODE_AND_MERGE_SLASHES',
    ]);
    // Unset: the waypoint's own default (BASE, as Istio) applies.
    expect(args(deploymentFor('w', 'shop', {}, owner, { image: 'ambit:test' }))).not.toContain(
      '--path-normalization',
    );
  });

  it('leaves Gateways of other classes alone', async () => {
    await custom.createNamespacedCustomObject(gateway('ingress', 'istio'));
    await new Promise((r) => setTimeout(r, 200));
    await controller.idle();
    await expect(apps.readNamespacedDeployment({ namespace: 'shop', name: 'ingress' })).rejects.toMatchObject(
      { code: 404 },
    );
  });

  it('recreates a Service deleted by hand, and restores one edited by hand', async () => {
    await core.deleteNamespacedService({ namespace: 'shop', name: 'waypoint' });
    await until('Service recreated', () =>
      core.readNamespacedService({ namespace: 'shop', name: 'waypoint' }),
    );
    const svc = await core.readNamespacedService({ namespace: 'shop', name: 'waypoint' });
    await core.replaceNamespacedService({
      namespace: 'shop',
      name: 'waypoint',
      body: { ...svc, spec: { ...svc.spec, ports: [{ name: 'x', port: 1 }] } },
    });
    await until('Service restored', async () => {
      const s = await core.readNamespacedService({ namespace: 'shop', name: 'waypoint' });
      return s.spec?.ports?.some((p) => p.port === 15008) ? s : undefined;
    });
  });

  it('deleting the Gateway garbage-collects its Deployment, Service and ServiceAccount (ownerReferences) and drops its binding', async () => {
    await custom.deleteNamespacedCustomObject({
      group: 'gateway.networking.k8s.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'gateways',
      name: 'waypoint',
    });
    await until('all gone', async () => {
      const gone = await Promise.all([
        apps.readNamespacedDeployment({ namespace: 'shop', name: 'waypoint' }).then(
          () => false,
          () => true,
        ),
        core.readNamespacedService({ namespace: 'shop', name: 'waypoint' }).then(
          () => false,
          () => true,
        ),
        core.readNamespacedServiceAccount({ namespace: 'shop', name: 'waypoint' }).then(
          () => false,
          () => true,
        ),
        rbac.readClusterRoleBinding({ name: 'ambit-waypoint-shop-waypoint' }).then(
          () => false,
          () => true,
        ),
      ]);
      return gone.every(Boolean) ? true : undefined;
    });
  });
});

describe('ambit waypoint-controller (the built CLI)', () => {
  it('runs against a kubeconfig and programs a waypoint Gateway', async () => {
    const { spawn } = await import('node:child_process');
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { distPath } = await import('./harness/topology.js');
    // Only the CLI's controller may act in this test.
    await controller.stop();
    // A binding left by a Gateway deleted while no controller ran: collected at start.
    await rbac.createClusterRoleBinding({
      body: {
        metadata: {
          name: 'ambit-waypoint-shop-gone',
          labels: {
            'gateway.networking.k8s.io/gateway-name': 'gone',
            'gateway.networking.k8s.io/gateway-namespace': 'shop',
            'gateway.istio.io/managed': 'istio.io-mesh-controller',
          },
        },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'ambit-waypoint' },
        subjects: [{ kind: 'ServiceAccount', name: 'gone', namespace: 'shop' }],
      },
    });
    const dir = mkdtempSync(join(tmpdir(), 'ambit-wpc-'));
    writeFileSync(join(dir, 'kubeconfig'), api.kubeconfig());
    const child = spawn(
      process.execPath,
      [
        distPath('cli/ambit.ts'),
        'waypoint-controller',
        '--kubeconfig',
        join(dir, 'kubeconfig'),
        '--image',
        'example/ambit:cli',
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, LOG_LEVEL: 'warn' },
      },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    try {
      await custom.createNamespacedCustomObject(gateway('from-cli', 'istio-waypoint'));
      const dep = await until(
        `Deployment from the CLI (stderr: ${stderr})`,
        () => apps.readNamespacedDeployment({ namespace: 'shop', name: 'from-cli' }),
        15_000,
      );
      expect(dep.spec?.template.spec?.containers[0]?.image).toBe('example/ambit:cli');
      await until('stale binding collected', () =>
        rbac.readClusterRoleBinding({ name: 'ambit-waypoint-shop-gone' }).then(
          () => undefined,
          () => true,
        ),
      );
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

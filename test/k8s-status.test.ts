// Status conditions on Kubernetes objects, as istiod writes them in ambient mode, against the test API
// server (a test double for the apiserver; real REST, watch and /status subresource): what an operator
// reads with `kubectl get authorizationpolicy -o yaml` / `kubectl wait --for=condition=ZtunnelAccepted`.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesSource } from '../core/sources/kubernetes.js';
import { StatusController } from '../discovery/status-controller.js';
import { StatusWriter } from '../discovery/status-writer.js';
import { distPath } from './harness/topology.js';
import { TestKubernetesApiServer } from './k8s-api-server/server.js';

const logger = pino({ level: 'silent' });
let api: TestKubernetesApiServer;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let source: KubernetesSource;
let writer: StatusWriter;
let controller: StatusController;

interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

const AP = { group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies', namespace: 'shop' };

async function until<T>(what: string, get: () => Promise<T | undefined>, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
    last = await get().catch((e: unknown) => e);
    if (last !== undefined && !(last instanceof Error)) return last as T;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for: ${what} (last: ${String(last)})`);
}

const policy = (name: string, spec: Record<string, unknown>) =>
  custom.createNamespacedCustomObject({
    ...AP,
    body: { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name }, spec },
  });

async function apConditions(name: string): Promise<Cond[]> {
  const o = (await custom.getNamespacedCustomObject({ ...AP, name })) as { status?: { conditions?: Cond[] } };
  return o.status?.conditions ?? [];
}

/** The named condition once it reads as wanted. */
function condition(name: string, type: string, want: Partial<Cond>): Promise<Cond> {
  return until(`${name} ${type} ${JSON.stringify(want)}`, async () => {
    const c = (await apConditions(name)).find((x) => x.type === type);
    if (!c) return undefined;
    return Object.entries(want).every(([k, v]) => c[k as keyof Cond] === v) ? c : undefined;
  });
}

beforeAll(async () => {
  api = new TestKubernetesApiServer();
  await api.listen();
  kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
  await custom.createNamespacedCustomObject({
    group: 'gateway.networking.k8s.io',
    version: 'v1',
    namespace: 'shop',
    plural: 'gateways',
    body: {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'Gateway',
      metadata: { name: 'waypoint', namespace: 'shop' },
      spec: {
        gatewayClassName: 'istio-waypoint',
        listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
      },
    },
  });
  for (const [name, labels] of [
    ['web', { 'istio.io/use-waypoint': 'waypoint' }],
    ['catalog', {}],
    ['orders', { 'istio.io/use-waypoint': 'no-such-waypoint' }],
  ] as const) {
    await core.createNamespacedService({
      namespace: 'shop',
      body: {
        metadata: { name, labels: { ...labels } },
        spec: { selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
      },
    });
  }
  source = new KubernetesSource({
    kubeConfig: kc,
    kinds: ['Namespace', 'Service', 'AuthorizationPolicy', 'Gateway'],
    syncTimeoutMs: 10_000,
    logger,
  });
  await source.start();
  writer = new StatusWriter({ kubeConfig: kc, backoffMs: 20, logger });
  controller = new StatusController({ source, writer, debounceMs: 20, logger });
  controller.start();
});

afterAll(async () => {
  controller?.stop();
  writer?.stop();
  await source?.stop();
  await api?.close();
});

describe('status conditions written to Kubernetes (as istiod writes them for ambient)', () => {
  it('an L4 policy is ZtunnelAccepted "attached to ztunnel", at the generation it was read', async () => {
    await policy('catalog-from-frontend', {
      selector: { matchLabels: { app: 'catalog' } },
      action: 'ALLOW',
      rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }],
    });
    const c = await condition('catalog-from-frontend', 'ZtunnelAccepted', { status: 'True' });
    expect(c).toMatchObject({ reason: 'Accepted', message: 'attached to ztunnel', observedGeneration: 1 });
    expect(Date.parse(c.lastTransitionTime ?? '')).toBeGreaterThan(Date.now() - 60_000);
    expect((await apConditions('catalog-from-frontend')).map((x) => x.type)).toEqual(['ZtunnelAccepted']);
  });

  it('HTTP attributes at ztunnel: accepted but narrowed (UnsupportedValue, istiod wording); CUSTOM: not accepted', async () => {
    await policy('catalog-get-only', {
      selector: { matchLabels: { app: 'catalog' } },
      action: 'ALLOW',
      rules: [{ to: [{ operation: { methods: ['GET'] } }] }],
    });
    const narrowed = await condition('catalog-get-only', 'ZtunnelAccepted', { reason: 'UnsupportedValue' });
    expect(narrowed.status).toBe('True');
    expect(narrowed.message).toContain('ztunnel does not support HTTP attributes (found: methods)');
    await policy('ext-authz', {
      selector: { matchLabels: { app: 'catalog' } },
      action: 'CUSTOM',
      provider: { name: 'opa' },
      rules: [{}],
    });
    const custom_ = await condition('ext-authz', 'ZtunnelAccepted', { status: 'False' });
    expect(custom_).toMatchObject({
      reason: 'UnsupportedValue',
      message: 'ztunnel does not support the CUSTOM action',
    });
  });

  it('a policy Ambit rejects says so on the object (Invalid, naming the field); fixing it makes it Accepted', async () => {
    await policy('typo', {
      selector: { matchLabels: { app: 'catalog' } },
      action: 'ALOW',
      rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }],
    });
    const bad = await condition('typo', 'ZtunnelAccepted', { status: 'False' });
    expect(bad.reason).toBe('Invalid');
    expect(bad.message).toMatch(/^spec\.action: .*ALOW/);
    await custom.patchNamespacedCustomObject(
      { ...AP, name: 'typo', body: { spec: { action: 'ALLOW' } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(await condition('typo', 'ZtunnelAccepted', { status: 'True' })).toMatchObject({
      reason: 'Accepted',
      message: 'attached to ztunnel',
      observedGeneration: 2,
    });
  });

  it('targetRefs policies get WaypointAccepted: bound, not bound, target not found', async () => {
    await policy('web-no-admin', {
      targetRefs: [{ kind: 'Service', group: '', name: 'web' }],
      action: 'DENY',
      rules: [{ to: [{ operation: { paths: ['/admin'] } }] }],
    });
    await policy('catalog-l7', {
      targetRefs: [{ kind: 'Service', group: '', name: 'catalog' }],
      action: 'ALLOW',
      rules: [{ to: [{ operation: { methods: ['GET'] } }] }],
    });
    await policy('on-gateway', {
      targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'waypoint' }],
      action: 'ALLOW',
      rules: [{}],
    });
    await policy('nowhere', {
      targetRefs: [{ kind: 'Service', group: '', name: 'missing' }],
      action: 'ALLOW',
      rules: [{}],
    });
    expect(await condition('web-no-admin', 'WaypointAccepted', { status: 'True' })).toMatchObject({
      reason: 'Accepted',
      message: 'bound to shop/waypoint',
    });
    expect(await condition('on-gateway', 'WaypointAccepted', { status: 'True' })).toMatchObject({
      reason: 'Accepted',
      message: 'bound to shop/waypoint',
    });
    expect(await condition('catalog-l7', 'WaypointAccepted', { status: 'False' })).toMatchObject({
      reason: 'AncestorNotBound',
      message: 'Service shop/catalog is not bound to a waypoint',
    });
    expect(await condition('nowhere', 'WaypointAccepted', { status: 'False' })).toMatchObject({
      reason: 'TargetNotFound',
      message: 'Service shop/missing was not found',
    });
    // No ZtunnelAccepted on a policy ztunnel never gets.
    expect((await apConditions('web-no-admin')).map((x) => x.type)).toEqual(['WaypointAccepted']);
  });

  it('Services get istio.io/WaypointBound; binding the Service later flips the policy to bound', async () => {
    const svc = (name: string) =>
      until(`${name} WaypointBound`, async () => {
        const s = await core.readNamespacedServiceStatus({ namespace: 'shop', name });
        return (s.status?.conditions ?? []).find((c) => c.type === 'istio.io/WaypointBound');
      });
    expect(await svc('web')).toMatchObject({
      status: 'True',
      reason: 'WaypointAccepted',
      message: 'Successfully attached to waypoint shop/waypoint',
    });
    expect(await svc('orders')).toMatchObject({ status: 'False' });
    expect(
      (await core.readNamespacedService({ namespace: 'shop', name: 'catalog' })).status?.conditions ?? [],
    ).toEqual([]);
    await core.patchNamespacedService(
      {
        namespace: 'shop',
        name: 'catalog',
        body: { metadata: { labels: { 'istio.io/use-waypoint': 'waypoint' } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(await condition('catalog-l7', 'WaypointAccepted', { status: 'True' })).toMatchObject({
      reason: 'Accepted',
      message: 'bound to shop/waypoint',
    });
    expect(await svc('catalog')).toMatchObject({ status: 'True', reason: 'WaypointAccepted' });
  });

  it('keeps other owners’ conditions, follows a spec change to its new generation, and writes nothing when nothing changed', async () => {
    await custom.patchNamespacedCustomObjectStatus(
      {
        ...AP,
        name: 'catalog-from-frontend',
        body: {
          status: {
            conditions: [
              ...(await apConditions('catalog-from-frontend')),
              {
                type: 'example.com/Audited',
                status: 'True',
                reason: 'Seen',
                message: 'by another controller',
              },
            ],
          },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const before = await condition('catalog-from-frontend', 'ZtunnelAccepted', { status: 'True' });
    await custom.patchNamespacedCustomObject(
      {
        ...AP,
        name: 'catalog-from-frontend',
        body: { spec: { rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const after = await condition('catalog-from-frontend', 'ZtunnelAccepted', { observedGeneration: 2 });
    // Same status: the transition time stays (Kubernetes API conventions for conditions).
    expect(after.lastTransitionTime).toBe(before.lastTransitionTime);
    expect((await apConditions('catalog-from-frontend')).map((x) => x.type).sort()).toEqual([
      'ZtunnelAccepted',
      'example.com/Audited',
    ]);
    await writer.idle();
    const { written } = writer.stats();
    // A resync-like pass over the same state: reads, but no write.
    writer.enqueue({
      kind: 'AuthorizationPolicy',
      namespace: 'shop',
      name: 'catalog-from-frontend',
      conditions: [
        { type: 'ZtunnelAccepted', status: 'True', reason: 'Accepted', message: 'attached to ztunnel' },
      ],
    });
    await writer.idle();
    expect(writer.stats().written).toBe(written);
    expect(writer.stats().failed).toBe(0);
  });
});

describe('status writer queue', () => {
  it('is bounded: past maxQueue new objects are dropped; an unreachable API fails after maxAttempts', async () => {
    const dead = new KubeConfig();
    dead.loadFromString(api.kubeconfig().replace(/127\.0\.0\.1:\d+/, '127.0.0.1:9'));
    const w = new StatusWriter({ kubeConfig: dead, maxQueue: 2, maxAttempts: 3, backoffMs: 10, logger });
    const s = (name: string) => ({ kind: 'Service' as const, namespace: 'shop', name, conditions: [] });
    expect(w.enqueue(s('a'))).toBe(true); // taken by the worker at once
    expect(w.enqueue(s('b'))).toBe(true);
    expect(w.enqueue(s('c'))).toBe(true);
    expect(w.enqueue(s('d'))).toBe(false);
    expect(w.enqueue(s('b'))).toBe(true); // replaces the pending wish for b
    await w.idle();
    expect(w.stats()).toEqual({ written: 0, unchanged: 0, dropped: 1, failed: 3, queued: 0 });
    w.stop();
  });
});

describe('ambit waypoint-controller writes them (the process, against the API)', () => {
  it('a policy created after it starts reads ZtunnelAccepted; --no-policy-status writes none', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-status-'));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, api.kubeconfig());
    const run = (extra: string[]) =>
      spawn(
        process.execPath,
        [distPath('cli/ambit.ts'), 'waypoint-controller', '--kubeconfig', kubeconfig, ...extra],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
          env: { ...process.env, LOG_LEVEL: 'warn' },
        },
      );
    // The in-process controller of the tests above must not be the one writing.
    controller.stop();
    writer.stop();
    const child = run([]);
    try {
      await policy('from-the-process', {
        selector: { matchLabels: { app: 'web' } },
        action: 'DENY',
        rules: [{ from: [{ source: { namespaces: ['legacy'] } }] }],
      });
      expect(await condition('from-the-process', 'ZtunnelAccepted', { status: 'True' })).toMatchObject({
        reason: 'Accepted',
        message: 'attached to ztunnel',
      });
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    const quiet = run(['--no-policy-status']);
    try {
      await policy('not-written', {
        selector: { matchLabels: { app: 'web' } },
        action: 'ALLOW',
        rules: [{}],
      });
      // The process is up once the waypoint it manages has its Service (its first reconcile).
      await until('waypoint Service', () =>
        core.readNamespacedService({ namespace: 'shop', name: 'waypoint' }),
      );
      await new Promise((r) => setTimeout(r, 1000));
      expect(await apConditions('not-written')).toEqual([]);
    } finally {
      quiet.kill('SIGTERM');
      await new Promise((r) => quiet.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

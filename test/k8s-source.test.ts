// KubernetesSource against the test API server (a test double for the apiserver): objects and live
// events reach MeshState through the one Translator; a dropped watch and a 410 are recovered with no
// lost and no duplicated event; the agent's pod informer asks only for its node's pods.
import {
  AppsV1Api,
  type CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesSource, type SourceEvent } from '../core/sources/kubernetes.js';
import { findResource } from './k8s-api-server/resources.js';
import { startTestCluster } from './k8s-api-server/cluster.js';
import { TestKubernetesApiServer } from './k8s-api-server/server.js';

let server: TestKubernetesApiServer;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;
const sources: KubernetesSource[] = [];
const logger = pino({ level: 'silent' });

async function until(what: string, cond: () => boolean, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

async function pod(ns: string, name: string, node: string, ip: string, labels: Record<string, string> = {}) {
  await core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name, labels: { app: name, ...labels } },
      spec: {
        nodeName: node,
        serviceAccountName: name,
        containers: [{ name: 'app', image: 'app', ports: [{ containerPort: 8080 }] }],
      },
    },
  });
  await core.replaceNamespacedPodStatus({
    namespace: ns,
    name,
    body: {
      metadata: { name },
      status: {
        phase: 'Running',
        podIP: ip,
        podIPs: [{ ip }],
        conditions: [{ type: 'Ready', status: 'True' }],
      },
    },
  });
}

/** start() returns after the lists; the watches open right after. */
async function watchesOpen(n: number): Promise<void> {
  await until(`${n} watches open`, () => server.store.watchCount >= n);
}

function startSource(opts: { podNodeName?: string } = {}) {
  const source = new KubernetesSource({
    kubeConfig: kc,
    logger,
    backoffInitialMs: 50,
    backoffMaxMs: 200,
    syncTimeoutMs: 10_000,
    ...opts,
  });
  sources.push(source);
  const events: SourceEvent[] = [];
  source.onEvent((e) => events.push(e));
  return { source, events };
}

const workloadNames = (s: KubernetesSource) =>
  s.state
    .snapshot()
    .workloads.map((w) => `${w.namespace}/${w.name}`)
    .sort();

async function serverPodNames(): Promise<string[]> {
  const pods = await core.listPodForAllNamespaces();
  return pods.items.map((p) => `${p.metadata?.namespace}/${p.metadata?.name}`).sort();
}

/** No object version was delivered twice. */
function assertNoDuplicates(events: SourceEvent[]): void {
  const seen = new Set<string>();
  for (const e of events) {
    const k = `${e.kind}/${e.namespace}/${e.name}@${e.resourceVersion}/${e.type}`;
    expect(seen.has(k), `duplicate event ${k}`).toBe(false);
    seen.add(k);
  }
}

beforeAll(async () => {
  ({ api: server, kc, core } = await startTestCluster(['istio-system'], { bookmarkIntervalMs: 200 }));
  custom = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespace({
    body: { metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
  });
  await pod('shop', 'web', 'node-a', '10.1.0.10');
  await pod('shop', 'api', 'node-b', '10.1.1.10');
  await core.createNamespacedService({
    namespace: 'shop',
    body: {
      metadata: { name: 'api' },
      spec: { clusterIP: '10.96.0.20', selector: { app: 'api' }, ports: [{ port: 80, targetPort: 8080 }] },
    },
  });
  await kc.makeApiClient(DiscoveryV1Api).createNamespacedEndpointSlice({
    namespace: 'shop',
    body: {
      metadata: { name: 'api-1', labels: { 'kubernetes.io/service-name': 'api' } },
      addressType: 'IPv4',
      endpoints: [
        {
          addresses: ['10.1.1.10'],
          conditions: { ready: true },
          targetRef: { kind: 'Pod', name: 'api', namespace: 'shop' },
        },
      ],
      ports: [{ port: 8080, protocol: 'TCP' }],
    },
  });
  // A Deployment: a kind the mesh does not read; it must not disturb anything.
  await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
    namespace: 'shop',
    body: {
      metadata: { name: 'web' },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'a', image: 'a' }] } },
      },
    },
  });
});

afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

afterAll(async () => {
  await server.close();
});

describe('KubernetesSource', () => {
  it('lists every kind into MeshState through the translator, then follows live events', async () => {
    const { source } = startSource();
    await source.start();
    expect(source.synced).toBe(true);
    expect(workloadNames(source)).toEqual(['shop/api', 'shop/web']);
    const web = source.state.snapshot().workloads.find((w) => w.name === 'web')!;
    expect(web).toMatchObject({
      node: 'node-a',
      serviceAccount: 'web',
      tunnelProtocol: 'HBONE',
      addresses: ['10.1.0.10'],
    });
    expect(source.state.serviceByVip('10.96.0.20', 80)?.service.name).toBe('api');

    // A namespace label change un-enrolls its pods (tunnel protocol NONE), live.
    await core.patchNamespace(
      { name: 'shop', body: { metadata: { labels: { 'istio.io/dataplane-mode': null } } } },
      mergePatch,
    );
    await until(
      'web un-enrolled',
      () => source.state.snapshot().workloads.find((w) => w.name === 'web')?.tunnelProtocol === 'NONE',
    );
    await core.patchNamespace(
      { name: 'shop', body: { metadata: { labels: { 'istio.io/dataplane-mode': 'ambient' } } } },
      mergePatch,
    );
    await until(
      'web enrolled again',
      () => source.state.snapshot().workloads.find((w) => w.name === 'web')?.tunnelProtocol === 'HBONE',
    );

    // A new AuthorizationPolicy (a custom resource) compiles into the state; deleting it removes it.
    await custom.createNamespacedCustomObject({
      group: 'security.istio.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'authorizationpolicies',
      body: {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'deny-web', namespace: 'shop' },
        spec: {
          action: 'DENY',
          rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }] }],
        },
      },
    });
    await until('policy compiled', () =>
      source.state.snapshot().authorizations.some((a) => a.name === 'deny-web'),
    );
    await custom.deleteNamespacedCustomObject({
      group: 'security.istio.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'authorizationpolicies',
      name: 'deny-web',
    });
    await until(
      'policy removed',
      () => !source.state.snapshot().authorizations.some((a) => a.name === 'deny-web'),
    );
  });

  it('recovers a dropped watch by resuming from its resourceVersion: nothing lost, nothing repeated', async () => {
    const { source, events } = startSource();
    await source.start();
    await watchesOpen(10);
    const before = events.length;
    expect(server.dropWatches()).toBe(10);
    // Changes while the watches are down: a new pod, a changed pod, a deleted pod.
    await pod('shop', 'cart', 'node-a', '10.1.0.11');
    await core.patchNamespacedPod(
      { namespace: 'shop', name: 'web', body: { metadata: { labels: { version: 'v2' } } } },
      mergePatch,
    );
    await core.deleteNamespacedPod({ namespace: 'shop', name: 'api' });
    await until('state equals the server after the resume', () => {
      const w = source.state.snapshot().workloads;
      return (
        w.some((x) => x.name === 'cart') &&
        !w.some((x) => x.name === 'api') &&
        w.find((x) => x.name === 'web')?.labels.version === 'v2'
      );
    });
    expect(workloadNames(source)).toEqual(await serverPodNames());
    assertNoDuplicates(events);
    // Resumed, not re-listed: the events after the drop are exactly the changes (cart add + its status
    // update, web update, api delete), not a replay of every object.
    const after = events.slice(before).filter((e) => e.kind === 'Pod');
    expect(after.map((e) => `${e.type} ${e.name}`)).toEqual([
      'add cart',
      'update cart',
      'update web',
      'delete api',
    ]);
    // And the watch was resumed with the last resourceVersion it had seen, bookmarks allowed.
    expect(
      server.requests.some(
        (r) =>
          r.startsWith('GET /api/v1/pods?') &&
          r.includes('watch=true') &&
          r.includes('allowWatchBookmarks=true') &&
          /resourceVersion=\d+/.test(r),
      ),
    ).toBe(true);
  });

  it('recovers from 410 Gone by re-listing, turning what it missed into exact adds/updates/deletes', async () => {
    const { source, events } = startSource();
    await source.start();
    await watchesOpen(10);
    const before = events.length;
    server.dropWatches();
    // Changes while disconnected, then history is compacted: resuming is impossible (410).
    await pod('shop', 'search', 'node-b', '10.1.1.12');
    await core.deleteNamespacedPod({ namespace: 'shop', name: 'cart' });
    await core.patchNamespacedPod(
      { namespace: 'shop', name: 'web', body: { metadata: { labels: { version: 'v3' } } } },
      mergePatch,
    );
    server.compact();
    server.dropWatches(); // any watch that reconnected before the compaction starts over too
    await until('state equals the server after the re-list', () => {
      const w = source.state.snapshot().workloads;
      return (
        w.some((x) => x.name === 'search') &&
        !w.some((x) => x.name === 'cart') &&
        w.find((x) => x.name === 'web')?.labels.version === 'v3'
      );
    });
    expect(workloadNames(source)).toEqual(await serverPodNames());
    assertNoDuplicates(events);
    const after = events
      .slice(before)
      .filter((e) => e.kind === 'Pod')
      .map((e) => `${e.type} ${e.name}`);
    // Each change once: the re-list diff does not re-announce unchanged objects.
    expect(after.filter((e) => e.endsWith(' search')).length).toBeGreaterThanOrEqual(1);
    expect(after.filter((e) => e === 'delete cart')).toHaveLength(1);
    expect(after.filter((e) => e === 'update web')).toHaveLength(1);
    expect(after.some((e) => e.startsWith('update ') && !e.endsWith('web') && !e.endsWith('search'))).toBe(
      false,
    );
    // A re-list happened (a plain list request after the compaction).
    expect(
      server.requests.filter((r) => /^GET \/api\/v1\/pods\?limit=\d+$/.test(r)).length,
    ).toBeGreaterThanOrEqual(2);
  });

  it('lists and watches only its own node’s pods when given a node name (the bpf-redirect agent)', async () => {
    const { source } = startSource({ podNodeName: 'node-a' });
    await source.start();
    await watchesOpen(10);
    const nodes = new Set(source.state.snapshot().workloads.map((w) => w.node));
    expect([...nodes]).toEqual(['node-a']);
    expect(
      server.requests.some((r) =>
        r.startsWith('GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a&limit='),
      ),
    ).toBe(true);
    expect(
      server.requests.some(
        (r) =>
          r.startsWith('GET /api/v1/pods?') &&
          r.includes('watch=true') &&
          r.includes('fieldSelector=spec.nodeName%3Dnode-a'),
      ),
    ).toBe(true);
    await pod('shop', 'b-only', 'node-b', '10.1.1.13');
    await pod('shop', 'a-new', 'node-a', '10.1.0.13');
    await until('a-new arrives', () => workloadNames(source).includes('shop/a-new'));
    expect(workloadNames(source)).not.toContain('shop/b-only');
  });

  it('rejects a bad object with a one-line error naming it and its field, keeping the last good version', async () => {
    const { source } = startSource();
    await source.start();
    await custom.createNamespacedCustomObject({
      group: 'security.istio.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'authorizationpolicies',
      body: {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'ip-allow', namespace: 'shop' },
        spec: { action: 'ALLOW', rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }] }] },
      },
    });
    await until('policy compiled', () =>
      source.state.snapshot().authorizations.some((a) => a.name === 'ip-allow'),
    );
    await custom.patchNamespacedCustomObject(
      {
        group: 'security.istio.io',
        version: 'v1',
        namespace: 'shop',
        plural: 'authorizationpolicies',
        name: 'ip-allow',
        body: { spec: { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/99'] } }] }] } },
      },
      mergePatch,
    );
    await until('error reported', () => source.errors().length > 0);
    const msg = source.errors()[0]!.message;
    expect(msg).toContain('AuthorizationPolicy shop/ip-allow');
    expect(msg).toContain('spec.rules[0].from[0].source.ipBlocks[0]');
    expect(msg).toContain('last good version keeps serving');
    expect(source.state.snapshot().authorizations.some((a) => a.name === 'ip-allow')).toBe(true);
    await custom.deleteNamespacedCustomObject({
      group: 'security.istio.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'authorizationpolicies',
      name: 'ip-allow',
    });
    await until('error cleared with the object', () => source.errors().length === 0);
  });

  it('keeps retrying with backoff while the API server is unreachable and catches up when it returns', async () => {
    const { source } = startSource();
    await source.start();
    await watchesOpen(10);
    const port = Number(new URL(server.url).port);
    // Take the API server away (listener and every connection); the cluster changes meanwhile.
    const store = server.store;
    await server.close();
    const ns = store.tryGet(findResource('', 'v1', 'namespaces')!, undefined, 'shop')!;
    store.create(findResource('', 'v1', 'pods')!, 'shop', {
      metadata: { name: 'while-down', labels: { app: 'while-down' } },
      spec: { nodeName: 'node-a', containers: [{ name: 'a', image: 'a' }] },
      status: { phase: 'Running', podIP: '10.1.0.99', podIPs: [{ ip: '10.1.0.99' }] },
    } as never);
    expect(ns.metadata.name).toBe('shop');
    // Long enough for several failed reconnects (backoff 50 → 200 ms).
    await new Promise((r) => setTimeout(r, 600));
    server = new TestKubernetesApiServer({ bookmarkIntervalMs: 200, store });
    await server.listen(port);
    await until(
      'caught up after the outage',
      () => workloadNames(source).includes('shop/while-down'),
      15_000,
    );
    expect(workloadNames(source)).toEqual(await serverPodNames());
  }, 30_000);
});

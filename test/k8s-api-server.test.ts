// The test Kubernetes API server (a test double) speaks the protocol @kubernetes/client-node expects:
// typed clients, ListWatch informers, 410 Gone, bookmarks, TokenReview — all through a real KubeConfig.
import {
  AuthenticationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestKubernetesApiServer } from './k8s-api-server/server.js';

let server: TestKubernetesApiServer;
let kc: KubeConfig;

beforeAll(async () => {
  server = new TestKubernetesApiServer({ bookmarkIntervalMs: 100 });
  await server.listen();
  kc = new KubeConfig();
  kc.loadFromString(server.kubeconfig());
});
afterAll(async () => {
  await server.close();
});

/** Collects watch events until `until` holds (bounded by count and time). */
async function watchUntil(
  path: string,
  query: Record<string, string>,
  until: (
    events: {
      type: string;
      object: { metadata?: { name?: string; resourceVersion?: string }; code?: number };
    }[],
  ) => boolean,
  timeoutMs = 5000,
) {
  const events: {
    type: string;
    object: { metadata?: { name?: string; resourceVersion?: string }; code?: number };
  }[] = [];
  let ctl: AbortController | undefined;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(`watch ${path}: condition not met, got ${JSON.stringify(events.map((e) => e.type))}`),
        ),
      timeoutMs,
    );
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    new Watch(kc)
      .watch(
        path,
        query,
        (type, object) => {
          if (events.length < 1000) events.push({ type, object });
          if (until(events)) done();
        },
        () => {
          if (until(events)) done();
        },
      )
      .then((c) => {
        ctl = c;
      }, reject);
  });
  ctl?.abort();
  return events;
}

describe('test Kubernetes API server with @kubernetes/client-node', () => {
  it('creates, reads, lists with selectors, patches and deletes through the typed client', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({
      body: { metadata: { name: 'apps', labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    });
    const pod = (node: string, name: string): V1Pod => ({
      metadata: { name, labels: { app: name } },
      spec: { nodeName: node, containers: [{ name: 'c', image: 'x' }] },
    });
    await core.createNamespacedPod({ namespace: 'apps', body: pod('node-a', 'a1') });
    await core.createNamespacedPod({ namespace: 'apps', body: pod('node-b', 'b1') });
    await expect(
      core.createNamespacedPod({ namespace: 'apps', body: pod('node-a', 'a1') }),
    ).rejects.toMatchObject({ code: 409 });
    await expect(
      core.createNamespacedPod({ namespace: 'nope', body: pod('node-a', 'x') }),
    ).rejects.toMatchObject({ code: 404 });

    const onA = await core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=node-a' });
    expect(onA.items.map((p) => p.metadata?.name)).toEqual(['a1']);
    const byLabel = await core.listNamespacedPod({ namespace: 'apps', labelSelector: 'app in (b1,zz)' });
    expect(byLabel.items.map((p) => p.metadata?.name)).toEqual(['b1']);

    const patched = await core.patchNamespacedPod(
      {
        namespace: 'apps',
        name: 'a1',
        body: { metadata: { annotations: { 'ambient.istio.io/redirection': 'enabled' } } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(patched.metadata?.annotations?.['ambient.istio.io/redirection']).toBe('enabled');
    const read = await core.readNamespacedPod({ namespace: 'apps', name: 'a1' });
    expect(read.metadata?.resourceVersion).toBe(patched.metadata?.resourceVersion);

    // Optimistic concurrency: an update from a stale read conflicts.
    const stale = { ...read, metadata: { ...read.metadata, resourceVersion: '1' } };
    await expect(
      core.replaceNamespacedPod({ namespace: 'apps', name: 'a1', body: stale }),
    ).rejects.toMatchObject({ code: 409 });

    await core.deleteNamespacedPod({ namespace: 'apps', name: 'b1' });
    await expect(core.readNamespacedPod({ namespace: 'apps', name: 'b1' })).rejects.toMatchObject({
      code: 404,
    });
  });

  it('serves custom resources through the generic object client (discovery included)', async () => {
    const objects = KubernetesObjectApi.makeApiClient(kc);
    await objects.create({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-all', namespace: 'apps' },
      spec: {},
    } as never);
    const list = await objects.list('security.istio.io/v1', 'AuthorizationPolicy', 'apps');
    expect(list.items.map((o) => o.metadata?.name)).toEqual(['deny-all']);
  });

  it('watches from a resourceVersion: replays later events, then streams, with bookmarks', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const before = await core.listNamespacedConfigMap({ namespace: 'apps' });
    const rv = before.metadata?.resourceVersion ?? '';
    await core.createNamespacedConfigMap({
      namespace: 'apps',
      body: { metadata: { name: 'c1' }, data: { k: 'v' } },
    });
    let deleted = false;
    const events = await watchUntil(
      '/api/v1/namespaces/apps/configmaps',
      { resourceVersion: rv, allowWatchBookmarks: 'true' },
      (ev) => {
        if (!deleted && ev.some((e) => e.type === 'ADDED')) {
          deleted = true;
          void core.deleteNamespacedConfigMap({ namespace: 'apps', name: 'c1' });
        }
        return ev.some((e) => e.type === 'BOOKMARK') && ev.some((e) => e.type === 'DELETED');
      },
    );
    // The first event is the replayed ADDED; the delete arrives live, with a newer resourceVersion.
    expect(events[0]).toMatchObject({ type: 'ADDED', object: { metadata: { name: 'c1' } } });
    const del = events.find((e) => e.type === 'DELETED');
    expect(del?.object.metadata?.name).toBe('c1');
    expect(Number(del?.object.metadata?.resourceVersion)).toBeGreaterThan(
      Number(events[0]?.object.metadata?.resourceVersion),
    );
    expect(events.some((e) => e.type === 'BOOKMARK')).toBe(true);
  }, 10_000);

  it('answers a watch from a compacted resourceVersion with a 410 ERROR event', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const old = (await core.listNamespacedConfigMap({ namespace: 'apps' })).metadata?.resourceVersion ?? '';
    await core.createNamespacedConfigMap({ namespace: 'apps', body: { metadata: { name: 'c2' } } });
    server.compact();
    const events = await watchUntil(
      '/api/v1/namespaces/apps/configmaps',
      { resourceVersion: old },
      (ev) => ev.length > 0,
    );
    expect(events[0]).toMatchObject({ type: 'ERROR', object: { code: 410 } });
  });

  it('reviews tokens with audiences and bound pod/node extras', async () => {
    server.addToken({
      token: 'tok-ztunnel-a',
      namespace: 'istio-system',
      serviceAccount: 'ztunnel',
      pod: { name: 'ztunnel-a' },
      node: 'node-a',
    });
    const auth = kc.makeApiClient(AuthenticationV1Api);
    const ok = await auth.createTokenReview({
      body: { spec: { token: 'tok-ztunnel-a', audiences: ['istio-ca'] } },
    });
    expect(ok.status?.authenticated).toBe(true);
    expect(ok.status?.user?.username).toBe('system:serviceaccount:istio-system:ztunnel');
    expect(ok.status?.user?.extra?.['authentication.kubernetes.io/node-name']).toEqual(['node-a']);
    const wrongAud = await auth.createTokenReview({
      body: { spec: { token: 'tok-ztunnel-a', audiences: ['vault'] } },
    });
    expect(wrongAud.status?.authenticated).toBe(false);
    const unknown = await auth.createTokenReview({
      body: { spec: { token: 'nope', audiences: ['istio-ca'] } },
    });
    expect(unknown.status?.authenticated).toBe(false);
  });

  it('stores Leases with optimistic concurrency (leader election relies on it)', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: 'istio-system' } } });
    const coord = kc.makeApiClient(CoordinationV1Api);
    const lease = await coord.createNamespacedLease({
      namespace: 'istio-system',
      body: { metadata: { name: 'ambit-ca' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15 } },
    });
    const taken = await coord.replaceNamespacedLease({
      namespace: 'istio-system',
      name: 'ambit-ca',
      body: { ...lease, spec: { ...lease.spec, holderIdentity: 'b' } },
    });
    expect(taken.spec?.holderIdentity).toBe('b');
    await expect(
      coord.replaceNamespacedLease({
        namespace: 'istio-system',
        name: 'ambit-ca',
        body: { ...lease, spec: { ...lease.spec, holderIdentity: 'c' } },
      }),
    ).rejects.toMatchObject({ code: 409 });
  });

  it('garbage-collects objects whose owner is deleted', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const owner = await core.createNamespacedConfigMap({
      namespace: 'apps',
      body: { metadata: { name: 'owner' } },
    });
    await core.createNamespacedSecret({
      namespace: 'apps',
      body: {
        metadata: {
          name: 'owned',
          ownerReferences: [
            { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata?.uid ?? '' },
          ],
        },
      },
    });
    await core.deleteNamespacedConfigMap({ namespace: 'apps', name: 'owner' });
    let gone = false;
    for (let i = 0; i < 50 && !gone; i++) {
      gone = await core.readNamespacedSecret({ namespace: 'apps', name: 'owned' }).then(
        () => false,
        () => true,
      );
      if (!gone) await new Promise((r) => setTimeout(r, 20));
    }
    expect(gone).toBe(true);
  });
});

// KubernetesSource against the test API server with realistic objects: lists arrive in pages
// (limit/continue) and a page whose continue token expired re-lists without re-announcing anything;
// what the source keeps is the stripped object (no managedFields), translated into the same state as
// the full objects; the first-sync deadline is the caller's.
import { createServer, type Server } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { namespaceName, podName, realisticPod, realisticService, realisticSlice } from './scale-objects.js';
import { KubernetesSource, KubernetesSourceError, type SourceEvent } from '../core/sources/kubernetes.js';
import { type MeshObject, validateObject } from '../core/sources/schema.js';
import { Translator } from '../core/sources/translate.js';
import { findKind } from './k8s-api-server/resources.js';
import { TestKubernetesApiServer } from './k8s-api-server/server.js';

const PODS = 430;
let server: TestKubernetesApiServer;
let kc: KubeConfig;
const sources: KubernetesSource[] = [];
const logger = pino({ level: 'silent' });

beforeAll(async () => {
  server = new TestKubernetesApiServer({ bookmarkIntervalMs: 60_000 });
  await server.listen();
  kc = new KubeConfig();
  kc.loadFromString(server.kubeconfig());
  const st = server.store;
  st.create(findKind('v1', 'Namespace')!, undefined, {
    metadata: { name: 'ns-0', labels: { 'istio.io/dataplane-mode': 'ambient' } },
  });
  for (let i = 0; i < PODS; i++)
    st.create(findKind('v1', 'Pod')!, namespaceName(i), realisticPod(i) as never);
  for (let s = 0; s < PODS / 5; s++) {
    st.create(findKind('v1', 'Service')!, 'ns-0', realisticService(s) as never);
    st.create(findKind('discovery.k8s.io/v1', 'EndpointSlice')!, 'ns-0', realisticSlice(s, PODS) as never);
  }
});

afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

afterAll(async () => {
  await server.close();
});

function source(opts: Partial<ConstructorParameters<typeof KubernetesSource>[0]> = {}) {
  const s = new KubernetesSource({
    kubeConfig: kc,
    logger,
    kinds: ['Namespace', 'Pod', 'Service', 'EndpointSlice'],
    backoffInitialMs: 50,
    backoffMaxMs: 200,
    ...opts,
  });
  sources.push(s);
  return s;
}

const podListRequests = () =>
  server.requests.filter((r) => r.startsWith('GET /api/v1/pods?') && !r.includes('watch=true'));

describe('KubernetesSource with paged lists and stripped objects', () => {
  it('lists in pages of `limit`, following continue tokens, into the whole state', async () => {
    server.requests.length = 0;
    const s = source({ pageSize: 100 });
    await s.start();
    const pages = podListRequests();
    expect(pages).toHaveLength(Math.ceil(PODS / 100));
    expect(pages.every((r) => r.includes('limit=100'))).toBe(true);
    expect(pages.slice(1).every((r) => r.includes('continue='))).toBe(true);
    expect(s.state.workloads()).toHaveLength(PODS);
    expect(s.state.workloadsOfService('ns-0/svc-3.ns-0.svc.cluster.local')).toHaveLength(5);
  });

  it('re-lists when a continue token has expired (410), announcing each object once', async () => {
    server.requests.length = 0;
    const s = source({ pageSize: 100 });
    const events: SourceEvent[] = [];
    let expired = false;
    s.onEvent((e) => {
      events.push(e);
      // While the first page is being applied: the list's snapshot is gone before page 2 is asked for.
      if (e.kind === 'Pod' && !expired) {
        expired = true;
        server.expireContinueTokens();
      }
    });
    await s.start();
    const pages = podListRequests();
    // Page 1, page 2 refused with 410, then a new list from the start: 5 pages.
    expect(pages.filter((r) => !r.includes('continue='))).toHaveLength(2);
    expect(pages.length).toBe(1 + 1 + Math.ceil(PODS / 100));
    const adds = events.filter((e) => e.kind === 'Pod');
    expect(adds).toHaveLength(PODS);
    expect(new Set(adds.map((e) => e.name)).size).toBe(PODS);
    expect(s.state.workloads()).toHaveLength(PODS);
  });

  it('keeps stripped objects, translated into the state the full objects give', async () => {
    const s = source();
    await s.start();
    const kept = s.translator.object('Pod', 'ns-0', podName(17)) as unknown as {
      metadata: Record<string, unknown>;
      spec: Record<string, unknown>;
      status: Record<string, unknown>;
    };
    expect(kept.metadata.managedFields).toBeUndefined();
    expect(kept.metadata.annotations).toBeUndefined();
    expect(kept.spec.volumes).toBeUndefined();
    expect(kept.status.containerStatuses).toBeUndefined();
    // The same objects, unstripped, straight from the store through the same translation.
    const full = new Translator();
    const raw = [
      ...server.store.list(
        findKind('v1', 'Namespace')!,
        undefined,
        () => true,
        () => true,
      ),
      ...server.store.list(
        findKind('v1', 'Pod')!,
        undefined,
        () => true,
        () => true,
      ),
      ...server.store.list(
        findKind('v1', 'Service')!,
        undefined,
        () => true,
        () => true,
      ),
      ...server.store.list(
        findKind('discovery.k8s.io/v1', 'EndpointSlice')!,
        undefined,
        () => true,
        () => true,
      ),
    ];
    full.applyBatch(
      raw.map((o) => {
        const v = validateObject(o);
        if (!v.ok) throw new Error('invalid');
        return v.object as MeshObject;
      }),
    );
    expect(s.state.snapshot()).toEqual(full.state.snapshot());
    // A status-only change the mesh does not read (a container restart) reaches no subscriber.
    const changes: unknown[] = [];
    s.state.onChange((c) => changes.push(...c));
    const POD = findKind('v1', 'Pod')!;
    const cur = server.store.get(POD, 'ns-0', podName(17)) as unknown as {
      status: { containerStatuses: { restartCount: number }[] };
    };
    cur.status.containerStatuses[0]!.restartCount = 1;
    server.store.update(POD, 'ns-0', podName(17), cur as never, 'status');
    // …while a change it reads (the pod becomes not ready) does, promptly.
    const notReady = server.store.get(POD, 'ns-0', podName(18)) as unknown as {
      status: { conditions: { type: string; status: string }[] };
    };
    for (const c of notReady.status.conditions) if (c.type === 'Ready') c.status = 'False';
    server.store.update(POD, 'ns-0', podName(18), notReady as never, 'status');
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && changes.length === 0) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    expect(changes).toEqual([
      { kind: 'workload', key: `Kubernetes//v1/Pod/ns-0/${podName(18)}`, op: 'upsert' },
    ]);
  });

  it('fails start() with SYNC_TIMEOUT after the deadline it is given, naming what did not sync', async () => {
    // An "API server" that accepts connections and never answers.
    const silent: Server = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const dead = new KubeConfig();
    dead.loadFromString(server.kubeconfig().replace(server.url, `http://127.0.0.1:${port}`));
    try {
      const s = source({ kubeConfig: dead, syncTimeoutMs: 400, kinds: ['Namespace', 'Pod'] });
      const t0 = Date.now();
      const err = await s.start().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(KubernetesSourceError);
      expect((err as KubernetesSourceError).code).toBe('SYNC_TIMEOUT');
      expect((err as Error).message).toContain('Namespace, Pod within 400 ms');
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      silent.close();
    }
  });
});

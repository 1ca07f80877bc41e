// The CA on Kubernetes, over real gRPC/TLS, against the test API server (a test double for the
// apiserver): root in Secret istio-ca-secret, istio-ca-root-cert in every namespace kept in sync,
// TokenReview authentication, impersonation only for pods on the caller's node (from the informer),
// Lease leader election.
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CaClient } from '../ca/client/ca-client.js';
import { createKeyAndCsr } from '../ca/client/csr.js';
import { certificatesOf } from '../ca/pem.js';
import { type KubernetesCa, startKubernetesCa } from '../ca/server/kube-ca.js';
import { LeaseLeaderElector } from '../ca/server/kube-leader.js';
import { parseSpiffeId } from '../core/identity/spiffe.js';
import { WdsSource, WdsSyncTimeout } from '../core/sources/wds.js';
import { startTestCluster } from './k8s-api-server/cluster.js';
import type { TestKubernetesApiServer } from './k8s-api-server/server.js';
import { refusal } from './ca-refusal.js';

const logger = pino({ level: 'silent' });
let api: TestKubernetesApiServer;
let kc: KubeConfig;
let core: CoreV1Api;
let ca: KubernetesCa;

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 2000 && Date.now() < deadline; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

async function pod(ns: string, name: string, sa: string, node: string, ip: string): Promise<string> {
  const p = await core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name, labels: { app: name } },
      spec: { nodeName: node, serviceAccountName: sa, containers: [{ name: 'c', image: 'c' }] },
    },
  });
  await core.replaceNamespacedPodStatus({
    namespace: ns,
    name,
    body: { metadata: { name }, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } },
  });
  return p.metadata?.uid ?? '';
}

const client = (token: string) =>
  new CaClient({ address: ca.server.address, rootsPem: () => ca.server.rootsPem(), token: () => token });

async function rootConfigMap(ns: string): Promise<string | undefined> {
  try {
    return (await core.readNamespacedConfigMap({ namespace: ns, name: 'istio-ca-root-cert' })).data?.[
      'root-cert.pem'
    ];
  } catch {
    return undefined;
  }
}

beforeAll(async () => {
  ({ api, kc, core } = await startTestCluster(['istio-system', 'shop', 'kube-system']));
  const ztA = await pod('istio-system', 'ztunnel-a', 'ztunnel', 'node-a', '10.0.0.2');
  await pod('istio-system', 'ztunnel-b', 'ztunnel', 'node-b', '10.0.1.2');
  await pod('shop', 'sleep', 'sleep', 'node-a', '10.1.0.5');
  // Node A's ztunnel carries the node-name extra (Kubernetes 1.30+); node B's only its pod (older
  // clusters): the CA finds its node through the pod.
  api.addToken({
    token: 'tok-zt-a',
    namespace: 'istio-system',
    serviceAccount: 'ztunnel',
    pod: { name: 'ztunnel-a', uid: ztA },
    node: 'node-a',
  });
  api.addToken({
    token: 'tok-zt-b',
    namespace: 'istio-system',
    serviceAccount: 'ztunnel',
    pod: { name: 'ztunnel-b' },
  });
  api.addToken({ token: 'tok-sleep', namespace: 'shop', serviceAccount: 'sleep' });
  api.addToken({ token: 'tok-vault', namespace: 'shop', serviceAccount: 'sleep', audiences: ['vault'] });
  ca = await startKubernetesCa({ kubeConfig: kc, config: { listen: '127.0.0.1:0' }, logger });
});

afterAll(async () => {
  await ca?.close();
  await api?.close();
});

describe('CA on Kubernetes', () => {
  it('keeps its self-signed root in Secret istio-ca-secret with Istio’s keys', async () => {
    const secret = await core.readNamespacedSecret({ namespace: 'istio-system', name: 'istio-ca-secret' });
    expect(secret.type).toBe('istio.io/ca-root');
    expect(Object.keys(secret.data ?? {}).sort()).toEqual([
      'ca-cert.pem',
      'ca-key.pem',
      'cert-chain.pem',
      'root-cert.pem',
    ]);
    const caCert = Buffer.from(secret.data?.['ca-cert.pem'] ?? '', 'base64').toString();
    expect(certificatesOf(ca.server.rootsPem())).toContain(certificatesOf(caCert)[0]);
  });

  it('a restarted CA loads the same root from the Secret instead of minting a new one', async () => {
    const again = await startKubernetesCa({
      kubeConfig: kc,
      config: { listen: '127.0.0.1:0' },
      logger,
      publishRoots: false,
    });
    try {
      expect(again.server.rootsPem()).toBe(ca.server.rootsPem());
    } finally {
      await again.close();
    }
  });

  it('publishes istio-ca-root-cert to every namespace but Kubernetes’ own, and keeps it in sync', async () => {
    const roots = ca.server.rootsPem();
    await until(
      'root ConfigMaps',
      async () => (await rootConfigMap('shop')) === roots && (await rootConfigMap('istio-system')) === roots,
    );
    expect(await rootConfigMap('kube-system')).toBeUndefined();
    // A new namespace gets one; a deleted one comes back; an edited one is restored.
    await core.createNamespace({ body: { metadata: { name: 'late' } } });
    await until('new namespace gets the roots', async () => (await rootConfigMap('late')) === roots);
    await core.deleteNamespacedConfigMap({ namespace: 'shop', name: 'istio-ca-root-cert' });
    await until('deleted ConfigMap recreated', async () => (await rootConfigMap('shop')) === roots);
    await core.replaceNamespacedConfigMap({
      namespace: 'late',
      name: 'istio-ca-root-cert',
      body: { metadata: { name: 'istio-ca-root-cert' }, data: { 'root-cert.pem': 'tampered' } },
    });
    await until('edited ConfigMap restored', async () => (await rootConfigMap('late')) === roots);
  });

  it('signs a workload’s own identity for its service-account token (TokenReview, audience istio-ca)', async () => {
    const id = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/sleep');
    const { csrPem } = await createKeyAndCsr(id);
    const chain = await client('tok-sleep').createCertificate(csrPem, 3600);
    expect(new X509Certificate(chain[0]!).subjectAltName).toBe('URI:spiffe://cluster.local/ns/shop/sa/sleep');
  });

  it('lets a node’s ztunnel impersonate a workload with a pod on its node', async () => {
    const { csrPem } = await createKeyAndCsr(parseSpiffeId('spiffe://cluster.local/ns/shop/sa/sleep'));
    const chain = await client('tok-zt-a').createCertificate(
      csrPem,
      3600,
      'spiffe://cluster.local/ns/shop/sa/sleep',
    );
    expect(new X509Certificate(chain[0]!).subjectAltName).toBe('URI:spiffe://cluster.local/ns/shop/sa/sleep');
  });

  it('refuses a CSR from a ztunnel on another node than the pod (PERMISSION_DENIED)', async () => {
    const { csrPem } = await createKeyAndCsr(parseSpiffeId('spiffe://cluster.local/ns/shop/sa/sleep'));
    const err = await refusal(
      client('tok-zt-b').createCertificate(csrPem, 3600, 'spiffe://cluster.local/ns/shop/sa/sleep'),
    );
    expect(err.grpcCode).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.message).toContain('node-b');
  });

  it('follows pods live: once the workload runs on node B too, node B may ask for it', async () => {
    await pod('shop', 'sleep-2', 'sleep', 'node-b', '10.1.1.5');
    const { csrPem } = await createKeyAndCsr(parseSpiffeId('spiffe://cluster.local/ns/shop/sa/sleep'));
    await until('informer sees sleep-2', () =>
      ca.source.state.hasWorkloadWithIdentityOnNode('spiffe://cluster.local/ns/shop/sa/sleep', 'node-b'),
    );
    const chain = await client('tok-zt-b').createCertificate(
      csrPem,
      3600,
      'spiffe://cluster.local/ns/shop/sa/sleep',
    );
    expect(chain.length).toBeGreaterThanOrEqual(2);
  });

  it('answers UNAUTHENTICATED for an unknown token and for a token minted for another audience', async () => {
    const { csrPem } = await createKeyAndCsr(parseSpiffeId('spiffe://cluster.local/ns/shop/sa/sleep'));
    expect((await refusal(client('no-such-token').createCertificate(csrPem, 3600))).grpcCode).toBe(
      grpc.status.UNAUTHENTICATED,
    );
    expect((await refusal(client('tok-vault').createCertificate(csrPem, 3600))).grpcCode).toBe(
      grpc.status.UNAUTHENTICATED,
    );
  });

  it('elects one leader on a Lease; when it stops, another takes over', async () => {
    const mk = (identity: string) =>
      new LeaseLeaderElector({
        kubeConfig: kc,
        namespace: 'istio-system',
        name: 'test-election',
        identity,
        leaseDurationSeconds: 2,
        renewDeadlineMs: 1000,
        retryPeriodMs: 100,
      });
    const a = mk('ca-a');
    const b = mk('ca-b');
    try {
      await a.start();
      await b.start();
      await until('exactly one leader', () => a.isLeader() !== b.isLeader());
      const [leader, follower] = a.isLeader() ? [a, b] : [b, a];
      // Over several renew periods, leadership stays put.
      await new Promise((r) => setTimeout(r, 500));
      expect(leader.isLeader() && !follower.isLeader()).toBe(true);
      await leader.stop();
      await until('the follower takes over', () => follower.isLeader(), 5000);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

describe('the discovery tier beside the CA (istiod: XDS and CA on 15012)', () => {
  const wds = (token: string, syncTimeoutMs = 5000) =>
    new WdsSource({
      address: ca.server.address,
      rootsPem: () => ca.server.rootsPem(),
      token: () => token,
      nodeId: 'ztunnel~0.0.0.0~ztunnel-a.istio-system~istio-system.svc.cluster.local',
      nodeMetadata: { NODE_NAME: 'node-a' },
      syncTimeoutMs,
      logger,
    });

  it("serves the cluster's workloads and services over Istio's WDS to a ztunnel's token, and follows changes", async () => {
    const z = wds('tok-zt-a');
    await z.start();
    try {
      // What the API server holds, as a ztunnel on node A receives it: no API-server watch of its own.
      const sleep = z.state.workloadByIp('10.1.0.5');
      expect(sleep?.name).toBe('sleep');
      expect(sleep?.namespace).toBe('shop');
      expect(sleep?.node).toBe('node-a');
      expect(sleep?.serviceAccount).toBe('sleep');
      // A Service and its EndpointSlice added to the cluster reach the ztunnel as deltas.
      await core.createNamespacedService({
        namespace: 'shop',
        body: {
          metadata: { name: 'sleep' },
          spec: {
            clusterIP: '10.96.7.7',
            selector: { app: 'sleep' },
            ports: [{ port: 80, targetPort: 8080 }],
          },
        },
      });
      await until(
        'the ztunnel sees the Service VIP',
        () => z.state.serviceByVip('10.96.7.7', 80) !== undefined,
      );
      expect(z.state.serviceByVip('10.96.7.7', 80)?.service.name).toBe('sleep');
      await pod('shop', 'sleep-wds', 'sleep', 'node-b', '10.1.1.9');
      await until('the ztunnel sees the new pod', () => z.state.workloadByIp('10.1.1.9') !== undefined);
      expect(z.state.workloadByIp('10.1.1.9')?.node).toBe('node-b');
      await core.deleteNamespacedPod({ namespace: 'shop', name: 'sleep-wds' });
      await until('the ztunnel drops the deleted pod', () => z.state.workloadByIp('10.1.1.9') === undefined);
    } finally {
      await z.stop();
    }
  });

  it('refuses a subscriber whose token the API server does not know (the first sync never completes)', async () => {
    const z = wds('tok-nobody', 1500);
    const err = await z.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WdsSyncTimeout);
    expect(String(err)).toMatch(/UNAUTHENTICATED|authentication/i);
    await z.stop();
  });
});

describe('CA replicas with leader election', () => {
  it('two replicas share one root; only the leader publishes; when it stops, the other takes over', async () => {
    const { api: api2, kc: kc2, core: core2 } = await startTestCluster(['istio-system']);
    const lease = { durationSeconds: 2, renewDeadlineMs: 1000, retryPeriodMs: 100 };
    const start = (identity: string) =>
      startKubernetesCa({
        kubeConfig: kc2,
        config: { listen: '127.0.0.1:0' },
        leaderElection: true,
        identity,
        lease,
        logger,
      });
    const first = await start('ca-0');
    // The second replica starts while the first leads: it must load the leader's root, not mint one.
    const second = await start('ca-1');
    const replicas = [first, second];
    try {
      expect(second.server.rootsPem()).toBe(first.server.rootsPem());
      await until('exactly one leader', () => replicas.filter((r) => r.elector?.isLeader()).length === 1);
      const leader = replicas.find((r) => r.elector?.isLeader())!;
      const follower = replicas.find((r) => r !== leader)!;
      const cmWrites = () =>
        api2.requests.filter((r) => r.startsWith('POST /api/v1/namespaces/') && r.endsWith('/configmaps'))
          .length;
      await core2.createNamespace({ body: { metadata: { name: 'one' } } });
      const cm = async (ns: string) =>
        core2.readNamespacedConfigMap({ namespace: ns, name: 'istio-ca-root-cert' }).then(
          (c) => c.data?.['root-cert.pem'],
          () => undefined,
        );
      await until('published by the leader', async () => (await cm('one')) === first.server.rootsPem());
      const writes = cmWrites();
      // Only one replica wrote (a follower writing too would make this 2 per namespace, or conflict).
      expect(writes).toBe(2); // istio-system and one
      await leader.close();
      await until('follower leads', () => follower.elector?.isLeader() === true, 8000);
      await core2.createNamespace({ body: { metadata: { name: 'two' } } });
      await until(
        'published by the new leader',
        async () => (await cm('two')) === follower.server.rootsPem(),
      );
    } finally {
      for (const r of replicas) await r.close();
      await api2.close();
    }
  }, 30_000);
});

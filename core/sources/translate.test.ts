import { describe, expect, it } from 'vitest';
import type { StateChange } from '../state/state.js';
import { type MeshObject, validateObject } from './schema.js';
import { Translator } from './translate.js';

/** Validated objects, as every source hands them over. */
function obj(raw: Record<string, unknown>): MeshObject {
  const v = validateObject(raw);
  if (!v.ok) throw new Error(v.ignored ? v.reason : v.error.message);
  return v.object;
}

const ns = (name: string, labels: Record<string, string> = {}) =>
  obj({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const pod = (
  name: string,
  namespace: string,
  ip: string,
  extra: { labels?: Record<string, string>; spec?: object; status?: object; metadata?: object } = {},
) =>
  obj({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: extra.labels ?? {}, ...(extra.metadata ?? {}) },
    spec: { nodeName: 'node-a', ...(extra.spec ?? {}) },
    status: { podIP: ip, ...(extra.status ?? {}) },
  });
const svc = (name: string, namespace: string, spec: object, labels: Record<string, string> = {}) =>
  obj({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace, labels }, spec });
const ap = (name: string, namespace: string, spec: object) =>
  obj({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name, namespace },
    spec,
  });
const gateway = (
  name: string,
  namespace: string,
  waypointFor?: string,
  cls = 'istio-waypoint',
  allowedRoutes?: object,
) =>
  obj({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace, labels: waypointFor ? { 'istio.io/waypoint-for': waypointFor } : {} },
    spec: {
      gatewayClassName: cls,
      listeners: [
        { name: 'mesh', port: 15008, protocol: 'HBONE', ...(allowedRoutes ? { allowedRoutes } : {}) },
      ],
    },
  });
const uid = (namespace: string, name: string) => `Kubernetes//v1/Pod/${namespace}/${name}`;

describe('Pod → Workload', () => {
  it('fills identity, uid, canonical labels and HBONE for an enrolled pod like istiod', () => {
    const t = new Translator();
    t.applyBatch([
      ns('shop', { 'istio.io/dataplane-mode': 'ambient' }),
      pod('web-5d9f-x1', 'shop', '10.1.0.5', {
        labels: {
          app: 'web',
          'app.kubernetes.io/name': 'web-ui',
          version: 'v3',
          'pod-template-hash': '5d9f',
        },
        metadata: { ownerReferences: [{ kind: 'ReplicaSet', name: 'web-5d9f', controller: true }] },
        spec: { serviceAccountName: 'web-sa', nodeName: 'node-b' },
      }),
    ]);
    const w = t.state.workloadByIp('10.1.0.5')!;
    expect(w).toMatchObject({
      uid: 'Kubernetes//v1/Pod/shop/web-5d9f-x1',
      name: 'web-5d9f-x1',
      namespace: 'shop',
      node: 'node-b',
      serviceAccount: 'web-sa',
      trustDomain: 'cluster.local',
      tunnelProtocol: 'HBONE',
      canonicalName: 'web-ui',
      canonicalRevision: 'v3',
      workloadName: 'web',
      workloadType: 'DEPLOYMENT',
      status: 'HEALTHY',
      networkMode: 'STANDARD',
      nativeTunnel: false,
    });
    expect(t.state.hasWorkloadWithIdentityOnNode('spiffe://cluster.local/ns/shop/sa/web-sa', 'node-b')).toBe(
      true,
    );
  });

  it('defaults SA to default, revision to latest, and leaves non-enrolled pods on NONE', () => {
    const t = new Translator({ trustDomain: 'example.org' });
    t.applyBatch([ns('plain'), pod('p', 'plain', '10.1.0.6', { labels: { app: 'x' } })]);
    expect(t.state.workloadByUid(uid('plain', 'p'))).toMatchObject({
      serviceAccount: 'default',
      trustDomain: 'example.org',
      canonicalName: 'x',
      canonicalRevision: 'latest',
      tunnelProtocol: 'NONE',
    });
  });

  it('follows enrollment edits on the namespace and the pod', () => {
    const t = new Translator();
    t.applyBatch([ns('a'), pod('p', 'a', '10.1.0.7')]);
    expect(t.state.workloadByUid(uid('a', 'p'))?.tunnelProtocol).toBe('NONE');
    t.apply(ns('a', { 'istio.io/dataplane-mode': 'ambient' }));
    expect(t.state.workloadByUid(uid('a', 'p'))?.tunnelProtocol).toBe('HBONE');
    t.apply(pod('p', 'a', '10.1.0.7', { labels: { 'istio.io/dataplane-mode': 'none' } }));
    expect(t.state.workloadByUid(uid('a', 'p'))?.tunnelProtocol).toBe('NONE');
  });

  it('marks host-network pods and keeps them out of the IP index; dual-stack pods get both IPs', () => {
    const t = new Translator();
    t.applyBatch([
      ns('a', { 'istio.io/dataplane-mode': 'ambient' }),
      pod('h', 'a', '192.168.0.2', { spec: { hostNetwork: true } }),
      pod('d', 'a', '10.1.0.8', { status: { podIPs: [{ ip: '10.1.0.8' }, { ip: 'fd00::8' }] } }),
    ]);
    expect(t.state.workloadByUid(uid('a', 'h'))).toMatchObject({
      networkMode: 'HOST_NETWORK',
      tunnelProtocol: 'NONE',
    });
    expect(t.state.workloadByIp('192.168.0.2')).toBeUndefined();
    expect(t.state.workloadByIp('fd00::8')?.name).toBe('d');
  });

  it('is unhealthy without an IP, when not Ready, or when finished', () => {
    const t = new Translator();
    t.applyBatch([
      ns('a'),
      obj({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'pending', namespace: 'a' }, spec: {} }),
      pod('notready', 'a', '10.1.0.9', { status: { conditions: [{ type: 'Ready', status: 'False' }] } }),
      pod('done', 'a', '10.1.0.10', { status: { phase: 'Succeeded' } }),
    ]);
    for (const n of ['pending', 'notready', 'done'])
      expect(t.state.workloadByUid(uid('a', n))?.status).toBe('UNHEALTHY');
  });

  it('removes the workload when the pod is removed', () => {
    const t = new Translator();
    t.applyBatch([ns('a'), pod('p', 'a', '10.1.0.11')]);
    t.remove('Pod', 'a', 'p');
    expect(t.state.workloadByIp('10.1.0.11')).toBeUndefined();
  });
});

describe('Service → Service and endpoints', () => {
  it('builds hostname, VIPs and ports with Istio protocol selection', () => {
    const t = new Translator();
    t.apply(
      svc('api', 'shop', {
        clusterIPs: ['10.96.0.1', 'fd00::1'],
        ports: [
          { name: 'http-web', port: 80, targetPort: 8080 },
          { name: 'x', port: 81, appProtocol: 'http2' },
          { name: 'grpc', port: 90, targetPort: 'grpc-port' },
          { name: 'tcp-db', port: 5432 },
          { name: 'other', port: 99, appProtocol: 'kubernetes.io/h2c' },
          { port: 100 },
        ],
      }),
    );
    const s = t.state.serviceByKey('shop/api.shop.svc.cluster.local')!;
    expect(s.addresses).toEqual(['10.96.0.1', 'fd00::1']);
    expect(s.ports.map((p) => [p.servicePort, p.targetPort, p.appProtocol])).toEqual([
      [80, 8080, 'HTTP11'],
      [81, 81, 'HTTP2'],
      [90, 0, 'GRPC'],
      [5432, 5432, 'TCP'],
      [99, 99, 'HTTP2'],
      [100, 100, 'UNKNOWN'],
    ]);
    expect(t.state.serviceByVip('fd00::1', 90)?.service.name).toBe('api');
  });

  it('treats clusterIP None as headless', () => {
    const t = new Translator();
    t.apply(svc('db', 'shop', { clusterIP: 'None', ports: [{ port: 5432 }] }));
    expect(t.state.serviceByKey('shop/db.shop.svc.cluster.local')?.addresses).toEqual([]);
  });

  it('selects endpoints by selector and resolves named target ports per pod', () => {
    const t = new Translator();
    t.applyBatch([
      svc('api', 'shop', {
        selector: { app: 'api' },
        clusterIP: '10.96.0.2',
        ports: [{ name: 'http', port: 80, targetPort: 'web' }],
      }),
      pod('a', 'shop', '10.1.1.1', {
        labels: { app: 'api' },
        spec: { containers: [{ name: 'c', ports: [{ name: 'web', containerPort: 8080 }] }] },
      }),
      pod('b', 'shop', '10.1.1.2', {
        labels: { app: 'api' },
        spec: { containers: [{ name: 'c', ports: [{ name: 'web', containerPort: 9000 }] }] },
      }),
      pod('c', 'shop', '10.1.1.3', { labels: { app: 'other' } }),
      pod('d', 'other-ns', '10.1.1.4', { labels: { app: 'api' } }),
    ]);
    const eps = t.state
      .endpointsOf('shop/api.shop.svc.cluster.local', 80)
      .map((e) => [e.workload.name, e.targetPort]);
    expect(eps.sort()).toEqual([
      ['a', 8080],
      ['b', 9000],
    ]);
    // A new pod matching the selector joins; a label change leaves.
    t.apply(
      pod('c', 'shop', '10.1.1.3', {
        labels: { app: 'api' },
        spec: { containers: [{ name: 'c', ports: [{ name: 'web', containerPort: 7000 }] }] },
      }),
    );
    t.apply(pod('a', 'shop', '10.1.1.1', { labels: { app: 'gone' } }));
    expect(
      t.state
        .endpointsOf('shop/api.shop.svc.cluster.local', 80)
        .map((e) => e.workload.name)
        .sort(),
    ).toEqual(['b', 'c']);
  });

  it('uses EndpointSlices when a Service has any: membership by targetRef, readiness by condition', () => {
    const t = new Translator();
    t.applyBatch([
      svc('api', 'shop', {
        selector: { app: 'api' },
        clusterIP: '10.96.0.3',
        ports: [{ name: 'http', port: 80, targetPort: 'web' }],
      }),
      pod('a', 'shop', '10.1.2.1', { labels: { app: 'api' } }),
      pod('b', 'shop', '10.1.2.2', { labels: { app: 'api' } }),
      pod('c', 'shop', '10.1.2.3', { labels: { app: 'not-selected' } }),
      obj({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'api-xyz', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'api' } },
        addressType: 'IPv4',
        endpoints: [
          { addresses: ['10.1.2.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'a' } },
          { addresses: ['10.1.2.3'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'c' } },
        ],
        ports: [{ name: 'http', port: 8443 }],
      }),
    ]);
    const key = 'shop/api.shop.svc.cluster.local';
    expect(t.state.endpointsOf(key, 80).map((e) => [e.workload.name, e.targetPort])).toEqual([['a', 8443]]);
    expect(
      t.state
        .workloadsOfService(key)
        .map((w) => w.name)
        .sort(),
    ).toEqual(['a', 'c']);
    expect(t.state.workloadByUid(uid('shop', 'c'))?.status).toBe('UNHEALTHY');
    // Slice gone → back to the selector.
    t.remove('EndpointSlice', 'shop', 'api-xyz');
    expect(
      t.state
        .workloadsOfService(key)
        .map((w) => w.name)
        .sort(),
    ).toEqual(['a', 'b']);
    expect(t.state.workloadByUid(uid('shop', 'c'))?.status).toBe('HEALTHY');
  });

  it('removes a Service and its memberships', () => {
    const t = new Translator();
    t.applyBatch([
      svc('api', 'shop', { selector: { app: 'api' }, clusterIP: '10.96.0.4', ports: [{ port: 80 }] }),
      pod('a', 'shop', '10.1.3.1', { labels: { app: 'api' } }),
    ]);
    t.remove('Service', 'shop', 'api');
    expect(t.state.serviceByVip('10.96.0.4', 80)).toBeUndefined();
    expect(t.state.workloadByUid(uid('shop', 'a'))?.services).toEqual({});
  });
});

describe('waypoints', () => {
  it('turns an istio-waypoint Gateway into a Waypoint and supplies its Service', () => {
    const t = new Translator();
    t.applyBatch([
      gateway('wp', 'shop'),
      gateway('ingress', 'shop', undefined, 'istio'),
      pod('wp-0', 'shop', '10.1.4.1', {
        labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' },
        spec: { serviceAccountName: 'wp' },
      }),
    ]);
    expect(t.state.waypointByKey('shop/wp')).toMatchObject({
      waypointFor: 'service',
      hostname: 'wp.shop.svc.cluster.local',
    });
    expect(t.state.waypointByKey('shop/ingress')).toBeUndefined();
    expect(t.notes()).toContainEqual({
      object: 'Gateway/shop/ingress',
      message: 'gatewayClassName istio is not a waypoint; ignored',
    });
    const w = t.state.workloadByUid(uid('shop', 'wp-0'))!;
    expect(w).toMatchObject({ nativeTunnel: true, tunnelProtocol: 'HBONE' });
    expect(w.waypoint).toBeUndefined();
    expect(t.state.endpointsOf('shop/wp.shop.svc.cluster.local', 15008).map((e) => e.workload.name)).toEqual([
      'wp-0',
    ]);
    expect(t.state.waypointByAddress('10.1.4.1')?.name).toBe('wp');
  });

  it('binds services by their own label over the namespace label, and none opts out', () => {
    const t = new Translator();
    t.applyBatch([
      ns('shop', { 'istio.io/use-waypoint': 'ns-wp' }),
      gateway('ns-wp', 'shop'),
      gateway('svc-wp', 'shop'),
      svc('a', 'shop', { ports: [{ port: 80 }] }),
      svc('b', 'shop', { ports: [{ port: 80 }] }, { 'istio.io/use-waypoint': 'svc-wp' }),
      svc('c', 'shop', { ports: [{ port: 80 }] }, { 'istio.io/use-waypoint': 'none' }),
    ]);
    const wp = (n: string) => t.state.serviceByKey(`shop/${n}.shop.svc.cluster.local`)?.waypoint;
    expect(wp('a')).toEqual({
      namespace: 'shop',
      hostname: 'ns-wp.shop.svc.cluster.local',
      hboneMtlsPort: 15008,
    });
    expect(wp('b')?.hostname).toBe('svc-wp.shop.svc.cluster.local');
    expect(wp('c')).toBeUndefined();
    // The waypoint's own (supplied) Service never points at a waypoint.
    expect(wp('ns-wp')).toBeUndefined();
  });

  it('binds workloads only to workload/all waypoints; an explicit mismatch is noted', () => {
    const t = new Translator();
    t.applyBatch([
      ns('shop', { 'istio.io/use-waypoint': 'svc-only' }),
      gateway('svc-only', 'shop', 'service'),
      gateway('both', 'shop', 'all'),
      pod('inherits', 'shop', '10.1.5.1'),
      pod('explicit-all', 'shop', '10.1.5.2', { labels: { 'istio.io/use-waypoint': 'both' } }),
      pod('explicit-svc', 'shop', '10.1.5.3', { labels: { 'istio.io/use-waypoint': 'svc-only' } }),
    ]);
    expect(t.state.workloadByUid(uid('shop', 'inherits'))?.waypoint).toBeUndefined();
    expect(t.state.workloadByUid(uid('shop', 'explicit-all'))?.waypoint?.hostname).toBe(
      'both.shop.svc.cluster.local',
    );
    expect(t.state.workloadByUid(uid('shop', 'explicit-svc'))?.waypoint).toBeUndefined();
    expect(t.notes()).toContainEqual({
      object: 'Pod/shop/explicit-svc',
      message: 'waypoint shop/svc-only is for service traffic, not workload traffic',
    });
  });

  it('binds when the Gateway arrives after its users, and unbinds when it goes', () => {
    const t = new Translator();
    t.applyBatch([
      svc(
        'a',
        'shop',
        { ports: [{ port: 80 }] },
        { 'istio.io/use-waypoint': 'late', 'istio.io/use-waypoint-namespace': 'infra' },
      ),
    ]);
    const key = 'shop/a.shop.svc.cluster.local';
    expect(t.state.serviceByKey(key)?.waypoint).toBeUndefined();
    expect(t.notes()).toContainEqual({ object: 'Service/shop/a', message: 'waypoint infra/late not found' });
    t.apply(gateway('late', 'infra', undefined, 'istio-waypoint', { namespaces: { from: 'All' } }));
    expect(t.state.serviceByKey(key)?.waypoint).toEqual({
      namespace: 'infra',
      hostname: 'late.infra.svc.cluster.local',
      hboneMtlsPort: 15008,
    });
    t.remove('Gateway', 'infra', 'late');
    expect(t.state.serviceByKey(key)?.waypoint).toBeUndefined();
  });
});

describe('cross-namespace waypoints (allowedRoutes)', () => {
  const uses = { 'istio.io/use-waypoint': 'wp', 'istio.io/use-waypoint-namespace': 'infra' };
  const key = 'shop/a.shop.svc.cluster.local';

  it('refuses another namespace by default (from: Same)', () => {
    const t = new Translator();
    t.applyBatch([gateway('wp', 'infra'), svc('a', 'shop', { ports: [{ port: 80 }] }, uses)]);
    expect(t.state.serviceByKey(key)?.waypoint).toBeUndefined();
    expect(t.notes()).toContainEqual({
      object: 'Service/shop/a',
      message: 'waypoint infra/wp does not allow namespace shop (allowedRoutes.namespaces.from is Same)',
    });
  });

  it('admits namespaces whose labels match the selector, and follows namespace label edits', () => {
    const t = new Translator();
    const selector = { namespaces: { from: 'Selector', selector: { matchLabels: { team: 'shop' } } } };
    t.applyBatch([
      ns('shop'),
      gateway('wp', 'infra', undefined, 'istio-waypoint', selector),
      svc('a', 'shop', { ports: [{ port: 80 }] }, uses),
    ]);
    expect(t.state.serviceByKey(key)?.waypoint).toBeUndefined();
    t.apply(ns('shop', { team: 'shop' }));
    expect(t.state.serviceByKey(key)?.waypoint?.hostname).toBe('wp.infra.svc.cluster.local');
  });
});

describe('policies', () => {
  it('scopes policies: root namespace → GLOBAL, no selector → NAMESPACE, targetRefs → L7 only', () => {
    const t = new Translator();
    t.applyBatch([
      ap('mesh', 'istio-system', {
        action: 'DENY',
        rules: [{ from: [{ source: { ipBlocks: ['192.0.2.0/24'] } }] }],
      }),
      ap('ns', 'shop', { rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] }),
      ap('l7', 'shop', {
        targetRefs: [{ kind: 'Service', group: '', name: 'api' }],
        rules: [{ to: [{ operation: { methods: ['GET'] } }] }],
      }),
    ]);
    expect(t.state.authorizationByKey('istio-system/mesh')?.scope).toBe('GLOBAL');
    expect(t.state.authorizationByKey('shop/ns')?.scope).toBe('NAMESPACE');
    expect(t.state.authorizationByKey('shop/l7')).toBeUndefined();
    expect(t.state.l7PolicyByKey('shop/l7')?.targetRefs).toEqual([
      { kind: 'Service', group: '', name: 'api' },
    ]);
    t.remove('AuthorizationPolicy', 'shop', 'l7');
    expect(t.state.l7PolicyByKey('shop/l7')).toBeUndefined();
  });

  it('resolves selectors into matching workloads of the same namespace only', () => {
    const t = new Translator();
    t.applyBatch([
      pod('api', 'shop', '10.1.6.1', { labels: { app: 'api' } }),
      pod('web', 'shop', '10.1.6.2', { labels: { app: 'web' } }),
      pod('api', 'other', '10.1.6.3', { labels: { app: 'api' } }),
      ap('sel', 'shop', { selector: { matchLabels: { app: 'api' } }, rules: [{}] }),
    ]);
    expect(t.state.workloadByUid(uid('shop', 'api'))?.authorizationPolicies).toEqual(['shop/sel']);
    expect(t.state.workloadByUid(uid('shop', 'web'))?.authorizationPolicies).toEqual([]);
    expect(t.state.workloadByUid(uid('other', 'api'))?.authorizationPolicies).toEqual([]);
    const policies = t.state.policiesFor(t.state.workloadByUid(uid('shop', 'api'))!);
    expect(policies.map((p) => p.name)).toEqual(['sel']);
    // A label edit re-resolves; a policy removal unbinds.
    t.apply(pod('web', 'shop', '10.1.6.2', { labels: { app: 'api' } }));
    expect(t.state.workloadByUid(uid('shop', 'web'))?.authorizationPolicies).toEqual(['shop/sel']);
    t.remove('AuthorizationPolicy', 'shop', 'sel');
    expect(t.state.workloadByUid(uid('shop', 'api'))?.authorizationPolicies).toEqual([]);
  });

  it('lets a root-namespace selector select workloads in every namespace', () => {
    const t = new Translator();
    t.applyBatch([
      pod('api', 'shop', '10.1.7.1', { labels: { app: 'api' } }),
      pod('api', 'other', '10.1.7.2', { labels: { app: 'api' } }),
      pod('db', 'other', '10.1.7.3', { labels: { app: 'db' } }),
      ap('all-apis', 'istio-system', {
        selector: { matchLabels: { app: 'api' } },
        action: 'DENY',
        rules: [{ from: [{ source: { notNamespaces: ['shop'] } }] }],
      }),
    ]);
    expect(t.state.workloadByUid(uid('shop', 'api'))?.authorizationPolicies).toEqual([
      'istio-system/all-apis',
    ]);
    expect(t.state.workloadByUid(uid('other', 'api'))?.authorizationPolicies).toEqual([
      'istio-system/all-apis',
    ]);
    expect(t.state.workloadByUid(uid('other', 'db'))?.authorizationPolicies).toEqual([]);
  });

  it('compiles PeerAuthentication STRICT into the static policy on the namespace workloads', () => {
    const t = new Translator();
    t.applyBatch([
      pod('a', 'shop', '10.1.8.1'),
      pod('b', 'other', '10.1.8.2'),
      obj({
        apiVersion: 'security.istio.io/v1',
        kind: 'PeerAuthentication',
        metadata: { name: 'default', namespace: 'shop' },
        spec: { mtls: { mode: 'STRICT' } },
      }),
    ]);
    const strict = 'istio-system/istio_converted_static_strict';
    expect(t.state.workloadByUid(uid('shop', 'a'))?.authorizationPolicies).toEqual([strict]);
    expect(t.state.workloadByUid(uid('other', 'b'))?.authorizationPolicies).toEqual([]);
    expect(t.state.authorizationByKey(strict)?.action).toBe('DENY');
    expect(t.state.policiesFor(t.state.workloadByUid(uid('shop', 'a'))!).map((p) => p.name)).toEqual([
      'istio_converted_static_strict',
    ]);
    // Mesh-wide STRICT reaches the other namespace too; removing both clears everything.
    t.apply(
      obj({
        apiVersion: 'security.istio.io/v1',
        kind: 'PeerAuthentication',
        metadata: { name: 'default', namespace: 'istio-system' },
        spec: { mtls: { mode: 'STRICT' } },
      }),
    );
    expect(t.state.workloadByUid(uid('other', 'b'))?.authorizationPolicies).toEqual([strict]);
    t.remove('PeerAuthentication', 'istio-system', 'default');
    t.remove('PeerAuthentication', 'shop', 'default');
    expect(t.state.workloadByUid(uid('shop', 'a'))?.authorizationPolicies).toEqual([]);
    expect(t.state.authorizationByKey(strict)).toBeUndefined();
  });
});

describe('routes', () => {
  it('keeps HTTPRoutes and GRPCRoutes for the waypoint', () => {
    const t = new Translator();
    t.applyBatch([
      obj({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'r', namespace: 'shop' },
        spec: {
          parentRefs: [{ kind: 'Service', group: '', name: 'api', port: 80 }],
          rules: [{ backendRefs: [{ name: 'api', port: 80 }] }],
        },
      }),
      obj({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'GRPCRoute',
        metadata: { name: 'g', namespace: 'shop' },
        spec: { parentRefs: [{ name: 'grpc' }] },
      }),
    ]);
    expect(
      t.state
        .routes()
        .map((r) => `${r.kind}/${r.name}`)
        .sort(),
    ).toEqual(['GRPCRoute/g', 'HTTPRoute/r']);
    expect(t.state.routes().find((r) => r.kind === 'HTTPRoute')?.parentRefs).toEqual([
      { kind: 'Service', group: '', name: 'api', port: 80 },
    ]);
    t.remove('GRPCRoute', 'shop', 'g');
    expect(t.state.routes().map((r) => r.name)).toEqual(['r']);
  });
});

describe('incremental updates', () => {
  function bigMesh(namespaces: number): Translator {
    const t = new Translator();
    const objs: MeshObject[] = [];
    for (let n = 0; n < namespaces; n++) {
      const name = `ns-${n}`;
      objs.push(ns(name, { 'istio.io/dataplane-mode': 'ambient' }));
      for (let p = 0; p < 3; p++)
        objs.push(pod(`pod-${p}`, name, `10.2.${n}.${p + 1}`, { labels: { app: `app-${p}` } }));
      for (let i = 0; i < 10; i++)
        objs.push(
          ap(
            `p-${i}`,
            name,
            i % 2 ? { selector: { matchLabels: { app: `app-${i % 3}` } } } : { rules: [{}] },
          ),
        );
    }
    t.applyBatch(objs);
    return t;
  }

  it('derives a batch once and announces it as one change set', () => {
    const t = new Translator();
    const seen: StateChange[][] = [];
    t.state.onChange((c) => seen.push([...c]));
    t.applyBatch([
      ns('a'),
      pod('p', 'a', '10.3.0.1'),
      ap('x', 'a', { selector: { matchLabels: { app: 'p' } } }),
    ]);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.filter((c) => c.kind === 'workload')).toHaveLength(1);
  });

  it('re-derives only the edited policy and the pods it can select', () => {
    const t = bigMesh(50);
    expect(t.state.authorizations()).toHaveLength(500);
    const seen: StateChange[] = [];
    t.state.onChange((c) => seen.push(...c));
    t.apply(ap('p-1', 'ns-7', { selector: { matchLabels: { app: 'app-2' } } }));
    expect(seen.filter((c) => c.kind === 'authorization')).toEqual([
      { kind: 'authorization', key: 'ns-7/p-1', op: 'upsert' },
    ]);
    const workloads = seen.filter((c) => c.kind === 'workload').map((c) => c.key);
    expect(workloads.length).toBeGreaterThan(0);
    expect(workloads.every((k) => k.startsWith('Kubernetes//v1/Pod/ns-7/'))).toBe(true);
    expect(t.state.workloadByUid(uid('ns-7', 'pod-2'))?.authorizationPolicies).toContain('ns-7/p-1');
  });

  it('treats re-applying an identical object (a resync) as a no-op', () => {
    const t = bigMesh(5);
    const seen: StateChange[] = [];
    t.state.onChange((c) => seen.push(...c));
    t.applyBatch([ns('ns-1', { 'istio.io/dataplane-mode': 'ambient' }), ap('p-0', 'ns-1', { rules: [{}] })]);
    expect(seen).toEqual([]);
    expect(t.has('Namespace', '', 'ns-1')).toBe(true);
    expect(t.has('AuthorizationPolicy', 'ns-1', 'p-0')).toBe(true);
    t.remove('AuthorizationPolicy', 'ns-1', 'p-0');
    expect(t.has('AuthorizationPolicy', 'ns-1', 'p-0')).toBe(false);
  });

  it('re-derives only the edited pod', () => {
    const t = bigMesh(20);
    const seen: StateChange[] = [];
    t.state.onChange((c) => seen.push(...c));
    t.apply(pod('pod-0', 'ns-3', '10.2.3.99', { labels: { app: 'app-0' } }));
    expect(seen).toEqual([{ kind: 'workload', key: uid('ns-3', 'pod-0'), op: 'upsert' }]);
  });
});

describe('incremental churn (EndpointSlice and pod events touch only what they change)', () => {
  const slice = (name: string, service: string, members: { pod: string; ip: string; ready?: boolean }[]) =>
    obj({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name, namespace: 'big', labels: { 'kubernetes.io/service-name': service } },
      addressType: 'IPv4',
      endpoints: members.map((m) => ({
        addresses: [m.ip],
        conditions: { ready: m.ready ?? true },
        targetRef: { kind: 'Pod', name: m.pod, namespace: 'big' },
      })),
      ports: [{ name: 'http', port: 8080 }],
    });
  const svcKey = (name: string) => `big/${name}.big.svc.cluster.local`;
  const members = (t: Translator, name: string) =>
    t.state
      .workloadsOfService(svcKey(name))
      .map((w) => w.name)
      .sort();

  /** 40 pods, 8 Services of 5 pods each, one slice per Service (the scale bench's shape). */
  function world(): Translator {
    const t = new Translator();
    const objects: MeshObject[] = [ns('big', { 'istio.io/dataplane-mode': 'ambient' })];
    for (let i = 0; i < 40; i++)
      objects.push(pod(`p${i}`, 'big', `10.9.0.${i + 1}`, { labels: { app: `s${Math.floor(i / 5)}` } }));
    for (let s = 0; s < 8; s++) {
      objects.push(
        svc(`s${s}`, 'big', {
          selector: { app: `s${s}` },
          clusterIP: `10.96.9.${s + 1}`,
          ports: [{ name: 'http', port: 80, targetPort: 8080 }],
        }),
      );
      objects.push(
        slice(
          `s${s}-abc`,
          `s${s}`,
          [0, 1, 2, 3, 4].map((k) => ({ pod: `p${s * 5 + k}`, ip: `10.9.0.${s * 5 + k + 1}` })),
        ),
      );
    }
    t.applyBatch(objects);
    return t;
  }

  function changesOf(t: Translator, fn: () => void): string[] {
    const seen: StateChange[] = [];
    const off = t.state.onChange((c) => seen.push(...c));
    fn();
    off();
    return seen.map((c) => `${c.op} ${c.kind} ${c.key.replace('Kubernetes//v1/Pod/', '')}`).sort();
  }

  it('adds, changes and removes one endpoint of a slice: that pod alone changes membership', () => {
    const t = world();
    expect(members(t, 's1')).toEqual(['p5', 'p6', 'p7', 'p8', 'p9']);
    // p20 (a member of s4) is also added to s1's slice.
    const grown = [5, 6, 7, 8, 9, 20].map((k) => ({ pod: `p${k}`, ip: `10.9.0.${k + 1}` }));
    expect(changesOf(t, () => t.apply(slice('s1-abc', 's1', grown)))).toEqual(['upsert workload big/p20']);
    expect(members(t, 's1')).toEqual(['p20', 'p5', 'p6', 'p7', 'p8', 'p9']);
    expect(Object.keys(t.state.workloadByUid(uid('big', 'p20'))!.services).sort()).toEqual([
      svcKey('s1'),
      svcKey('s4'),
    ]);
    // Its readiness changes: only p20 is written again, now unhealthy.
    const notReady = grown.map((m) => (m.pod === 'p20' ? { ...m, ready: false } : m));
    expect(changesOf(t, () => t.apply(slice('s1-abc', 's1', notReady)))).toEqual(['upsert workload big/p20']);
    expect(t.state.workloadByUid(uid('big', 'p20'))?.status).toBe('UNHEALTHY');
    // Removed again: p20 keeps s4 only; no other workload of the namespace is touched.
    expect(changesOf(t, () => t.apply(slice('s1-abc', 's1', grown.slice(0, 5))))).toEqual([
      'upsert workload big/p20',
    ]);
    expect(members(t, 's1')).toEqual(['p5', 'p6', 'p7', 'p8', 'p9']);
    expect(Object.keys(t.state.workloadByUid(uid('big', 'p20'))!.services)).toEqual([svcKey('s4')]);
  });

  it('a pod lifecycle (Pending → Running → slice add → delete → slice remove) touches only that pod', () => {
    const t = world();
    const pending = obj({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'new', namespace: 'big', labels: { app: 's2' } },
      spec: { nodeName: 'node-a' },
      status: { phase: 'Pending' },
    });
    expect(changesOf(t, () => t.apply(pending))).toEqual(['upsert workload big/new']);
    // The selector matches s2, but s2's slices decide: not a member until the slice names it.
    expect(members(t, 's2')).toEqual(['p10', 'p11', 'p12', 'p13', 'p14']);
    const running = pod('new', 'big', '10.9.1.1', { labels: { app: 's2' }, status: { phase: 'Running' } });
    expect(changesOf(t, () => t.apply(running))).toEqual(['upsert workload big/new']);
    expect(t.state.workloadByIp('10.9.1.1')?.name).toBe('new');
    const s2 = [10, 11, 12, 13, 14].map((k) => ({ pod: `p${k}`, ip: `10.9.0.${k + 1}` }));
    expect(
      changesOf(t, () => t.apply(slice('s2-abc', 's2', [...s2, { pod: 'new', ip: '10.9.1.1' }]))),
    ).toEqual(['upsert workload big/new']);
    expect(members(t, 's2')).toEqual(['new', 'p10', 'p11', 'p12', 'p13', 'p14']);
    expect(changesOf(t, () => t.remove('Pod', 'big', 'new'))).toEqual(['delete workload big/new']);
    expect(members(t, 's2')).toEqual(['p10', 'p11', 'p12', 'p13', 'p14']);
    expect(changesOf(t, () => t.apply(slice('s2-abc', 's2', s2)))).toEqual([]);
  });

  it('a Service’s first slice and its last one move its membership between selector and slices', () => {
    const t = new Translator();
    t.applyBatch([
      ns('big'),
      pod('a', 'big', '10.9.2.1', { labels: { app: 'x' } }),
      pod('b', 'big', '10.9.2.2', { labels: { app: 'x' } }),
      pod('c', 'big', '10.9.2.3', { labels: { app: 'y' } }),
      svc('x', 'big', { selector: { app: 'x' }, clusterIP: '10.96.9.20', ports: [{ port: 80 }] }),
    ]);
    expect(members(t, 'x')).toEqual(['a', 'b']);
    t.apply(slice('x-1', 'x', [{ pod: 'a', ip: '10.9.2.1' }]));
    expect(members(t, 'x')).toEqual(['a']);
    // The slice is re-labelled to another Service: x has no slice left, its selector decides again.
    t.apply(
      obj({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'x-1', namespace: 'big', labels: { 'kubernetes.io/service-name': 'other' } },
        endpoints: [{ addresses: ['10.9.2.3'], targetRef: { kind: 'Pod', name: 'c' } }],
      }),
    );
    expect(members(t, 'x')).toEqual(['a', 'b']);
    t.apply(slice('x-2', 'x', [{ pod: 'b', ip: '10.9.2.2' }]));
    expect(members(t, 'x')).toEqual(['b']);
    t.remove('EndpointSlice', 'big', 'x-2');
    expect(members(t, 'x')).toEqual(['a', 'b']);
    // A selector change of a slice-less Service moves its members.
    t.apply(svc('x', 'big', { selector: { app: 'y' }, clusterIP: '10.96.9.20', ports: [{ port: 80 }] }));
    expect(members(t, 'x')).toEqual(['c']);
    t.remove('Service', 'big', 'x');
    expect(members(t, 'x')).toEqual([]);
    expect(Object.keys(t.state.workloadByUid(uid('big', 'c'))!.services)).toEqual([]);
  });
});

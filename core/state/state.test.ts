import { describe, expect, it } from 'vitest';
import type { Authorization, Service, Workload } from './model.js';
import { MeshState, type StateChange } from './state.js';
import { testService, testWorkload } from '../../test/mesh-model.js';

const workload = (name: string, ns: string, ip: string, over: Partial<Workload> = {}): Workload =>
  testWorkload(name, ip, { namespace: ns, serviceAccount: 'default', ...over });

const service = (name: string, ns: string, vip: string, over: Partial<Service> = {}): Service =>
  testService(name, ns, vip, {
    ports: [{ name: 'http', servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' }],
    ...over,
  });

function policy(name: string, ns: string, scope: Authorization['scope']): Authorization {
  return { name, namespace: ns, scope, action: 'ALLOW', rules: [], dryRun: false, notes: [] };
}

describe('MeshState indexes', () => {
  it('finds workloads by IP (incl. IPv4-mapped and uncompressed IPv6), uid, node and namespace', () => {
    const s = new MeshState();
    const a = workload('a', 'ns1', '10.0.0.1');
    const b = workload('b', 'ns1', '2001:db8::2', { node: 'node-b' });
    s.upsertWorkload(a);
    s.upsertWorkload(b);
    expect(s.workloadByIp('10.0.0.1')?.name).toBe('a');
    expect(s.workloadByIp('::ffff:10.0.0.1')?.name).toBe('a');
    expect(s.workloadByIp('2001:0db8:0:0:0:0:0:2')?.name).toBe('b');
    expect(s.workloadByUid('Kubernetes//v1/Pod/ns1/b')?.name).toBe('b');
    expect(s.workloadsOnNode('node-a').map((w) => w.name)).toEqual(['a']);
    expect(
      s
        .workloadsInNamespace('ns1')
        .map((w) => w.name)
        .sort(),
    ).toEqual(['a', 'b']);
    // Moving a pod to a new IP/node drops the old index entries.
    s.upsertWorkload({ ...a, addresses: ['10.0.0.9'], node: 'node-b' });
    expect(s.workloadByIp('10.0.0.1')).toBeUndefined();
    expect(s.workloadByIp('10.0.0.9')?.name).toBe('a');
    expect(s.workloadsOnNode('node-a')).toEqual([]);
    s.removeWorkload(a.uid);
    expect(s.workloadByIp('10.0.0.9')).toBeUndefined();
    expect(s.workloadsOnNode('node-b').map((w) => w.name)).toEqual(['b']);
  });

  it('resolves a reused pod IP to the healthy pod, and keeps it when the old pod goes', () => {
    const s = new MeshState();
    const old = workload('old', 'ns1', '10.0.0.7', { status: 'UNHEALTHY' });
    const fresh = workload('new', 'ns1', '10.0.0.7');
    s.upsertWorkload(fresh);
    s.upsertWorkload(old);
    expect(s.workloadByIp('10.0.0.7')?.name).toBe('new');
    s.removeWorkload(old.uid);
    expect(s.workloadByIp('10.0.0.7')?.name).toBe('new');
  });

  it('never indexes host-network workloads by IP (they share the node IP)', () => {
    const s = new MeshState();
    s.upsertWorkload(workload('h', 'ns1', '192.168.1.10', { networkMode: 'HOST_NETWORK' }));
    expect(s.workloadByIp('192.168.1.10')).toBeUndefined();
  });

  it('answers the CA impersonation check per node and identity', () => {
    const s = new MeshState();
    s.upsertWorkload(workload('a', 'ns1', '10.0.0.1', { serviceAccount: 'sa-a' }));
    s.upsertWorkload(workload('a2', 'ns1', '10.0.0.2', { serviceAccount: 'sa-a' }));
    const id = 'spiffe://cluster.local/ns/ns1/sa/sa-a';
    expect(s.hasWorkloadWithIdentityOnNode(id, 'node-a')).toBe(true);
    expect(s.hasWorkloadWithIdentityOnNode(id, 'node-b')).toBe(false);
    expect(s.hasWorkloadWithIdentityOnNode('spiffe://cluster.local/ns/ns1/sa/other', 'node-a')).toBe(false);
    s.removeWorkload('Kubernetes//v1/Pod/ns1/a');
    expect(s.hasWorkloadWithIdentityOnNode(id, 'node-a')).toBe(true);
    s.removeWorkload('Kubernetes//v1/Pod/ns1/a2');
    expect(s.hasWorkloadWithIdentityOnNode(id, 'node-a')).toBe(false);
  });

  it('finds services by VIP:port, hostname and key', () => {
    const s = new MeshState();
    const svc = service('web', 'ns1', '10.96.0.10');
    s.upsertService(svc);
    const hit = s.serviceByVip('10.96.0.10', 80);
    expect(hit?.service.hostname).toBe('web.ns1.svc.cluster.local');
    expect(hit?.port.targetPort).toBe(8080);
    expect(s.serviceByVip('10.96.0.10', 81)).toBeUndefined();
    expect(s.servicesByHostname('web.ns1.svc.cluster.local')).toHaveLength(1);
    expect(s.serviceByKey('ns1/web.ns1.svc.cluster.local')?.name).toBe('web');
    s.upsertService({ ...svc, addresses: ['10.96.0.11'] });
    expect(s.serviceByVip('10.96.0.10', 80)).toBeUndefined();
    expect(s.serviceByVip('10.96.0.11', 80)).toBeDefined();
  });

  it('lists healthy endpoints with the per-endpoint target port (named ports) or the service target port', () => {
    const s = new MeshState();
    const key = 'ns1/web.ns1.svc.cluster.local';
    s.upsertService(
      service('web', 'ns1', '10.96.0.10', {
        ports: [
          { name: 'http', servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' },
          { name: 'grpc', servicePort: 90, targetPort: 0, appProtocol: 'GRPC' },
        ],
      }),
    );
    s.upsertWorkload(
      workload('a', 'ns1', '10.0.0.1', { services: { [key]: [{ servicePort: 90, targetPort: 9090 }] } }),
    );
    s.upsertWorkload(workload('b', 'ns1', '10.0.0.2', { services: { [key]: [] } }));
    s.upsertWorkload(workload('c', 'ns1', '10.0.0.3', { services: { [key]: [] }, status: 'UNHEALTHY' }));
    const http = s.endpointsOf(key, 80).map((e) => [e.workload.name, e.targetPort]);
    expect(http.sort()).toEqual([
      ['a', 8080],
      ['b', 8080],
    ]);
    // Named target port: only the endpoint that resolved it serves.
    expect(s.endpointsOf(key, 90).map((e) => [e.workload.name, e.targetPort])).toEqual([['a', 9090]]);
    expect(s.endpointsOf(key, 443)).toEqual([]);
    s.upsertWorkload(workload('a', 'ns1', '10.0.0.1'));
    expect(s.endpointsOf(key, 90)).toEqual([]);
  });

  it('collects GLOBAL, own-namespace and selected policies only (istio/ztunnel assert_rbac)', () => {
    const s = new MeshState();
    s.upsertAuthorization(policy('mesh', 'istio-system', 'GLOBAL'));
    s.upsertAuthorization(policy('ns-wide', 'ns1', 'NAMESPACE'));
    s.upsertAuthorization(policy('other-ns', 'ns2', 'NAMESPACE'));
    s.upsertAuthorization(policy('sel', 'ns1', 'WORKLOAD_SELECTOR'));
    s.upsertAuthorization(policy('sel-other', 'ns1', 'WORKLOAD_SELECTOR'));
    const w = workload('a', 'ns1', '10.0.0.1', { authorizationPolicies: ['ns1/sel', 'ns1/missing'] });
    const keys = s.policiesFor(w).map((a) => `${a.namespace}/${a.name}`);
    expect(keys.sort()).toEqual(['istio-system/mesh', 'ns1/ns-wide', 'ns1/sel']);
    expect(s.authorizationByKey('ns2/other-ns')?.scope).toBe('NAMESPACE');
    s.removeAuthorization('ns1/ns-wide');
    expect(
      s
        .policiesFor(w)
        .map((a) => a.name)
        .sort(),
    ).toEqual(['mesh', 'sel']);
    // Re-scoping a policy moves it between lists.
    s.upsertAuthorization(policy('mesh', 'istio-system', 'WORKLOAD_SELECTOR'));
    expect(s.globalPolicies()).toEqual([]);
  });

  it('resolves waypoints by GatewayAddress, Gateway address, Service VIP and waypoint pod IP', () => {
    const s = new MeshState();
    s.upsertWaypoint({
      name: 'wp',
      namespace: 'ns1',
      waypointFor: 'service',
      trafficType: 'service',
      hostname: 'wp.ns1.svc.cluster.local',
      addresses: ['10.96.5.5'],
    });
    s.upsertService(service('wp', 'ns1', '10.96.5.6'));
    s.upsertWorkload(
      workload('wp-0', 'ns1', '10.0.5.1', { labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' } }),
    );
    const addr = { namespace: 'ns1', hostname: 'wp.ns1.svc.cluster.local', hboneMtlsPort: 15008 };
    expect(s.waypointFor(addr)?.name).toBe('wp');
    expect(s.waypointByAddress('10.96.5.5')?.name).toBe('wp');
    expect(s.waypointByAddress('10.96.5.6')?.name).toBe('wp');
    expect(s.waypointByAddress('10.0.5.1')?.name).toBe('wp');
    expect(s.waypointByAddress('10.0.5.2')).toBeUndefined();
  });
});

describe('MeshState change notification', () => {
  it('reports each write, and one coalesced list per batch', () => {
    const s = new MeshState();
    const seen: StateChange[][] = [];
    const off = s.onChange((c) => seen.push([...c]));
    s.upsertAuthorization(policy('p', 'ns1', 'NAMESPACE'));
    s.batch(() => {
      s.upsertWorkload(workload('a', 'ns1', '10.0.0.1'));
      s.upsertWorkload(workload('a', 'ns1', '10.0.0.2'));
      s.removeAuthorization('ns1/p');
      s.removeAuthorization('ns1/never-existed');
    });
    expect(seen).toEqual([
      [{ kind: 'authorization', key: 'ns1/p', op: 'upsert' }],
      [
        { kind: 'workload', key: 'Kubernetes//v1/Pod/ns1/a', op: 'upsert' },
        { kind: 'authorization', key: 'ns1/p', op: 'delete' },
      ],
    ]);
    off();
    s.removeWorkload('Kubernetes//v1/Pod/ns1/a');
    expect(seen).toHaveLength(2);
  });

  it('snapshots a sorted deep copy', () => {
    const s = new MeshState();
    s.upsertWorkload(workload('b', 'ns1', '10.0.0.2'));
    s.upsertWorkload(workload('a', 'ns1', '10.0.0.1'));
    const snap = s.snapshot();
    expect(snap.workloads.map((w) => w.name)).toEqual(['a', 'b']);
    snap.workloads[0]!.addresses.push('1.1.1.1');
    expect(s.workloadByIp('10.0.0.1')?.addresses).toEqual(['10.0.0.1']);
  });
});

describe('MeshState listener isolation', () => {
  it('keeps notifying other listeners when one throws', () => {
    const s = new MeshState();
    const seen: string[] = [];
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    s.onChange(() => {
      throw new Error('listener bug');
    });
    s.onChange((c) => seen.push(c[0]!.key));
    s.upsertNamespace({ name: 'a', labels: {} });
    expect(seen).toEqual(['a']);
    expect(s.namespace('a')).toEqual({ name: 'a', labels: {} });
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        process.off('warning', onWarning);
        expect(warnings).toContain('listener bug');
        resolve();
      }),
    );
  });
});

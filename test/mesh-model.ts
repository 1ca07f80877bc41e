// Model objects (core/state/model.ts) for unit tests: one healthy, enrolled pod Workload and one
// Service with every required field filled, so a test states only what it is about.
import type { Service, Workload } from '../core/state/model.js';

/** A healthy HBONE pod `name` at `ip` in namespace `default` on `node-a`, ServiceAccount `name`. */
export function testWorkload(name: string, ip: string, over: Partial<Workload> = {}): Workload {
  const namespace = over.namespace ?? 'default';
  return {
    uid: `Kubernetes//v1/Pod/${namespace}/${name}`,
    name,
    namespace,
    addresses: [ip],
    node: 'node-a',
    serviceAccount: name,
    trustDomain: 'cluster.local',
    tunnelProtocol: 'HBONE',
    services: {},
    authorizationPolicies: [],
    labels: {},
    canonicalName: name,
    canonicalRevision: 'latest',
    workloadName: name,
    workloadType: 'POD',
    status: 'HEALTHY',
    networkMode: 'STANDARD',
    nativeTunnel: false,
    ...over,
  };
}

/** Service `name.namespace.svc.cluster.local` at `vip`, port 80 → 8080 (TCP). */
export function testService(
  name: string,
  namespace: string,
  vip: string,
  over: Partial<Service> = {},
): Service {
  return {
    name,
    namespace,
    hostname: `${name}.${namespace}.svc.cluster.local`,
    addresses: [vip],
    ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'TCP' }],
    subjectAltNames: [],
    labels: {},
    ...over,
  };
}

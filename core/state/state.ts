// MeshState: the one in-memory model every component asks questions of, with the O(1) indexes the
// data path needs. Shaped like istio/ztunnel src/state.rs (+ state/workload.rs, state/service.rs):
// sources write whole objects keyed like WDS resources (workload uid, "ns/hostname", "ns/name"), the
// state keeps the indexes consistent and tells subscribers what changed.
import type {
  Authorization,
  HttpRoute,
  L7AuthorizationPolicy,
  Namespace,
  Service,
  ServicePort,
  TelemetryTracing,
  Waypoint,
  Workload,
} from './model.js';
import { type SpiffeId, formatSpiffeId } from '../identity/spiffe.js';
import { GATEWAY_NAME_LABEL } from './enrollment.js';

export { GATEWAY_NAME_LABEL };
import { normalizeIp } from './ip.js';

export type StateKind =
  | 'telemetry'
  | 'workload'
  | 'service'
  | 'authorization'
  | 'l7policy'
  | 'route'
  | 'waypoint'
  | 'namespace';
export type StateOp = 'upsert' | 'delete';

/** One change; `key` is the WDS-style key of the object (uid, ns/hostname, ns/name, Kind/ns/name, name). */
export interface StateChange {
  kind: StateKind;
  key: string;
  op: StateOp;
}

export type ChangeListener = (changes: readonly StateChange[]) => void;

export interface Endpoint {
  workload: Workload;
  targetPort: number;
}

export interface ServicePortMatch {
  service: Service;
  port: ServicePort;
}

export interface StateSnapshot {
  namespaces: Namespace[];
  workloads: Workload[];
  services: Service[];
  authorizations: Authorization[];
  l7Policies: L7AuthorizationPolicy[];
  routes: HttpRoute[];
  waypoints: Waypoint[];
}

export const serviceKey = (s: { namespace: string; hostname: string }): string =>
  `${s.namespace}/${s.hostname}`;
export const policyKey = (p: { namespace: string; name: string }): string => `${p.namespace}/${p.name}`;

/**
 * The port of `workload` that `servicePort` of `service` reaches; 0 when there is none.
 * istio/ztunnel: the per-endpoint port map (Workload.services) wins — that is how named target ports
 * resolve per pod; else the Service's numeric target port.
 */
export function targetPortOf(workload: Workload, service: Service, servicePort: number): number {
  const mapped = workload.services[serviceKey(service)]?.find(
    (m) => m.servicePort === servicePort,
  )?.targetPort;
  return mapped || service.ports.find((p) => p.servicePort === servicePort)?.targetPort || 0;
}
export const routeKey = (r: { kind: string; namespace: string; name: string }): string =>
  `${r.kind}/${r.namespace}/${r.name}`;
/** The SPIFFE identity a workload's certificate carries (istio pkg/spiffe), as a typed value. */
export const identityOf = (w: Workload): SpiffeId => ({
  trustDomain: w.trustDomain,
  namespace: w.namespace,
  serviceAccount: w.serviceAccount,
});
/** The same identity as its `spiffe://` URI (index keys, telemetry labels). */
export const workloadIdentity = (w: Workload): string => formatSpiffeId(identityOf(w));

function addToSetMap<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  set.add(value);
}

function removeFromSetMap<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

export class MeshState {
  readonly #listeners = new Set<ChangeListener>();
  #batchDepth = 0;
  #pending = new Map<string, StateChange>();

  readonly #namespaces = new Map<string, Namespace>();
  readonly #workloads = new Map<string, Workload>();
  readonly #services = new Map<string, Service>();
  readonly #authorizations = new Map<string, Authorization>();
  readonly #l7 = new Map<string, L7AuthorizationPolicy>();
  readonly #routes = new Map<string, HttpRoute>();
  readonly #telemetries = new Map<string, TelemetryTracing>();
  readonly #waypoints = new Map<string, Waypoint>();

  // Indexes. Values are keys (not objects) so that an upsert only touches its own entries.
  /** IP → uids. Usually one; two while a pod IP is reused before the old pod is gone. */
  readonly #workloadsByIp = new Map<string, Set<string>>();
  readonly #workloadsByNode = new Map<string, Set<string>>();
  readonly #workloadsByNamespace = new Map<string, Set<string>>();
  /** `node|spiffe id` → number of workloads with that identity on that node. */
  readonly #identityOnNode = new Map<string, number>();
  /** service key → workload uids that list it in Workload.services. */
  readonly #endpointsByService = new Map<string, Set<string>>();
  /** `vip|port` → service key (+ the port); `vip` → service keys. */
  readonly #serviceByVipPort = new Map<string, { key: string; port: ServicePort }>();
  readonly #servicesByVip = new Map<string, Set<string>>();
  readonly #servicesByHostname = new Map<string, Set<string>>();
  readonly #globalPolicies = new Map<string, Authorization>();
  readonly #namespacePolicies = new Map<string, Map<string, Authorization>>();
  readonly #waypointByHostname = new Map<string, string>();
  readonly #waypointByIp = new Map<string, string>();

  // --- change notification -------------------------------------------------------------------------

  /** Subscribe to changes; returns an unsubscribe function. One call per batch (or per single write). */
  onChange(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Runs `fn` with change events coalesced into one notification at the end (nesting allowed). */
  batch<T>(fn: () => T): T {
    this.#batchDepth++;
    try {
      return fn();
    } finally {
      this.#batchDepth--;
      if (this.#batchDepth === 0) this.#flush();
    }
  }

  #record(kind: StateKind, key: string, op: StateOp): void {
    this.#pending.set(`${kind}\u0000${key}`, { kind, key, op });
    if (this.#batchDepth === 0) this.#flush();
  }

  #flush(): void {
    if (this.#pending.size === 0) return;
    const changes = [...this.#pending.values()];
    this.#pending = new Map();
    // A throwing listener must not stop the others, nor fail the source's write (the state is
    // already consistent): it is reported as a process warning instead.
    for (const listener of [...this.#listeners]) {
      try {
        listener(changes);
      } catch (err) {
        process.emitWarning(err instanceof Error ? err : new Error(String(err)), {
          code: 'AMBIT_STATE_LISTENER',
        });
      }
    }
  }

  // --- writes --------------------------------------------------------------------------------------

  upsertNamespace(ns: Namespace): void {
    this.#namespaces.set(ns.name, ns);
    this.#record('namespace', ns.name, 'upsert');
  }

  removeNamespace(name: string): void {
    if (this.#namespaces.delete(name)) this.#record('namespace', name, 'delete');
  }

  upsertWorkload(w: Workload): void {
    this.#unindexWorkload(w.uid);
    this.#workloads.set(w.uid, w);
    // istio/ztunnel: HOST_NETWORK workloads share the node IP, so they are never looked up by IP.
    if (w.networkMode !== 'HOST_NETWORK') {
      for (const ip of w.addresses) addToSetMap(this.#workloadsByIp, normalizeIp(ip), w.uid);
    }
    addToSetMap(this.#workloadsByNode, w.node, w.uid);
    addToSetMap(this.#workloadsByNamespace, w.namespace, w.uid);
    const idKey = `${w.node}|${workloadIdentity(w)}`;
    this.#identityOnNode.set(idKey, (this.#identityOnNode.get(idKey) ?? 0) + 1);
    for (const svc of Object.keys(w.services)) addToSetMap(this.#endpointsByService, svc, w.uid);
    this.#record('workload', w.uid, 'upsert');
  }

  removeWorkload(uid: string): void {
    if (this.#unindexWorkload(uid)) this.#record('workload', uid, 'delete');
  }

  #unindexWorkload(uid: string): boolean {
    const old = this.#workloads.get(uid);
    if (!old) return false;
    this.#workloads.delete(uid);
    for (const ip of old.addresses) removeFromSetMap(this.#workloadsByIp, normalizeIp(ip), uid);
    removeFromSetMap(this.#workloadsByNode, old.node, uid);
    removeFromSetMap(this.#workloadsByNamespace, old.namespace, uid);
    const idKey = `${old.node}|${workloadIdentity(old)}`;
    const count = (this.#identityOnNode.get(idKey) ?? 1) - 1;
    if (count <= 0) this.#identityOnNode.delete(idKey);
    else this.#identityOnNode.set(idKey, count);
    for (const svc of Object.keys(old.services)) removeFromSetMap(this.#endpointsByService, svc, uid);
    return true;
  }

  upsertService(s: Service): void {
    const key = serviceKey(s);
    this.#unindexService(key);
    this.#services.set(key, s);
    for (const vip of s.addresses) {
      const ip = normalizeIp(vip);
      addToSetMap(this.#servicesByVip, ip, key);
      for (const port of s.ports) this.#serviceByVipPort.set(`${ip}|${port.servicePort}`, { key, port });
    }
    addToSetMap(this.#servicesByHostname, s.hostname, key);
    this.#record('service', key, 'upsert');
  }

  removeService(key: string): void {
    if (this.#unindexService(key)) this.#record('service', key, 'delete');
  }

  #unindexService(key: string): boolean {
    const old = this.#services.get(key);
    if (!old) return false;
    this.#services.delete(key);
    for (const vip of old.addresses) {
      const ip = normalizeIp(vip);
      removeFromSetMap(this.#servicesByVip, ip, key);
      for (const port of old.ports) {
        const k = `${ip}|${port.servicePort}`;
        if (this.#serviceByVipPort.get(k)?.key === key) this.#serviceByVipPort.delete(k);
      }
    }
    removeFromSetMap(this.#servicesByHostname, old.hostname, key);
    return true;
  }

  upsertAuthorization(a: Authorization): void {
    const key = policyKey(a);
    this.#unindexAuthorization(key);
    this.#authorizations.set(key, a);
    if (a.scope === 'GLOBAL') this.#globalPolicies.set(key, a);
    else if (a.scope === 'NAMESPACE') {
      let m = this.#namespacePolicies.get(a.namespace);
      if (!m) {
        m = new Map();
        this.#namespacePolicies.set(a.namespace, m);
      }
      m.set(key, a);
    }
    this.#record('authorization', key, 'upsert');
  }

  removeAuthorization(key: string): void {
    if (this.#unindexAuthorization(key)) this.#record('authorization', key, 'delete');
  }

  #unindexAuthorization(key: string): boolean {
    const old = this.#authorizations.get(key);
    if (!old) return false;
    this.#authorizations.delete(key);
    this.#globalPolicies.delete(key);
    const m = this.#namespacePolicies.get(old.namespace);
    if (m) {
      m.delete(key);
      if (m.size === 0) this.#namespacePolicies.delete(old.namespace);
    }
    return true;
  }

  upsertL7Policy(p: L7AuthorizationPolicy): void {
    const key = policyKey(p);
    this.#l7.set(key, p);
    this.#record('l7policy', key, 'upsert');
  }

  removeL7Policy(key: string): void {
    if (this.#l7.delete(key)) this.#record('l7policy', key, 'delete');
  }

  upsertRoute(r: HttpRoute): void {
    const key = routeKey(r);
    this.#routes.set(key, r);
    this.#record('route', key, 'upsert');
  }

  removeRoute(key: string): void {
    if (this.#routes.delete(key)) this.#record('route', key, 'delete');
  }

  /** Telemetry resources by `namespace/name` (tracing settings; core/telemetry/telemetry-api.ts reads them). */
  upsertTelemetry(t: TelemetryTracing): void {
    const key = `${t.namespace}/${t.name}`;
    this.#telemetries.set(key, t);
    this.#record('telemetry', key, 'upsert');
  }

  removeTelemetry(key: string): void {
    if (this.#telemetries.delete(key)) this.#record('telemetry', key, 'delete');
  }

  telemetries(): TelemetryTracing[] {
    return [...this.#telemetries.values()];
  }

  upsertWaypoint(w: Waypoint): void {
    const key = policyKey(w);
    this.#unindexWaypoint(key);
    this.#waypoints.set(key, w);
    this.#waypointByHostname.set(w.hostname, key);
    for (const ip of w.addresses ?? []) this.#waypointByIp.set(normalizeIp(ip), key);
    this.#record('waypoint', key, 'upsert');
  }

  removeWaypoint(key: string): void {
    if (this.#unindexWaypoint(key)) this.#record('waypoint', key, 'delete');
  }

  #unindexWaypoint(key: string): boolean {
    const old = this.#waypoints.get(key);
    if (!old) return false;
    this.#waypoints.delete(key);
    if (this.#waypointByHostname.get(old.hostname) === key) this.#waypointByHostname.delete(old.hostname);
    for (const ip of old.addresses ?? []) {
      const n = normalizeIp(ip);
      if (this.#waypointByIp.get(n) === key) this.#waypointByIp.delete(n);
    }
    return true;
  }

  // --- queries (all O(1) or O(answer)) ---------------------------------------------------------------

  namespace(name: string): Namespace | undefined {
    return this.#namespaces.get(name);
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.#workloads.get(uid);
  }

  /** Accepts IPv4, IPv6 and IPv4-mapped IPv6 (`::ffff:10.0.0.1`, as dual-stack sockets report it). */
  workloadByIp(ip: string): Workload | undefined {
    const uids = this.#workloadsByIp.get(normalizeIp(ip));
    if (!uids) return undefined;
    // While an IP is reused, the healthy (running) pod is the one that owns it; else the newest write.
    let fallback: Workload | undefined;
    for (const uid of uids) {
      const w = this.#workloads.get(uid);
      if (w?.status === 'HEALTHY') return w;
      fallback = w ?? fallback;
    }
    return fallback;
  }

  workloadsOnNode(node: string): Workload[] {
    return this.#collect(this.#workloadsByNode.get(node), this.#workloads);
  }

  workloadsInNamespace(namespace: string): Workload[] {
    return this.#collect(this.#workloadsByNamespace.get(namespace), this.#workloads);
  }

  /**
   * The CA's impersonation check (istio security/pkg/server/ca/authenticate: a node proxy may only
   * ask for identities of pods scheduled on its own node). `spiffeId` is the full `spiffe://` URI.
   */
  hasWorkloadWithIdentityOnNode(spiffeId: string, node: string): boolean {
    return (this.#identityOnNode.get(`${node}|${spiffeId}`) ?? 0) > 0;
  }

  serviceByKey(key: string): Service | undefined {
    return this.#services.get(key);
  }

  /** The service whose VIP:port this is, and which of its ports. */
  serviceByVip(ip: string, port: number): ServicePortMatch | undefined {
    const hit = this.#serviceByVipPort.get(`${normalizeIp(ip)}|${port}`);
    if (!hit) return undefined;
    const service = this.#services.get(hit.key);
    return service ? { service, port: hit.port } : undefined;
  }

  /** Services with a VIP equal to `ip`, on any port. */
  servicesByVip(ip: string): Service[] {
    return this.#collect(this.#servicesByVip.get(normalizeIp(ip)), this.#services);
  }

  servicesByHostname(hostname: string): Service[] {
    return this.#collect(this.#servicesByHostname.get(hostname), this.#services);
  }

  /**
   * Healthy endpoints of `service` for one service port, each with the port to dial (targetPortOf);
   * an endpoint without one is skipped.
   */
  endpointsOf(service: Service | string, servicePort: number): Endpoint[] {
    const svc = typeof service === 'string' ? this.#services.get(service) : service;
    if (!svc) return [];
    const uids = this.#endpointsByService.get(serviceKey(svc));
    if (!uids) return [];
    const out: Endpoint[] = [];
    for (const uid of uids) {
      const w = this.#workloads.get(uid);
      if (w?.status !== 'HEALTHY') continue;
      const targetPort = targetPortOf(w, svc, servicePort);
      if (targetPort > 0) out.push({ workload: w, targetPort });
    }
    return out;
  }

  /** Every workload listing the service (any health), for status and explain. */
  workloadsOfService(service: Service | string): Workload[] {
    const key = typeof service === 'string' ? service : serviceKey(service);
    return this.#collect(this.#endpointsByService.get(key), this.#workloads);
  }

  authorizationByKey(key: string): Authorization | undefined {
    return this.#authorizations.get(key);
  }

  globalPolicies(): Authorization[] {
    return [...this.#globalPolicies.values()];
  }

  namespacePolicies(namespace: string): Authorization[] {
    const m = this.#namespacePolicies.get(namespace);
    return m ? [...m.values()] : [];
  }

  /**
   * The L4 policies that apply to a destination workload, as istio/ztunnel state.rs assert_rbac
   * collects them: every GLOBAL policy, every NAMESPACE policy of its namespace, and each key in its
   * authorization_policies (selector-scoped). Unknown keys are skipped (ztunnel logs and skips them).
   * Cost depends only on the policies that can apply, never on other namespaces' policies.
   */
  policiesFor(workload: Workload): Authorization[] {
    const out: Authorization[] = [];
    for (const a of this.#globalPolicies.values()) out.push(a);
    const ns = this.#namespacePolicies.get(workload.namespace);
    if (ns) for (const a of ns.values()) out.push(a);
    for (const key of workload.authorizationPolicies) {
      const a = this.#authorizations.get(key);
      // A key may also name a GLOBAL/NAMESPACE policy; do not count it twice.
      if (a && a.scope === 'WORKLOAD_SELECTOR') out.push(a);
    }
    return out;
  }

  l7PolicyByKey(key: string): L7AuthorizationPolicy | undefined {
    return this.#l7.get(key);
  }

  l7Policies(): L7AuthorizationPolicy[] {
    return [...this.#l7.values()];
  }

  routes(): HttpRoute[] {
    return [...this.#routes.values()];
  }

  waypointByKey(key: string): Waypoint | undefined {
    return this.#waypoints.get(key);
  }

  /** The waypoint a GatewayAddress (Workload.waypoint / Service.waypoint) points at. */
  waypointFor(address: { hostname: string } | undefined): Waypoint | undefined {
    if (!address) return undefined;
    const key = this.#waypointByHostname.get(address.hostname);
    return key === undefined ? undefined : this.#waypoints.get(key);
  }

  /**
   * Which waypoint owns this IP: a Gateway address, the VIP of the waypoint's Service, or one of the
   * waypoint's own pods (labelled gateway.networking.k8s.io/gateway-name like Istio's waypoint pods).
   */
  waypointByAddress(ip: string): Waypoint | undefined {
    const n = normalizeIp(ip);
    const direct = this.#waypointByIp.get(n);
    if (direct !== undefined) return this.#waypoints.get(direct);
    for (const key of this.#servicesByVip.get(n) ?? []) {
      const hostname = this.#services.get(key)?.hostname;
      const wpKey = hostname === undefined ? undefined : this.#waypointByHostname.get(hostname);
      if (wpKey !== undefined) return this.#waypoints.get(wpKey);
    }
    const w = this.workloadByIp(n);
    const gw = w?.labels[GATEWAY_NAME_LABEL];
    return w && gw ? this.#waypoints.get(`${w.namespace}/${gw}`) : undefined;
  }

  namespaces(): Namespace[] {
    return [...this.#namespaces.values()];
  }

  workloads(): Workload[] {
    return [...this.#workloads.values()];
  }

  services(): Service[] {
    return [...this.#services.values()];
  }

  authorizations(): Authorization[] {
    return [...this.#authorizations.values()];
  }

  waypoints(): Waypoint[] {
    return [...this.#waypoints.values()];
  }

  /** A stable, sorted copy of everything (for `ambit state -o json` and admin config_dump). */
  snapshot(): StateSnapshot {
    const byKey = <T>(m: Map<string, T>): T[] =>
      [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
    return structuredClone({
      namespaces: byKey(this.#namespaces),
      workloads: byKey(this.#workloads),
      services: byKey(this.#services),
      authorizations: byKey(this.#authorizations),
      l7Policies: byKey(this.#l7),
      routes: byKey(this.#routes),
      waypoints: byKey(this.#waypoints),
    });
  }

  #collect<T>(keys: Set<string> | undefined, from: Map<string, T>): T[] {
    if (!keys) return [];
    const out: T[] = [];
    for (const k of keys) {
      const v = from.get(k);
      if (v !== undefined) out.push(v);
    }
    return out;
  }
}

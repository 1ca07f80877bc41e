// The ONE translation from Kubernetes-shaped objects to the mesh model. Every source (manifest directory,
// Kubernetes informers) hands validated objects to a Translator, which keeps a MeshState current.
//
// How it stays incremental: each raw object is stored as given; an apply/remove marks what depends on it
// dirty (a Service → the pods of its namespace; a selector policy → the pods it could select; a Gateway →
// the objects that asked for it); derivation runs once at the end of a batch, only for dirty objects.
// So loading 10,000 policies derives each workload once, and one edit afterwards touches only its
// neighbourhood. Mirrors istiod's ambient index (pilot/pkg/serviceregistry/kube/controller/ambient),
// which is also a set of derived collections keyed by object.
import type { Logger } from 'pino';
import { ROOT_NAMESPACE_DEFAULT } from '../policy/istio-api.js';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.js';
import {
  bindWaypoint,
  DEFAULT_EXCLUDED_NAMESPACES,
  enrollmentOf,
  GATEWAY_NAME_LABEL,
  requestedWaypoint,
  waypointForOf,
} from '../state/enrollment.js';
import type { PortMapping, TelemetryTracing, Waypoint, Workload } from '../state/model.js';
import { MeshState, routeKey, serviceKey } from '../state/state.js';
import type {
  EndpointSliceObject,
  GatewayObject,
  MeshKind,
  MeshObject,
  PodObject,
  RouteObject,
  ServiceObject,
  TelemetryObject,
} from './schema.js';
import { PolicyAttachment } from './policies.js';
import { buildService, gatewayAddress, serviceHostname, waypointServiceObject } from './service.js';
import {
  canonicalName,
  canonicalRevision,
  podAddresses,
  podStatus,
  podUid,
  portMappings,
  selectorMatches,
  workloadNameOf,
} from './workload.js';

export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';

export interface TranslatorOptions {
  /** The state to keep current; a new one by default. */
  state?: MeshState;
  /** meshConfig rootNamespace: policies there are mesh-wide. Default `istio-system`. */
  rootNamespace?: string;
  /** Default `cluster.local`. */
  trustDomain?: string;
  /** Cluster id in workload uids. Default `Kubernetes` (istiod's default). */
  clusterId?: string;
  /** DNS suffix of service hostnames. Default `cluster.local`. */
  domainSuffix?: string;
  /** Namespaces never captured (istio-cni excludeNamespaces). Default `kube-system`. */
  excludedNamespaces?: readonly string[];
  logger?: Logger;
}

/** Something an operator should know about an accepted object (compile warnings, binding problems). */
export interface TranslationNote {
  /** `Kind/ns/name` of the object concerned. */
  object: string;
  message: string;
}

export type BatchOp =
  | { op: 'apply'; object: MeshObject }
  | { op: 'remove'; kind: MeshKind; namespace: string; name: string };

/** The index key of a selector: its smallest key's pair; undefined for an empty selector (selects nothing). */
function selectorPair(ns: string, selector: Record<string, string> | undefined): string | undefined {
  let best: string | undefined;
  for (const k in selector) if (best === undefined || k < best) best = k;
  return best === undefined ? undefined : `${ns}\0${best}=${selector![best]}`;
}

const objectKey = (kind: string, namespace: string, name: string) => `${kind}/${namespace}/${name}`;
const nsName = (ns: string, name: string) => `${ns}/${name}`;

function addTo<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  set.add(value);
}

function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

export class Translator {
  readonly state: MeshState;
  readonly rootNamespace: string;
  readonly trustDomain: string;
  readonly clusterId: string;
  readonly domainSuffix: string;
  readonly #excluded: readonly string[];
  readonly #log: Logger | undefined;

  // Raw objects, as validated.
  readonly #namespaces = new Map<string, Record<string, string>>();
  readonly #pods = new Map<string, PodObject>();
  readonly #services = new Map<string, ServiceObject>();
  readonly #slices = new Map<string, EndpointSliceObject>();
  readonly #gateways = new Map<string, GatewayObject>();

  // Indexes over raw objects.
  readonly #podsByNs = new Map<string, Set<string>>();
  readonly #servicesByNs = new Map<string, Set<string>>();
  readonly #slicesByService = new Map<string, Set<string>>();
  readonly #slicesByPod = new Map<string, Set<string>>();
  /**
   * Services (`ns/name`) no EndpointSlice names (their selector decides membership), by ONE pair of
   * their selector (`ns\0key=value`, the smallest key): a pod can only be selected by a Service one of
   * whose pairs it carries, so a pod finds its candidates through its own labels.
   */
  readonly #unslicedBySelector = new Map<string, Set<string>>();
  readonly #unslicedKeyOf = new Map<string, string>();
  /** Pods (`ns/name`) by label (`ns\0key=value`): which pods a selector can match, without a scan. */
  readonly #podsByLabel = new Map<string, Set<string>>();
  /** Gateway key → `pod:`/`svc:` keys whose labels asked for it (present or not). */
  readonly #waypointUsers = new Map<string, Set<string>>();
  readonly #usesOf = new Map<string, string>();

  readonly #policies: PolicyAttachment;

  readonly #notes = new Map<string, string[]>();
  /** `Kind/ns/name` → the applied object: re-applying an identical object (an informer resync, a
   * manifest re-read) is a no-op, so it neither re-derives nor notifies the data path. Compared as JSON
   * only when a key is applied again, so a first load pays nothing for it. */
  readonly #applied = new Map<string, MeshObject>();

  // Dirty sets, drained at the end of each batch.
  #depth = 0;
  readonly #dirtyPods = new Set<string>();
  readonly #dirtyServices = new Set<string>();

  constructor(opts: TranslatorOptions = {}) {
    this.state = opts.state ?? new MeshState();
    this.rootNamespace = opts.rootNamespace ?? ROOT_NAMESPACE_DEFAULT;
    this.trustDomain = opts.trustDomain ?? DEFAULT_TRUST_DOMAIN;
    this.clusterId = opts.clusterId ?? 'Kubernetes';
    this.domainSuffix = opts.domainSuffix ?? 'cluster.local';
    this.#excluded = opts.excludedNamespaces ?? DEFAULT_EXCLUDED_NAMESPACES;
    this.#log = opts.logger;
    const pods = this.#pods;
    const podsByNs = this.#podsByNs;
    this.#policies = new PolicyAttachment({
      state: this.state,
      rootNamespace: this.rootNamespace,
      trustDomain: this.trustDomain,
      log: this.#log,
      note: (object, message) => this.#note(object, message),
      clearNotes: (object) => this.#notes.delete(object),
      podsOf: (ns) =>
        [...(podsByNs.get(ns) ?? [])].map((key) => {
          const p = pods.get(key)!;
          return { key, uid: podUid(this.clusterId, ns, p.metadata.name), labels: p.metadata.labels ?? {} };
        }),
      podNamespaces: () => podsByNs.keys(),
      markPod: (key) => this.#dirtyPods.add(key),
      markPodsOf: (ns) => this.#markPodsOfNamespace(ns),
      markAllPods: () => {
        for (const k of pods.keys()) this.#dirtyPods.add(k);
      },
    });
  }

  // --- public API ----------------------------------------------------------------------------------

  apply(object: MeshObject): void {
    this.batch(() => this.#apply(object));
  }

  remove(kind: MeshKind, namespace: string, name: string): void {
    this.batch(() => this.#remove(kind, namespace, name));
  }

  applyBatch(ops: Iterable<BatchOp | MeshObject>): void {
    this.batch(() => {
      for (const op of ops) {
        if ('op' in op && op.op === 'remove') this.#remove(op.kind, op.namespace, op.name);
        else this.#apply('op' in op ? (op as { object: MeshObject }).object : (op as MeshObject));
      }
    });
  }

  /** Applies/removes inside `fn` are derived once, at the end, and reach MeshState as one change batch. */
  batch<T>(fn: () => T): T {
    // One MeshState batch around everything: raw writes (policies, routes) and derived ones land in a
    // single change notification.
    return this.state.batch(() => {
      this.#depth++;
      try {
        return fn();
      } finally {
        this.#depth--;
        if (this.#depth === 0) this.#derive();
      }
    });
  }

  /** Notes about accepted objects: compile warnings, waypoint binding problems. */
  notes(): TranslationNote[] {
    const out: TranslationNote[] = [];
    for (const [object, messages] of [...this.#notes.entries()].sort(([a], [b]) => (a < b ? -1 : 1)))
      for (const message of messages) out.push({ object, message });
    return out;
  }

  /** Whether an object of this kind/namespace/name is currently applied. */
  has(kind: MeshKind, namespace: string, name: string): boolean {
    return this.#applied.has(objectKey(kind, kind === 'Namespace' ? '' : namespace, name));
  }

  /** The object as applied (validated and, from Kubernetes, stripped), for status pages and tests. */
  object(kind: MeshKind, namespace: string, name: string): MeshObject | undefined {
    return this.#applied.get(objectKey(kind, kind === 'Namespace' ? '' : namespace, name));
  }

  /** Every applied object of one kind (a status writer walks them). */
  objectsOf(kind: MeshKind): MeshObject[] {
    const prefix = `${kind}/`;
    return [...this.#applied.entries()].filter(([k]) => k.startsWith(prefix)).map(([, o]) => o);
  }

  // --- raw object handling ---------------------------------------------------------------------------

  #apply(o: MeshObject): void {
    const ns = o.metadata.namespace ?? '';
    const name = o.metadata.name;
    const key = nsName(ns, name);
    const appliedKey = objectKey(o.kind, ns, name);
    const previous = this.#applied.get(appliedKey);
    if (previous !== undefined && JSON.stringify(previous) === JSON.stringify(o)) return;
    this.#applied.set(appliedKey, o);
    switch (o.kind) {
      case 'Namespace': {
        this.#namespaces.set(name, { ...(o.metadata.labels ?? {}) });
        this.state.upsertNamespace({ name, labels: { ...(o.metadata.labels ?? {}) } });
        this.#namespaceChanged(name);
        return;
      }
      case 'Pod': {
        const old = this.#pods.get(key);
        this.#pods.set(key, o);
        addTo(this.#podsByNs, ns, key);
        this.#indexPodLabels(key, ns, old?.metadata.labels, o.metadata.labels);
        this.#dirtyPods.add(key);
        if (!old || JSON.stringify(old.metadata.labels ?? {}) !== JSON.stringify(o.metadata.labels ?? {}))
          this.#policies.podsChanged(ns);
        return;
      }
      case 'Service': {
        const old = this.#services.get(key);
        this.#services.set(key, o);
        addTo(this.#servicesByNs, ns, key);
        this.#indexUnsliced(key);
        this.#dirtyServices.add(key);
        this.#markServiceMembers(key, old, o);
        return;
      }
      case 'EndpointSlice': {
        const svcKey = nsName(ns, o.metadata.labels?.['kubernetes.io/service-name'] ?? '');
        // Only the pods the old and the new version name can change membership (or readiness, or
        // ports); a pod in neither is untouched. istiod's ambient index is keyed the same way.
        const oldSlice = this.#slices.get(key);
        const oldSvcKey = oldSlice
          ? nsName(ns, oldSlice.metadata.labels?.['kubernetes.io/service-name'] ?? '')
          : undefined;
        this.#markSlicePods(key);
        this.#unindexSlice(key);
        if (oldSvcKey !== undefined && oldSvcKey !== svcKey && !this.#slicesByService.has(oldSvcKey))
          this.#sliceTruthChanged(oldSvcKey);
        this.#slices.set(key, o);
        const first = !this.#slicesByService.has(svcKey);
        addTo(this.#slicesByService, svcKey, key);
        for (const ep of o.endpoints ?? []) {
          const ref = ep.targetRef;
          if (ref && (ref.kind ?? 'Pod') === 'Pod')
            addTo(this.#slicesByPod, nsName(ref.namespace ?? ns, ref.name), key);
        }
        this.#markSlicePods(key);
        // The Service's first slice: its membership now comes from slices, not from its selector.
        if (first) this.#sliceTruthChanged(svcKey);
        return;
      }
      case 'AuthorizationPolicy':
        this.#policies.applyAuthorizationPolicy(key, o);
        return;
      case 'PeerAuthentication':
        this.#policies.applyPeerAuthentication(key, ns, o);
        return;
      case 'Gateway': {
        this.#gateways.set(key, o);
        this.#gatewayChanged(ns, name);
        return;
      }
      case 'HTTPRoute':
      case 'GRPCRoute':
        this.state.upsertRoute(this.#route(o));
        return;
      case 'Telemetry':
        this.state.upsertTelemetry(telemetryTracingOf(o));
        return;
    }
  }

  #remove(kind: MeshKind, ns: string, name: string): void {
    if (kind === 'Namespace') ns = '';
    const key = nsName(ns, name);
    this.#applied.delete(objectKey(kind, ns, name));
    switch (kind) {
      case 'Namespace':
        if (this.#namespaces.delete(name)) {
          this.state.removeNamespace(name);
          this.#namespaceChanged(name);
        }
        return;
      case 'Pod': {
        const old = this.#pods.get(key);
        if (old) {
          this.#pods.delete(key);
          this.#indexPodLabels(key, ns, old.metadata.labels, undefined);
          removeFrom(this.#podsByNs, ns, key);
          this.#dirtyPods.add(key);
          this.#policies.podsChanged(ns);
        }
        return;
      }
      case 'Service': {
        const old = this.#services.get(key);
        if (old) {
          this.#markServiceMembers(key, old, undefined);
          this.#services.delete(key);
          removeFrom(this.#servicesByNs, ns, key);
          this.#indexUnsliced(key);
          this.#dirtyServices.add(key);
        }
        return;
      }
      case 'EndpointSlice': {
        const old = this.#slices.get(key);
        if (!old) return;
        this.#markSlicePods(key);
        this.#unindexSlice(key);
        const svcKey = nsName(ns, old.metadata.labels?.['kubernetes.io/service-name'] ?? '');
        // Its last slice gone: the Service's selector decides again.
        if (!this.#slicesByService.has(svcKey)) this.#sliceTruthChanged(svcKey);
        return;
      }
      case 'AuthorizationPolicy':
        this.#policies.removeAuthorizationPolicy(key);
        return;
      case 'PeerAuthentication':
        this.#policies.removePeerAuthentication(key, ns);
        return;
      case 'Gateway':
        if (this.#gateways.delete(key)) this.#gatewayChanged(ns, name);
        return;
      case 'HTTPRoute':
      case 'GRPCRoute':
        this.state.removeRoute(routeKey({ kind, namespace: ns, name }));
        return;
      case 'Telemetry':
        this.state.removeTelemetry(key);
        return;
    }
  }

  #unindexSlice(key: string): boolean {
    const old = this.#slices.get(key);
    if (!old) return false;
    this.#slices.delete(key);
    const ns = old.metadata.namespace;
    removeFrom(
      this.#slicesByService,
      nsName(ns, old.metadata.labels?.['kubernetes.io/service-name'] ?? ''),
      key,
    );
    for (const ep of old.endpoints ?? []) {
      const ref = ep.targetRef;
      if (ref) removeFrom(this.#slicesByPod, nsName(ref.namespace ?? ns, ref.name), key);
    }
    return true;
  }

  /** Marks the existing pods an EndpointSlice (as currently indexed) names. */
  #markSlicePods(sliceKey: string): void {
    const slice = this.#slices.get(sliceKey);
    if (!slice) return;
    const ns = slice.metadata.namespace;
    for (const ep of slice.endpoints ?? []) {
      const ref = ep.targetRef;
      if (!ref || (ref.kind ?? 'Pod') !== 'Pod') continue;
      const podKey = nsName(ref.namespace ?? ns, ref.name);
      if (this.#pods.has(podKey)) this.#dirtyPods.add(podKey);
    }
  }

  /**
   * A Service (`ns/name`) changed or went: its members now (the workloads listing it in MeshState),
   * the pods its slices name, and — when its selector decides (no slices) — the pods the old or new
   * selector matches. Nothing else can gain or lose it.
   */
  #markServiceMembers(
    key: string,
    before: ServiceObject | undefined,
    after: ServiceObject | undefined,
  ): void {
    const slash = key.indexOf('/');
    const ns = key.slice(0, slash);
    const hostname = serviceHostname(key.slice(slash + 1), ns, this.domainSuffix);
    for (const w of this.state.workloadsOfService(serviceKey({ namespace: ns, hostname }))) {
      const podKey = nsName(w.namespace, w.name);
      if (this.#pods.has(podKey)) this.#dirtyPods.add(podKey);
    }
    const slices = this.#slicesByService.get(key);
    if (slices) {
      for (const sk of slices) this.#markSlicePods(sk);
      return;
    }
    for (const svc of [before, after]) {
      if (!svc) continue;
      const pair = selectorPair(ns, svc.spec.selector);
      for (const podKey of (pair && this.#podsByLabel.get(pair)) ?? []) {
        if (selectorMatches(svc.spec.selector, this.#pods.get(podKey)?.metadata.labels ?? {}))
          this.#dirtyPods.add(podKey);
      }
    }
  }

  #indexPodLabels(
    podKey: string,
    ns: string,
    before: Record<string, string> | undefined,
    after: Record<string, string> | undefined,
  ): void {
    if (before === after) return;
    for (const [k, v] of Object.entries(before ?? {}))
      if (after?.[k] !== v) removeFrom(this.#podsByLabel, `${ns}\0${k}=${v}`, podKey);
    for (const [k, v] of Object.entries(after ?? {}))
      if (before?.[k] !== v) addTo(this.#podsByLabel, `${ns}\0${k}=${v}`, podKey);
  }

  /** (Re)files a Service under its selector pair while no EndpointSlice names it. */
  #indexUnsliced(svcKey: string): void {
    const old = this.#unslicedKeyOf.get(svcKey);
    if (old !== undefined) {
      removeFrom(this.#unslicedBySelector, old, svcKey);
      this.#unslicedKeyOf.delete(svcKey);
    }
    const svc = this.#services.get(svcKey);
    if (!svc || this.#slicesByService.has(svcKey)) return;
    const pair = selectorPair(svcKey.slice(0, svcKey.indexOf('/')), svc.spec.selector);
    if (pair === undefined) return;
    addTo(this.#unslicedBySelector, pair, svcKey);
    this.#unslicedKeyOf.set(svcKey, pair);
  }

  /** A Service's membership source flipped between its EndpointSlices and its selector. */
  #sliceTruthChanged(svcKey: string): void {
    this.#indexUnsliced(svcKey);
    const svc = this.#serviceObject(svcKey);
    if (svc) this.#markServiceMembers(svcKey, svc, svc);
  }

  #markPodsOfNamespace(ns: string): void {
    for (const k of this.#podsByNs.get(ns) ?? []) this.#dirtyPods.add(k);
  }

  #namespaceChanged(ns: string): void {
    // Namespace labels drive enrollment and inherited use-waypoint for its pods and services.
    this.#markPodsOfNamespace(ns);
    for (const k of this.#servicesByNs.get(ns) ?? []) this.#dirtyServices.add(k);
    for (const k of this.#gateways.keys()) if (k.startsWith(`${ns}/`)) this.#dirtyServices.add(k);
  }

  #gatewayChanged(ns: string, name: string): void {
    const key = nsName(ns, name);
    const gw = this.#gateways.get(key);
    const objKey = objectKey('Gateway', ns, name);
    this.#notes.delete(objKey);
    if (gw && gw.spec.gatewayClassName === WAYPOINT_GATEWAY_CLASS) {
      this.state.upsertWaypoint(this.#waypoint(gw));
      const hbone = gw.spec.listeners?.some((l) => l.port === 15008 && l.protocol === 'HBONE');
      if (!hbone) this.#note(objKey, 'waypoint Gateway has no listener {port: 15008, protocol: HBONE}');
    } else {
      this.state.removeWaypoint(key);
      if (gw) this.#note(objKey, `gatewayClassName ${gw.spec.gatewayClassName} is not a waypoint; ignored`);
    }
    for (const user of this.#waypointUsers.get(key) ?? []) {
      if (user.startsWith('pod:')) this.#dirtyPods.add(user.slice(4));
      else this.#dirtyServices.add(user.slice(4));
    }
    // Its own Service (real or supplied) and its own pods (native tunnel) depend on it too.
    this.#dirtyServices.add(key);
    this.#markPodsOfNamespace(ns);
  }

  #waypoint(gw: GatewayObject): Waypoint {
    const ns = gw.metadata.namespace;
    const waypointFor = waypointForOf(gw.metadata.labels);
    const addresses = [...(gw.spec.addresses ?? []), ...(gw.status?.addresses ?? [])]
      .filter((a) => (a.type ?? 'IPAddress') === 'IPAddress')
      .map((a) => a.value);
    const wp: Waypoint = {
      name: gw.metadata.name,
      namespace: ns,
      waypointFor,
      trafficType: waypointFor,
      hostname: serviceHostname(gw.metadata.name, ns, this.domainSuffix),
    };
    if (addresses.length > 0) wp.addresses = [...new Set(addresses)];
    return wp;
  }

  #route(r: RouteObject) {
    return {
      kind: r.kind,
      name: r.metadata.name,
      namespace: r.metadata.namespace,
      parentRefs: (r.spec.parentRefs ?? []).map((p) => ({ ...p })),
      rules: [...(r.spec.rules ?? [])],
    };
  }

  #note(object: string, message: string): void {
    const list = this.#notes.get(object) ?? [];
    list.push(message);
    this.#notes.set(object, list);
  }

  // --- derivation ---------------------------------------------------------------------------------------

  #derive(): void {
    this.#policies.derive();
    for (const key of this.#dirtyServices) this.#deriveService(key);
    this.#dirtyServices.clear();
    for (const key of this.#dirtyPods) this.#derivePod(key);
    this.#dirtyPods.clear();
  }

  #isWaypointGateway(ns: string, name: string): boolean {
    return this.#gateways.get(nsName(ns, name))?.spec.gatewayClassName === WAYPOINT_GATEWAY_CLASS;
  }

  /** The Service object for `ns/name`: the real one, or the one supplied for a waypoint Gateway. */
  #serviceObject(key: string): ServiceObject | undefined {
    const real = this.#services.get(key);
    if (real) return real;
    const gw = this.#gateways.get(key);
    if (gw && gw.spec.gatewayClassName === WAYPOINT_GATEWAY_CLASS)
      return waypointServiceObject(
        gw.metadata.name,
        gw.metadata.namespace,
        this.#waypoint(gw).addresses ?? [],
      );
    return undefined;
  }

  #trackUse(user: string, ref: { namespace: string; name: string } | undefined): void {
    const old = this.#usesOf.get(user);
    const next = ref ? nsName(ref.namespace, ref.name) : undefined;
    if (old === next) return;
    if (old !== undefined) removeFrom(this.#waypointUsers, old, user);
    if (next !== undefined) {
      addTo(this.#waypointUsers, next, user);
      this.#usesOf.set(user, next);
    } else this.#usesOf.delete(user);
  }

  /**
   * Waypoint lookup for an object in namespace `from`. Istio only lets another namespace use a waypoint
   * when the Gateway's HBONE listener allows it: allowedRoutes.namespaces.from Same (default) | All |
   * Selector (matchLabels against the user's namespace labels).
   */
  #waypointLookup(from: string) {
    return (
      ns: string,
      name: string,
    ): { waypointFor: ReturnType<typeof waypointForOf>; refuses?: string } | undefined => {
      const gw = this.#gateways.get(nsName(ns, name));
      if (!gw || gw.spec.gatewayClassName !== WAYPOINT_GATEWAY_CLASS) return undefined;
      const waypointFor = waypointForOf(gw.metadata.labels);
      if (ns === from) return { waypointFor };
      const listener = gw.spec.listeners?.find((l) => l.protocol === 'HBONE') ?? gw.spec.listeners?.[0];
      const allowed = (
        listener as
          | {
              allowedRoutes?: {
                namespaces?: { from?: string; selector?: { matchLabels?: Record<string, string> } };
              };
            }
          | undefined
      )?.allowedRoutes?.namespaces;
      const mode = allowed?.from ?? 'Same';
      if (mode === 'All') return { waypointFor };
      if (mode === 'Selector') {
        const want = allowed?.selector?.matchLabels ?? {};
        const have = this.#namespaces.get(from) ?? {};
        if (Object.entries(want).every(([k, v]) => have[k] === v)) return { waypointFor };
        return {
          waypointFor,
          refuses: `does not allow namespace ${from} (allowedRoutes selector does not match)`,
        };
      }
      return {
        waypointFor,
        refuses: `does not allow namespace ${from} (allowedRoutes.namespaces.from is ${mode})`,
      };
    };
  }

  #deriveService(key: string): void {
    const [ns = '', name = ''] = key.split('/');
    const svc = this.#serviceObject(key);
    const objKey = objectKey('Service', ns, name);
    this.#notes.delete(objKey);
    if (!svc) {
      this.#trackUse(`svc:${key}`, undefined);
      this.state.removeService(
        serviceKey({ namespace: ns, hostname: serviceHostname(name, ns, this.domainSuffix) }),
      );
      return;
    }
    // A waypoint's own Service never goes through a waypoint (it would loop to itself).
    const isWaypointOwn = this.#isWaypointGateway(ns, name) || !!svc.metadata.labels?.[GATEWAY_NAME_LABEL];
    const ref = isWaypointOwn
      ? undefined
      : requestedWaypoint(ns, svc.metadata.labels, this.#namespaces.get(ns));
    this.#trackUse(`svc:${key}`, ref);
    const binding = bindWaypoint('service', ref, this.#waypointLookup(ns));
    if (binding.problem) this.#note(objKey, binding.problem);
    const wp = binding.waypoint
      ? gatewayAddress(binding.waypoint.name, binding.waypoint.namespace, this.domainSuffix)
      : undefined;
    const next = buildService(svc, this.domainSuffix, wp);
    const prev = this.state.serviceByKey(serviceKey(next));
    if (prev && JSON.stringify(prev) === JSON.stringify(next)) return;
    this.state.upsertService(next);
  }

  #derivePod(key: string): void {
    const slash = key.indexOf('/');
    const ns = key.slice(0, slash);
    const name = key.slice(slash + 1);
    const uid = podUid(this.clusterId, ns, name);
    const pod = this.#pods.get(key);
    const objKey = objectKey('Pod', ns, name);
    this.#notes.delete(objKey);
    if (!pod) {
      this.#trackUse(`pod:${key}`, undefined);
      this.#policies.forgetWorkload(uid);
      this.state.removeWorkload(uid);
      return;
    }
    const labels = pod.metadata.labels ?? {};
    const nsLabels = this.#namespaces.get(ns);
    const gwName = labels[GATEWAY_NAME_LABEL];
    // A waypoint's own pods speak HBONE themselves (istiod: native_tunnel), are never captured, never use a waypoint.
    const nativeTunnel = !!gwName && this.#isWaypointGateway(ns, gwName);
    const enrollment = enrollmentOf(
      { namespace: ns, labels, annotations: pod.metadata.annotations, hostNetwork: pod.spec.hostNetwork },
      nsLabels,
      this.#excluded,
    );
    const ref = nativeTunnel ? undefined : requestedWaypoint(ns, labels, nsLabels);
    this.#trackUse(`pod:${key}`, ref);
    const binding = bindWaypoint('workload', ref, this.#waypointLookup(ns));
    if (binding.problem) this.#note(objKey, binding.problem);

    // Service membership: EndpointSlices when a Service has any, else its selector (see #membership).
    const services: Record<string, PortMapping[]> = {};
    let sliceReady: boolean | undefined;
    // Candidates: the Services whose slices name this pod, and those its namespace's selectors decide
    // (no slices) — never every Service of the namespace, which made each pod event cost O(services).
    const candidates = new Set<string>();
    for (const [k, v] of Object.entries(labels))
      for (const svcKey of this.#unslicedBySelector.get(`${ns}\0${k}=${v}`) ?? []) candidates.add(svcKey);
    for (const sk of this.#slicesByPod.get(key) ?? []) {
      const slice = this.#slices.get(sk);
      if (slice?.metadata.namespace === ns)
        candidates.add(nsName(ns, slice.metadata.labels?.['kubernetes.io/service-name'] ?? ''));
    }
    if (gwName) candidates.add(nsName(ns, gwName));
    for (const svcKey of candidates) {
      const svc = this.#serviceObject(svcKey);
      if (!svc) continue;
      const m = this.#membership(svcKey, svc, pod);
      if (!m) continue;
      if (m.ready === false) sliceReady = false;
      else if (m.ready === true && sliceReady === undefined) sliceReady = true;
      services[
        serviceKey({ namespace: ns, hostname: serviceHostname(svc.metadata.name, ns, this.domainSuffix) })
      ] = m.ports;
    }

    const authorizationPolicies = this.#policies.policiesFor(uid, ns, labels);

    const owner = workloadNameOf(pod);
    const w: Workload = {
      uid,
      name,
      namespace: ns,
      addresses: podAddresses(pod),
      node: pod.spec.nodeName ?? '',
      serviceAccount: pod.spec.serviceAccountName || pod.spec.serviceAccount || 'default',
      trustDomain: this.trustDomain,
      tunnelProtocol: enrollment.enrolled || nativeTunnel ? 'HBONE' : 'NONE',
      services,
      authorizationPolicies,
      labels: { ...labels },
      canonicalName: canonicalName(labels, owner.name),
      canonicalRevision: canonicalRevision(labels),
      workloadName: owner.name,
      workloadType: owner.type,
      status: podStatus(pod, sliceReady),
      networkMode: pod.spec.hostNetwork ? 'HOST_NETWORK' : 'STANDARD',
      nativeTunnel,
    };
    if (binding.waypoint)
      w.waypoint = gatewayAddress(binding.waypoint.name, binding.waypoint.namespace, this.domainSuffix);
    // An unchanged answer is not written: subscribers (the data path, a WDS push) hear only real changes.
    const prev = this.state.workloadByUid(uid);
    if (prev && JSON.stringify(prev) === JSON.stringify(w)) return;
    this.state.upsertWorkload(w);
  }

  /**
   * Is `pod` an endpoint of `svc`, and on which ports? The rule: if any EndpointSlice names the Service
   * (label kubernetes.io/service-name), the slices are the truth — the pod is a member iff an endpoint's
   * targetRef names it, and its `conditions.ready` feeds the workload status. Otherwise (a manifest
   * directory seldom has slices) the Service's selector decides, as the EndpointSlice controller would.
   */
  #membership(
    svcKey: string,
    svc: ServiceObject,
    pod: PodObject,
  ): { ports: PortMapping[]; ready?: boolean } | undefined {
    const sliceKeys = this.#slicesByService.get(svcKey);
    if (sliceKeys && sliceKeys.size > 0) {
      const podKey = nsName(pod.metadata.namespace, pod.metadata.name);
      const mine = this.#slicesByPod.get(podKey);
      if (!mine) return undefined;
      for (const sk of sliceKeys) {
        if (!mine.has(sk)) continue;
        const slice = this.#slices.get(sk)!;
        const ep = (slice.endpoints ?? []).find(
          (e) => e.targetRef?.name === pod.metadata.name && (e.targetRef.kind ?? 'Pod') === 'Pod',
        );
        const slicePorts = new Map<string, number>();
        for (const p of slice.ports ?? []) if (p.port !== undefined) slicePorts.set(p.name ?? '', p.port);
        const ready = ep?.conditions?.ready;
        return { ports: portMappings(svc, pod, slicePorts), ready: ready === null ? undefined : ready };
      }
      return undefined;
    }
    if (!selectorMatches(svc.spec.selector, pod.metadata.labels ?? {})) return undefined;
    return { ports: portMappings(svc, pod) };
  }
}

/** The tracing part of an Istio Telemetry resource (its first `tracing` entry, as Istio applies it). */
function telemetryTracingOf(o: TelemetryObject): TelemetryTracing {
  const t = o.spec.tracing?.[0];
  const labels = o.spec.selector?.matchLabels;
  return {
    name: o.metadata.name,
    namespace: o.metadata.namespace ?? 'default',
    ...(labels ? { selector: { ...labels } } : {}),
    ...(o.spec.targetRefs
      ? { targetRefs: o.spec.targetRefs.map((r) => ({ kind: r.kind, name: r.name })) }
      : {}),
    ...(t?.randomSamplingPercentage !== undefined
      ? { randomSamplingPercentage: t.randomSamplingPercentage }
      : {}),
    ...(t?.disableSpanReporting !== undefined ? { disableSpanReporting: t.disableSpanReporting } : {}),
    ...(t?.providers ? { providers: t.providers.map((p) => p.name) } : {}),
  };
}

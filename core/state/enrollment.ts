// Who is in the mesh, and which waypoint an object uses: pure functions over labels, so the
// manifest source, the Kubernetes source and the node agent all decide the same way.
// Sources: istio.io docs/ambient/usage/add-workloads and docs/ambient/usage/waypoint; istio/istio
// manifests/charts/istio-cni/values.yaml (ambient enablement selector), pkg/config/constants,
// pilot/pkg/serviceregistry/kube/controller/ambient/waypoints.go (GetUseWaypoint, waypoint-for checks).

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace';
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for';
/** Set by Istio's sidecar injector; a sidecar pod is never also captured by ztunnel (sidecar wins). */
export const SIDECAR_STATUS_ANNOTATION = 'sidecar.istio.io/status';
/** Label Istio (and Gateway API implementations) put on a Gateway's own pods. */
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
/** istio-cni `cni.excludeNamespaces` default: pods there are never captured. */
export const DEFAULT_EXCLUDED_NAMESPACES: readonly string[] = ['kube-system'];

export type Labels = Record<string, string> | undefined;

export interface PodEnrollmentInput {
  namespace: string;
  labels?: Labels;
  annotations?: Labels;
  hostNetwork?: boolean;
}

export interface EnrollmentDecision {
  enrolled: boolean;
  /** Why, in words an operator can check against the labels. */
  reason: string;
}

/**
 * The mesh's own pods are never captured (a ztunnel capturing itself or a waypoint would loop):
 * - waypoint / gateway pods: label gateway.networking.k8s.io/gateway-name (Istio sets it on waypoints);
 * - ztunnel pods: label `app=ztunnel` (Istio's ztunnel chart) or `app.kubernetes.io/name=ambit-ztunnel`;
 * - sidecar pods: annotation sidecar.istio.io/status.
 */
export function meshInfrastructureRole(pod: PodEnrollmentInput): string | undefined {
  const labels = pod.labels ?? {};
  if (labels[GATEWAY_NAME_LABEL]) return `waypoint/gateway pod (label ${GATEWAY_NAME_LABEL})`;
  if (labels.app === 'ztunnel' || labels['app.kubernetes.io/name'] === 'ambit-ztunnel') return 'ztunnel pod';
  if (pod.annotations?.[SIDECAR_STATUS_ANNOTATION])
    return `sidecar pod (annotation ${SIDECAR_STATUS_ANNOTATION})`;
  return undefined;
}

/**
 * istio-cni's ambient enablement selector: captured iff (pod label = ambient) OR (namespace label =
 * ambient AND pod label != none); never host-network pods, never the mesh's own pods, never pods in
 * an excluded namespace (kube-system by default).
 */
export function enrollmentOf(
  pod: PodEnrollmentInput,
  namespaceLabels: Labels,
  excludedNamespaces: readonly string[] = DEFAULT_EXCLUDED_NAMESPACES,
): EnrollmentDecision {
  // Host-network pods share the node's network namespace: capturing them would capture the node.
  if (pod.hostNetwork) return { enrolled: false, reason: 'host-network pod' };
  const infra = meshInfrastructureRole(pod);
  if (infra) return { enrolled: false, reason: `mesh infrastructure: ${infra}` };
  if (excludedNamespaces.includes(pod.namespace))
    return { enrolled: false, reason: `namespace ${pod.namespace} is excluded` };
  const podMode = pod.labels?.[DATAPLANE_MODE_LABEL];
  if (podMode === 'ambient') return { enrolled: true, reason: `pod label ${DATAPLANE_MODE_LABEL}=ambient` };
  if (podMode === 'none') return { enrolled: false, reason: `pod label ${DATAPLANE_MODE_LABEL}=none` };
  if (namespaceLabels?.[DATAPLANE_MODE_LABEL] === 'ambient')
    return { enrolled: true, reason: `namespace label ${DATAPLANE_MODE_LABEL}=ambient` };
  return { enrolled: false, reason: 'no ambient label on pod or namespace' };
}

export function isEnrolled(
  pod: PodEnrollmentInput,
  namespaceLabels: Labels,
  excludedNamespaces?: readonly string[],
): boolean {
  return enrollmentOf(pod, namespaceLabels, excludedNamespaces).enrolled;
}

// --- waypoint binding ---------------------------------------------------------------------------------

export type WaypointFor = 'service' | 'workload' | 'all' | 'none';

export interface WaypointRef {
  name: string;
  namespace: string;
  /** Where the label came from: the object itself or its namespace. */
  from: 'object' | 'namespace';
}

/**
 * The `istio.io/use-waypoint` an object asks for (istio GetUseWaypoint): the object's own label beats
 * its namespace's; `none` on the object opts out even when the namespace names a waypoint.
 * `istio.io/use-waypoint-namespace` (read from the same object as the name) points at another namespace.
 * Returns undefined when no waypoint is requested (or opted out).
 */
export function requestedWaypoint(
  objectNamespace: string,
  objectLabels: Labels,
  namespaceLabels: Labels,
): WaypointRef | undefined {
  const own = objectLabels?.[USE_WAYPOINT_LABEL];
  if (own !== undefined && own !== '') {
    if (own === 'none') return undefined;
    const ns = objectLabels?.[USE_WAYPOINT_NAMESPACE_LABEL] || objectNamespace;
    return { name: own, namespace: ns, from: 'object' };
  }
  const inherited = namespaceLabels?.[USE_WAYPOINT_LABEL];
  if (inherited !== undefined && inherited !== '' && inherited !== 'none') {
    const ns = namespaceLabels?.[USE_WAYPOINT_NAMESPACE_LABEL] || objectNamespace;
    return { name: inherited, namespace: ns, from: 'namespace' };
  }
  return undefined;
}

/** `istio.io/waypoint-for` of a Gateway; unset or unknown means `service` (Istio's default). */
export function waypointForOf(gatewayLabels: Labels): WaypointFor {
  const v = gatewayLabels?.[WAYPOINT_FOR_LABEL];
  return v === 'workload' || v === 'all' || v === 'none' || v === 'service' ? v : 'service';
}

export interface WaypointBinding {
  /** The waypoint to use, or undefined. */
  waypoint?: { name: string; namespace: string };
  /** Set when a requested waypoint was not applied, saying why (status / `ambit state` notes). */
  problem?: string;
}

/**
 * Whether a requested waypoint actually applies to a `service` or a `workload`:
 * - the waypoint must exist (istiod leaves WDS waypoint unset otherwise, so traffic goes direct);
 * - the waypoint must accept the object's namespace (`refuses` says why not);
 * - services need waypoint-for service|all, workloads need workload|all;
 * - a mismatch inherited from the namespace is silently ignored; an explicit label on the object is
 *   reported as a problem (Istio: a status error on the object), but not applied either.
 */
export function bindWaypoint(
  target: 'service' | 'workload',
  ref: WaypointRef | undefined,
  lookup: (namespace: string, name: string) => { waypointFor: WaypointFor; refuses?: string } | undefined,
): WaypointBinding {
  if (!ref) return {};
  const wp = lookup(ref.namespace, ref.name);
  if (!wp) return { problem: `waypoint ${ref.namespace}/${ref.name} not found` };
  // Cross-namespace use must be allowed by the waypoint's listener (Gateway API allowedRoutes).
  if (wp.refuses) return { problem: `waypoint ${ref.namespace}/${ref.name} ${wp.refuses}` };
  const accepts = wp.waypointFor === 'all' || wp.waypointFor === target;
  if (!accepts) {
    if (ref.from === 'namespace') return {};
    return {
      problem: `waypoint ${ref.namespace}/${ref.name} is for ${wp.waypointFor} traffic, not ${target} traffic`,
    };
  }
  return { waypoint: { name: ref.name, namespace: ref.namespace } };
}

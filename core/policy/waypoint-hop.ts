// The waypoint hop of a connection, for explain: which waypoint a destination sends traffic through, which
// targetRefs policies it enforces, and who the destination ztunnel then sees as the client.
// Istio ambient (istio.io docs/ambient/usage/authorization-policy, "Where each policy is enforced"): with a
// waypoint in the path, the waypoint enforces targetRefs policies against the client's identity, and the
// destination ztunnel enforces selector/namespace policies against the *waypoint's* identity.
import { DEFAULT_TRUST_DOMAIN, type SpiffeId } from '../identity/spiffe.js';
import type { GatewayAddress, L7AuthorizationPolicy, Service, Waypoint, Workload } from '../state/model.js';
import { GATEWAY_NAME_LABEL, type MeshState } from '../state/state.js';
import { ROOT_NAMESPACE_DEFAULT } from './istio-api.js';

export interface WaypointHop {
  waypoint: Waypoint;
  /** The waypoint's SPIFFE identity: the service account named after the Gateway. */
  identity: SpiffeId;
  /** Address the destination ztunnel sees as the client (a waypoint pod), if known. */
  address?: string;
  /** targetRefs policies this waypoint enforces for the destination. */
  policies: L7AuthorizationPolicy[];
}

const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** istio: targetRefs kinds a waypoint honours: its Gateway, the destination Service, GatewayClass istio-waypoint (root ns). */
export function waypointPolicies(
  state: MeshState,
  waypoint: Waypoint,
  service: Service | undefined,
  rootNamespace = ROOT_NAMESPACE_DEFAULT,
): L7AuthorizationPolicy[] {
  return state.l7Policies().filter((p) =>
    p.targetRefs.some((r) => {
      if (r.kind === 'Gateway' && (r.group === GATEWAY_GROUP || r.group === '')) {
        return r.name === waypoint.name && p.namespace === waypoint.namespace;
      }
      if (r.kind === 'Service' && (r.group === '' || r.group === 'core')) {
        return service !== undefined && r.name === service.name && p.namespace === service.namespace;
      }
      if (r.kind === 'GatewayClass') return r.name === 'istio-waypoint' && p.namespace === rootNamespace;
      return false;
    }),
  );
}

/**
 * The waypoint in the path: a service destination uses the service's waypoint; a pod-IP destination uses the
 * workload's own waypoint (waypoint-for workload|all), unless the source is that waypoint.
 */
export function waypointHop(
  state: MeshState,
  destination: { service?: Service; workload?: Workload },
  sourceIp: string,
): WaypointHop | undefined {
  const address: GatewayAddress | undefined = destination.service
    ? destination.service.waypoint
    : destination.workload?.waypoint;
  if (!address) return undefined;
  const waypoint = state.waypointFor(address);
  if (!waypoint) return undefined;
  if (state.waypointByAddress(sourceIp) === waypoint) return undefined; // the waypoint itself is the client
  const pod = state
    .workloadsInNamespace(waypoint.namespace)
    .find((w) => w.labels[GATEWAY_NAME_LABEL] === waypoint.name && w.addresses.length > 0);
  const ip = pod?.addresses[0] ?? waypoint.addresses?.[0];
  return {
    waypoint,
    identity: {
      trustDomain: pod?.trustDomain ?? destination.workload?.trustDomain ?? DEFAULT_TRUST_DOMAIN,
      namespace: waypoint.namespace,
      serviceAccount: pod?.serviceAccount ?? waypoint.name,
    },
    ...(ip ? { address: ip } : {}),
    policies: waypointPolicies(state, waypoint, destination.service),
  };
}

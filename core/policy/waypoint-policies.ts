// The policies a waypoint enforces: AuthorizationPolicies attached with `targetRefs`. Istio ambient
// (istio.io docs/ambient/usage/authorization-policy, "Where each policy is enforced"): with a waypoint in
// the path, the waypoint enforces targetRefs policies against the client's identity, and the destination
// ztunnel enforces selector/namespace policies against the *waypoint's* identity. The waypoint's
// authorizer (waypoint/authz.ts) and `ambit policy check` (explain.ts) both select them here.
import type { L7AuthorizationPolicy, Service, Waypoint } from '../state/model.js';
import type { MeshState } from '../state/state.js';
import { ROOT_NAMESPACE_DEFAULT } from './istio-api.js';

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

/** The policies that decide (ALLOW/DENY/CUSTOM) and the AUDIT ones, which never decide (istio/api authorization_policy.proto). */
export function splitAudit(policies: L7AuthorizationPolicy[]): {
  deciding: L7AuthorizationPolicy[];
  audit: L7AuthorizationPolicy[];
} {
  return {
    deciding: policies.filter((p) => p.action !== 'AUDIT'),
    audit: policies.filter((p) => p.action === 'AUDIT'),
  };
}

// Waypoint choice, written once: which waypoint a destination sends traffic through, whether the source
// is that waypoint (then it goes straight on), and which waypoint pod is dialled. istio/ztunnel
// src/state.rs `fetch_service_waypoint` / `fetch_workload_waypoint` / `fetch_waypoint` and
// src/proxy/outbound.rs `check_from_waypoint`.
import type { SpiffeId } from '../identity/spiffe.js';
import type { GatewayAddress, Service, Waypoint, Workload } from '../state/model.js';
import { type Endpoint, GATEWAY_NAME_LABEL, type MeshState, identityOf } from '../state/state.js';
import type { SocketAddr } from './address.js';
import { selectEndpoint } from './endpoint.js';

/** The Gateway name a waypoint address names: the first label of `<gw>.<ns>.svc.<domain>`. */
export const gatewayNameOf = (gw: GatewayAddress): string => gw.hostname.split('.')[0] ?? '';

/**
 * The source is a pod of the waypoint `gw` (Istio's waypoint pods carry the gateway-name label), or an
 * address the state knows as that waypoint's: traffic from the waypoint is not sent back to it.
 */
export function sourceIsWaypoint(
  state: MeshState,
  source: Workload | undefined,
  gw: GatewayAddress,
): boolean {
  if (!source) return false;
  if (source.namespace === gw.namespace && source.labels[GATEWAY_NAME_LABEL] === gatewayNameOf(gw))
    return true;
  const ip = source.addresses[0];
  const wp = ip === undefined ? undefined : state.waypointByAddress(ip);
  return wp !== undefined && wp.hostname === gw.hostname;
}

/** The pods that may serve waypoint `gw`, each with the HBONE port to dial. */
export function waypointCandidates(
  state: MeshState,
  gw: GatewayAddress,
): { service?: Service; pods: Endpoint[] } {
  const services = state.servicesByHostname(gw.hostname);
  const service = services.find((s) => s.namespace === gw.namespace) ?? services[0];
  const healthy = (w: Workload): boolean => w.status === 'HEALTHY' && w.addresses.length > 0;
  const onHbonePort = (w: Workload): Endpoint => ({ workload: w, targetPort: gw.hboneMtlsPort });
  let pods: Endpoint[] = service
    ? state.endpointsOf(service, gw.hboneMtlsPort).filter((e) => e.workload.addresses.length > 0)
    : [];
  // The waypoint Service may not list 15008 as a port; its pods still serve HBONE there.
  if (pods.length === 0 && service) pods = state.workloadsOfService(service).filter(healthy).map(onHbonePort);
  // Else the pods labelled with the Gateway name (Istio's waypoint pods carry it).
  if (pods.length === 0) {
    const name = gatewayNameOf(gw);
    pods = state
      .workloadsInNamespace(gw.namespace)
      .filter((w) => w.labels[GATEWAY_NAME_LABEL] === name && healthy(w))
      .map(onHbonePort);
  }
  return service ? { service, pods } : { pods };
}

/** One waypoint pod chosen to carry a connection. */
export interface WaypointChoice {
  /** The waypoint address the destination names. */
  address: GatewayAddress;
  /** The Gateway, when the state knows it (for its targetRefs policies). */
  gateway?: Waypoint;
  pod: Workload;
  /** The waypoint's Service, when there is one (its SANs are accepted too). */
  service?: Service;
  nextHop: SocketAddr;
  /** The identity the pod presents: what the destination ztunnel sees as the client. */
  identity: SpiffeId;
}

/** One healthy waypoint pod for `gw` by the endpoint policy (endpoint.ts), or undefined when none. */
export function chooseWaypointPod(
  state: MeshState,
  gw: GatewayAddress,
  random: () => number = Math.random,
): WaypointChoice | undefined {
  const { service, pods } = waypointCandidates(state, gw);
  const ep = selectEndpoint(pods, random);
  const ip = ep?.workload.addresses[0];
  if (!ep || ip === undefined) return undefined;
  const gateway = state.waypointFor(gw);
  return {
    address: gw,
    ...(gateway ? { gateway } : {}),
    pod: ep.workload,
    ...(service ? { service } : {}),
    nextHop: { ip, port: gw.hboneMtlsPort },
    identity: identityOf(ep.workload),
  };
}

/** A Waypoint is bound to a destination's GatewayAddress when hostname and namespace match. */
export const boundTo = (wp: Waypoint, addr: GatewayAddress | undefined): boolean =>
  addr !== undefined && addr.hostname === wp.hostname && addr.namespace === wp.namespace;

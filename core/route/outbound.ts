// Where does a captured outbound connection go? The pure decision of istio/ztunnel
// src/proxy/outbound.rs `build_request` + src/state.rs `fetch_upstream`: the data path asks, the state
// answers. ztunnel's outbound listener acts on the plan; `ambit policy check` and the demo's what-if
// API (core/policy/explain.ts) explain the same plan, so they cannot disagree with the data path.
import { type SpiffeId, sameIdentity, tryParseSpiffeId } from '../identity/spiffe.js';
import type { GatewayAddress, Service, ServicePort, Workload } from '../state/model.js';
import { HBONE_PORT } from '../hbone/settings.js';
import { type MeshState, identityOf, serviceKey } from '../state/state.js';
import { type SocketAddr, formatAddr, isLoopback, socketAddr } from './address.js';
import { candidateEndpoints, selectEndpoint } from './endpoint.js';
import { type WaypointChoice, chooseWaypointPod, sourceIsWaypoint } from './waypoint.js';

/** What an original destination address names (istio/ztunnel fetch_upstream: a Service VIP first). */
export type RouteTarget =
  | { kind: 'service'; service: Service; port: ServicePort }
  | { kind: 'workload'; workload: Workload }
  | { kind: 'unknown' };

/** Service VIP:port first, then a workload by IP — the order istio/ztunnel's `fetch_upstream` uses. */
export function lookupDestination(state: MeshState, dst: SocketAddr): RouteTarget {
  const byVip = state.serviceByVip(dst.ip, dst.port);
  if (byVip) return { kind: 'service', service: byVip.service, port: byVip.port };
  const workload = state.workloadByIp(dst.ip);
  return workload ? { kind: 'workload', workload } : { kind: 'unknown' };
}

/** What the outbound path will do with a connection. */
export type OutboundPlan =
  /** HBONE to a peer ztunnel (or a waypoint) on :15008. */
  | {
      kind: 'hbone';
      nextHop: SocketAddr;
      /** CONNECT :authority — pod IP:target port, or the original VIP:port for a waypoint. */
      authority: string;
      /** Identities the peer may present (exact match on a URI SAN). */
      expectedIdentities: SpiffeId[];
      destination: Workload;
      /** The target port on `destination` (direct HBONE only; a waypoint picks its own endpoint). */
      targetPort?: number;
      service?: Service;
      /** Set when the next hop is a waypoint. */
      waypoint?: WaypointChoice;
    }
  /** The destination is on this node: apply its inbound policy here and connect directly. */
  | { kind: 'local'; target: SocketAddr; destination: Workload; service?: Service }
  /** Destination workload not in the mesh: plain TCP to it. */
  | { kind: 'plaintext'; target: SocketAddr; destination: Workload; service?: Service }
  /** Unknown destination: plain TCP to the original destination, no identity. */
  | { kind: 'passthrough'; target: SocketAddr }
  /** Nothing can serve it (loop, service without healthy endpoints, waypoint unresolvable). */
  | { kind: 'refuse'; reason: string; code: OutboundRefusal; service?: Service; waypoint?: GatewayAddress };

export type OutboundRefusal = 'SELF_CALL' | 'NO_HEALTHY_UPSTREAM' | 'WAYPOINT_UNRESOLVED';

export interface PlanInput {
  /** The source workload (by capture context: the pod IP the connection came from). */
  source: Workload | undefined;
  /** Original destination D. */
  dst: SocketAddr;
  /** This ztunnel's node. */
  node: string;
  /** 15001/15006/15008: never a valid target (istio/ztunnel illegal_ports). */
  illegalPorts: ReadonlySet<number>;
  /** Random in [0,1) for load balancing (injectable for tests). */
  random?: () => number;
}

/** The peer must present the workload's SPIFFE ID, or one of the service's SANs when service-addressed. */
export function expectedIdentities(w: Workload, service?: Service): SpiffeId[] {
  const ids = [identityOf(w)];
  for (const san of service?.subjectAltNames ?? []) {
    const id = tryParseSpiffeId(san);
    if (id && !ids.some((x) => sameIdentity(x, id))) ids.push(id);
  }
  return ids;
}

function viaWaypoint(
  state: MeshState,
  gw: GatewayAddress,
  dst: SocketAddr,
  destination: Workload | undefined,
  service: Service | undefined,
  random: () => number,
): OutboundPlan {
  const wp = chooseWaypointPod(state, gw, random);
  if (!wp) {
    return {
      kind: 'refuse',
      code: 'WAYPOINT_UNRESOLVED',
      reason: `waypoint ${gw.namespace}/${gw.hostname} has no healthy pod`,
      waypoint: gw,
      ...(service ? { service } : {}),
    };
  }
  return {
    kind: 'hbone',
    nextHop: wp.nextHop,
    // istio/ztunnel: the waypoint gets the original destination as the authority.
    authority: formatAddr(dst.ip, dst.port),
    expectedIdentities: expectedIdentities(wp.pod, wp.service),
    destination: destination ?? wp.pod,
    ...(service ? { service } : {}),
    waypoint: wp,
  };
}

function direct(w: Workload, targetPort: number, node: string, service: Service | undefined): OutboundPlan {
  const ip = w.addresses[0]!;
  const svc = service ? { service } : {};
  if (w.tunnelProtocol !== 'HBONE') {
    return { kind: 'plaintext', target: socketAddr(ip, targetPort), destination: w, ...svc };
  }
  if (w.node === node) {
    return { kind: 'local', target: socketAddr(ip, targetPort), destination: w, ...svc };
  }
  return {
    kind: 'hbone',
    nextHop: socketAddr(ip, HBONE_PORT),
    authority: formatAddr(ip, targetPort),
    expectedIdentities: expectedIdentities(w, service),
    destination: w,
    targetPort,
    ...svc,
  };
}

/**
 * A connection to `service` on `port` (a VIP:port, or a service named by hostname in `ambit policy
 * check`): its waypoint unless the source is that waypoint, else one endpoint by the endpoint policy.
 */
export function planToService(
  state: MeshState,
  service: Service,
  dst: SocketAddr,
  input: Omit<PlanInput, 'dst'>,
): OutboundPlan {
  const random = input.random ?? Math.random;
  if (service.waypoint && !sourceIsWaypoint(state, input.source, service.waypoint)) {
    return viaWaypoint(state, service.waypoint, dst, undefined, service, random);
  }
  const ep = selectEndpoint(candidateEndpoints(state, service, dst.port), random);
  if (!ep) {
    return {
      kind: 'refuse',
      code: 'NO_HEALTHY_UPSTREAM',
      reason: `no healthy upstream for ${serviceKey(service)}:${dst.port}`,
      service,
    };
  }
  return direct(ep.workload, ep.targetPort, input.node, service);
}

export function planOutbound(state: MeshState, input: PlanInput): OutboundPlan {
  const dst = socketAddr(input.dst.ip, input.dst.port);
  if (isLoopback(dst.ip) && input.illegalPorts.has(dst.port)) {
    return { kind: 'refuse', code: 'SELF_CALL', reason: `refusing a call to ztunnel's own port ${dst.port}` };
  }
  const target = lookupDestination(state, dst);
  if (target.kind === 'service') return planToService(state, target.service, dst, input);
  if (target.kind === 'unknown') return { kind: 'passthrough', target: dst };
  const w = target.workload;
  if (w.waypoint && !sourceIsWaypoint(state, input.source, w.waypoint)) {
    return viaWaypoint(state, w.waypoint, dst, w, undefined, input.random ?? Math.random);
  }
  if (input.illegalPorts.has(dst.port)) {
    return { kind: 'refuse', code: 'SELF_CALL', reason: `port ${dst.port} is reserved for ztunnel` };
  }
  return direct(w, dst.port, input.node, undefined);
}

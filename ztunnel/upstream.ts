// Where does a captured outbound connection go? The pure decision of istio/ztunnel
// src/proxy/outbound.rs `build_request` + src/state.rs `fetch_upstream` / `load_balance` /
// `fetch_service_waypoint` / `fetch_workload_waypoint`: the data path asks, the state answers.
import type { Endpoint, MeshState } from '../core/state/state.js';
import { GATEWAY_NAME_LABEL, serviceKey, workloadIdentity } from '../core/state/state.js';
import type { GatewayAddress, Service, Workload } from '../core/state/model.js';

export interface Address {
  ip: string;
  port: number;
}

export const HBONE_PORT = 15008;

/** What the outbound path will do with a connection. */
export type OutboundPlan =
  /** HBONE to a peer ztunnel (or a waypoint) on :15008. */
  | {
      kind: 'hbone';
      nextHop: Address;
      /** CONNECT :authority — pod IP:target port, or the original VIP:port for a waypoint. */
      authority: string;
      /** SPIFFE IDs the peer may present (exact match on a URI SAN). */
      expectedIdentities: string[];
      destination: Workload;
      service?: Service;
      /** Set when the next hop is a waypoint. */
      waypoint?: Workload;
    }
  /** The destination is on this node: apply its inbound policy here and connect directly. */
  | { kind: 'local'; target: Address; destination: Workload; service?: Service }
  /** Destination workload not in the mesh: plain TCP to it. */
  | { kind: 'plaintext'; target: Address; destination: Workload; service?: Service }
  /** Unknown destination: plain TCP to the original destination, no identity. */
  | { kind: 'passthrough'; target: Address }
  /** Nothing can serve it (loop, service without healthy endpoints, waypoint unresolvable). */
  | { kind: 'refuse'; reason: string; code: OutboundRefusal; service?: Service };

export type OutboundRefusal = 'SELF_CALL' | 'NO_HEALTHY_UPSTREAM' | 'WAYPOINT_UNRESOLVED';

export interface PlanInput {
  /** The source workload (by capture context: the pod IP the connection came from). */
  source: Workload | undefined;
  /** Original destination D. */
  dst: Address;
  /** This ztunnel's node. */
  node: string;
  /** 15001/15006/15008: never a valid target (istio/ztunnel illegal_ports). */
  illegalPorts: ReadonlySet<number>;
  /** Random in [0,1) for load balancing (injectable for tests). */
  random?: () => number;
}

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip === '::ffff:127.0.0.1';
}

/**
 * Random choice weighted by capacity (istio/ztunnel load_balance: `capacity` defaults to 1). Only
 * healthy endpoints are passed in (MeshState.endpointsOf filters them).
 */
export function selectEndpoint(
  endpoints: Endpoint[],
  random: () => number = Math.random,
): Endpoint | undefined {
  if (endpoints.length === 0) return undefined;
  const weight = (e: Endpoint): number => {
    const raw = Number(e.workload.labels['ambit.dev/capacity'] ?? '1');
    return Number.isFinite(raw) && raw > 0 ? raw : 1;
  };
  const total = endpoints.reduce((s, e) => s + weight(e), 0);
  let pick = random() * total;
  for (const e of endpoints) {
    pick -= weight(e);
    if (pick < 0) return e;
  }
  return endpoints[endpoints.length - 1];
}

/** The peer must present the workload's SPIFFE ID, or one of the service's SANs when service-addressed. */
export function expectedIdentities(w: Workload, service?: Service): string[] {
  const ids = [workloadIdentity(w)];
  for (const san of service?.subjectAltNames ?? []) if (!ids.includes(san)) ids.push(san);
  return ids;
}

/**
 * A waypoint GatewayAddress → one waypoint pod (hostname → Service → endpoint on hbone_mtls_port,
 * istio/ztunnel state.rs fetch_waypoint). Prefers the Service in the address's namespace.
 */
export function resolveWaypoint(
  state: MeshState,
  gw: GatewayAddress,
  random: () => number = Math.random,
): { pod: Workload; service: Service | undefined; address: Address } | undefined {
  const services = state.servicesByHostname(gw.hostname);
  const svc = services.find((s) => s.namespace === gw.namespace) ?? services[0];
  let candidates: Endpoint[] = svc ? state.endpointsOf(svc, gw.hboneMtlsPort) : [];
  if (candidates.length === 0 && svc) {
    // The waypoint Service may not list 15008 as a port; its pods still serve HBONE there.
    candidates = state
      .workloadsOfService(svc)
      .filter((w) => w.status === 'HEALTHY')
      .map((w) => ({ workload: w, targetPort: gw.hboneMtlsPort }));
  }
  if (candidates.length === 0) {
    // Fall back to pods labelled with the Gateway name (Istio's waypoint pods carry it).
    const name = gw.hostname.split('.')[0] ?? '';
    candidates = state
      .workloadsInNamespace(gw.namespace)
      .filter((w) => w.labels[GATEWAY_NAME_LABEL] === name && w.status === 'HEALTHY')
      .map((w) => ({ workload: w, targetPort: gw.hboneMtlsPort }));
  }
  const ep = selectEndpoint(candidates, random);
  const ip = ep?.workload.addresses[0];
  if (!ep || ip === undefined) return undefined;
  return { pod: ep.workload, service: svc, address: { ip, port: gw.hboneMtlsPort } };
}

/** istio/ztunnel check_from_waypoint: the source is a pod of the waypoint the destination uses. */
function sourceIsWaypoint(state: MeshState, source: Workload | undefined, gw: GatewayAddress): boolean {
  if (!source) return false;
  const name = gw.hostname.split('.')[0] ?? '';
  if (source.namespace === gw.namespace && source.labels[GATEWAY_NAME_LABEL] === name) return true;
  const ip = source.addresses[0];
  const wp = ip === undefined ? undefined : state.waypointByAddress(ip);
  return wp !== undefined && wp.hostname === gw.hostname;
}

function waypointPlan(
  state: MeshState,
  gw: GatewayAddress,
  dst: Address,
  destination: Workload | undefined,
  service: Service | undefined,
  random: () => number,
): OutboundPlan {
  const wp = resolveWaypoint(state, gw, random);
  if (!wp) {
    return {
      kind: 'refuse',
      code: 'WAYPOINT_UNRESOLVED',
      reason: `waypoint ${gw.namespace}/${gw.hostname} has no healthy pod`,
      service,
    };
  }
  return {
    kind: 'hbone',
    nextHop: wp.address,
    // istio/ztunnel: the waypoint gets the original destination as the authority.
    authority: `${dst.ip}:${dst.port}`,
    expectedIdentities: expectedIdentities(wp.pod, wp.service),
    destination: destination ?? wp.pod,
    service,
    waypoint: wp.pod,
  };
}

function direct(w: Workload, targetPort: number, node: string, service: Service | undefined): OutboundPlan {
  const ip = w.addresses[0]!;
  if (w.tunnelProtocol !== 'HBONE') {
    return { kind: 'plaintext', target: { ip, port: targetPort }, destination: w, service };
  }
  if (w.node === node) {
    return { kind: 'local', target: { ip, port: targetPort }, destination: w, service };
  }
  return {
    kind: 'hbone',
    nextHop: { ip, port: HBONE_PORT },
    authority: `${ip}:${targetPort}`,
    expectedIdentities: expectedIdentities(w, service),
    destination: w,
    service,
  };
}

export function planOutbound(state: MeshState, input: PlanInput): OutboundPlan {
  const { dst, source, node } = input;
  const random = input.random ?? Math.random;
  if (isLoopback(dst.ip) && input.illegalPorts.has(dst.port)) {
    return { kind: 'refuse', code: 'SELF_CALL', reason: `refusing a call to ztunnel's own port ${dst.port}` };
  }
  const byVip = state.serviceByVip(dst.ip, dst.port);
  if (byVip) {
    const { service } = byVip;
    if (service.waypoint && !sourceIsWaypoint(state, source, service.waypoint)) {
      return waypointPlan(state, service.waypoint, dst, undefined, service, random);
    }
    const ep = selectEndpoint(state.endpointsOf(service, dst.port), random);
    if (!ep || ep.workload.addresses.length === 0) {
      return {
        kind: 'refuse',
        code: 'NO_HEALTHY_UPSTREAM',
        reason: `no healthy upstream for ${serviceKey(service)}:${dst.port}`,
        service,
      };
    }
    return direct(ep.workload, ep.targetPort, node, service);
  }
  const w = state.workloadByIp(dst.ip);
  if (!w) return { kind: 'passthrough', target: dst };
  if (w.waypoint && !sourceIsWaypoint(state, source, w.waypoint)) {
    return waypointPlan(state, w.waypoint, dst, w, undefined, random);
  }
  if (input.illegalPorts.has(dst.port)) {
    return { kind: 'refuse', code: 'SELF_CALL', reason: `port ${dst.port} is reserved for ztunnel` };
  }
  return direct(w, dst.port, node, undefined);
}

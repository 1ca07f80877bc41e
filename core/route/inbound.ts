// Inbound targets: what a tunnel's `:authority` names at the end that receives it.
//  - ztunnel (istio/ztunnel src/proxy/inbound.rs, "compute the upstream port"): `<pod-ip>:<port>` is the
//    port as given (the HBONE server already checked the IP is this pod); `<service-hostname>:<port>`
//    (the east-west form, HboneAddress::SvcHostname) is the Service with that hostname, preferring the
//    pod's own namespace, its service port mapped per endpoint, else the Service's numeric targetPort.
//    Unknown hostname, service port or target port → 503 (UnknownDestination).
//  - a waypoint (istio/istio pilot/pkg/networking/core/listener_waypoint.go, `connect_terminate`): the
//    client ztunnel sends the ORIGINAL destination (service VIP:port, or pod IP:port for workload
//    waypoints); only destinations bound to this waypoint are served, anything else is a 400 — a
//    waypoint must never become an open relay inside the mesh. VIP before pod IP, as lookupDestination.
import type { Authority } from '../hbone/connect-request.js';
import { BadAuthority, UnknownDestination } from '../hbone/errors.js';
import type { Service, ServicePort, Waypoint, Workload } from '../state/model.js';
import { type MeshState, targetPortOf } from '../state/state.js';
import { formatAddr, socketAddr } from './address.js';
import { lookupDestination } from './outbound.js';
import { boundTo } from './waypoint.js';

export interface InboundTarget {
  port: number;
  /** The Service a hostname authority named (for telemetry). */
  service?: Service;
}

/** The port of pod `destination` an inbound HBONE CONNECT reaches; throws UnknownDestination (→ 503). */
export function inboundTarget(state: MeshState, destination: Workload, authority: Authority): InboundTarget {
  if (authority.kind !== 'hostname') return { port: authority.port };
  const { hostname, port } = authority;
  const services = state.servicesByHostname(hostname);
  const service = services.find((s) => s.namespace === destination.namespace) ?? services[0];
  if (!service) throw new UnknownDestination(`no service ${hostname} is known`);
  const servicePort = service.ports.find((p) => p.servicePort === port);
  if (!servicePort) throw new UnknownDestination(`service ${hostname} has no port ${port}`);
  const target = targetPortOf(destination, service, port);
  if (!target) {
    throw new UnknownDestination(
      `service ${hostname} port ${port} has no target port on ${destination.namespace}/${destination.name}`,
    );
  }
  return { port: target, service };
}

/** The original destination of a tunnel, as a waypoint serves it. */
export interface WaypointDestination {
  /** The address the client dialled (VIP or pod IP) and its port. */
  ip: string;
  port: number;
  /** Set when the authority is a service VIP:port bound to this waypoint. */
  service?: Service;
  servicePort?: ServicePort;
  /** Set when the authority is a workload (pod IP) bound to this waypoint (waypoint-for workload|all). */
  workload?: Workload;
}

/**
 * The destination named by `authority` when it is bound to waypoint `wp`; throws BadAuthority (→ HBONE
 * 400) otherwise. Hostname authorities (double-HBONE `svc-fqdn:port`) resolve through the hostname.
 */
export function waypointDestination(
  state: MeshState,
  wp: Waypoint,
  authority: Authority,
): WaypointDestination {
  const where = `waypoint ${wp.namespace}/${wp.name}`;
  if (authority.kind === 'hostname') {
    for (const service of state.servicesByHostname(authority.hostname)) {
      const servicePort = service.ports.find((p) => p.servicePort === authority.port);
      if (servicePort && boundTo(wp, service.waypoint)) {
        return { ip: service.addresses[0] ?? authority.hostname, port: authority.port, service, servicePort };
      }
    }
    throw new BadAuthority(`${authority.hostname}:${authority.port}`, `not a service bound to ${where}`);
  }
  const dst = socketAddr(authority.ip, authority.port);
  const text = formatAddr(authority.ip, authority.port);
  const target = lookupDestination(state, dst);
  if (target.kind === 'service') {
    if (boundTo(wp, target.service.waypoint)) {
      return { ip: authority.ip, port: authority.port, service: target.service, servicePort: target.port };
    }
    throw new BadAuthority(
      text,
      `service ${target.service.namespace}/${target.service.name} is not bound to ${where}`,
    );
  }
  if (target.kind === 'workload' && boundTo(wp, target.workload.waypoint)) {
    return { ip: authority.ip, port: authority.port, workload: target.workload };
  }
  throw new BadAuthority(text, `neither a service nor a workload bound to ${where}`);
}

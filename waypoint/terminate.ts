// HBONE in: which tunnels this waypoint accepts. istio-ambient.md §7.3 (istio/istio
// pilot/pkg/networking/core/listener_waypoint.go, `connect_terminate`): the client ztunnel sends
// `:authority` = the ORIGINAL destination (service VIP:port, or a pod IP:port for workload waypoints),
// and the waypoint only serves destinations bound to it — anything else is a 400, never a silent
// pass-through (a waypoint must not become an open relay inside the mesh).
import type { Authority } from '../core/hbone/connect-request.js';
import { BadAuthority } from '../core/hbone/errors.js';
import type { Service, ServicePort, Waypoint, Workload } from '../core/state/model.js';
import type { MeshState } from '../core/state/state.js';

/** The original destination of a tunnel, as the waypoint serves it. */
export interface Destination {
  /** The address the client dialled (VIP or pod IP) and its port. */
  ip: string;
  port: number;
  /** Set when the authority is a service VIP:port bound to this waypoint. */
  service?: Service;
  servicePort?: ServicePort;
  /** Set when the authority is a workload (pod IP) bound to this waypoint (waypoint-for workload|all). */
  workload?: Workload;
}

const boundTo = (wp: Waypoint, addr: { namespace: string; hostname: string } | undefined): boolean =>
  addr !== undefined && addr.hostname === wp.hostname && addr.namespace === wp.namespace;

/**
 * The destination named by `authority` when it is bound to waypoint `wp`; throws BadAuthority (→ HBONE 400)
 * otherwise. Hostname authorities (double-HBONE `svc-fqdn:port`) resolve through the service hostname.
 */
export function resolveDestination(state: MeshState, wp: Waypoint, authority: Authority): Destination {
  if (authority.kind === 'hostname') {
    for (const service of state.servicesByHostname(authority.hostname)) {
      const servicePort = service.ports.find((p) => p.servicePort === authority.port);
      if (servicePort && boundTo(wp, service.waypoint)) {
        return { ip: service.addresses[0] ?? authority.hostname, port: authority.port, service, servicePort };
      }
    }
    throw new BadAuthority(
      `${authority.hostname}:${authority.port}`,
      `not a service bound to waypoint ${wp.namespace}/${wp.name}`,
    );
  }
  const byVip = state.serviceByVip(authority.ip, authority.port);
  if (byVip) {
    if (boundTo(wp, byVip.service.waypoint)) {
      return { ip: authority.ip, port: authority.port, service: byVip.service, servicePort: byVip.port };
    }
    throw new BadAuthority(
      `${authority.ip}:${authority.port}`,
      `service ${byVip.service.namespace}/${byVip.service.name} is not bound to waypoint ${wp.namespace}/${wp.name}`,
    );
  }
  const workload = state.workloadByIp(authority.ip);
  if (workload && boundTo(wp, workload.waypoint)) {
    return { ip: authority.ip, port: authority.port, workload };
  }
  throw new BadAuthority(
    `${authority.ip}:${authority.port}`,
    `neither a service nor a workload bound to waypoint ${wp.namespace}/${wp.name}`,
  );
}

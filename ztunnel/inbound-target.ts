// Which port of the destination pod an inbound HBONE CONNECT goes to (istio/ztunnel inbound.rs;
// research/istio-ambient.md §2.3 "Compute the upstream port"):
//   - `<pod-ip>:<port>`: the port as given (the server already checked the IP is this pod);
//   - `<service-hostname>:<service-port>` (the east-west gateway form, HboneAddress::SvcHostname): the
//     Service with that hostname, preferring the pod's own namespace, and its service port mapped to a
//     target port by the pod's per-endpoint port map, else the Service's numeric targetPort. Unknown
//     hostname, unknown service port, or no target port → 503 (UnknownDestination).
import { type AuthorityCheck, defaultAuthorityCheck } from '../core/hbone/server.js';
import type { Authority } from '../core/hbone/connect-request.js';
import { UnknownDestination } from '../core/hbone/errors.js';
import type { Service, Workload } from '../core/state/model.js';
import { type MeshState, targetPortOf } from '../core/state/state.js';

/** The HBONE server's authority check for ztunnel: an IP must be this pod; a hostname is resolved later. */
export const ztunnelAuthorityCheck: AuthorityCheck = (authority, conn) => {
  if (authority.kind === 'hostname') return;
  defaultAuthorityCheck(authority, conn);
};

export interface InboundTarget {
  port: number;
  /** The Service a hostname authority named (for telemetry). */
  service?: Service;
}

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

// Model → WDS resources: core/state's compact model as istio.workload.Address and
// istio.security.Authorization messages, named as istiod names them (istio/istio
// pilot/pkg/serviceregistry/kube/controller/ambient: workloads by uid, services by
// "<namespace>/<hostname>", authorizations by "<namespace>/<name>").
//
// What Istio's types have no field for travels in `extensions` (the field Istio provides "to attach
// arbitrary additional configuration"), each a google.protobuf.Struct; Istio's ztunnel ignores them:
// - `ambit.dev/labels` on Workload and Service: the object's labels (capacity, gateway-name, telemetry);
// - `ambit.dev/waypoint` on the Service named after a waypoint: the Gateway's name, waypoint-for,
//   traffic type and addresses. A waypoint without a Service of its own still travels as a Service
//   resource (Istio's waypoints always have one) marked `service: false`;
// - `ambit.dev/selector` on WORKLOAD_SELECTOR Authorizations: the selector, for explain.
import ipaddr from 'ipaddr.js';
import type {
  Authorization,
  CidrMatch,
  GatewayAddress,
  Service,
  StringMatch,
  Waypoint,
  Workload,
} from '../core/state/model.js';
import {
  type AnyCodec,
  type ProtoAuthorization,
  type ProtoExtension,
  type ProtoGatewayAddress,
  type ProtoMatch,
  type ProtoService,
  type ProtoStringMatch,
  type ProtoStruct,
  type ProtoWorkload,
  LABELS_EXTENSION,
  SELECTOR_EXTENSION,
  STRUCT_TYPE_URL,
  WAYPOINT_EXTENSION,
  structOf,
  wdsCodecs,
} from '../core/sources/wds-proto.js';

export class EncodeError extends Error {
  readonly code = 'WDS_ENCODE';
  constructor(message: string) {
    super(message);
    this.name = 'EncodeError';
  }
}

/** Dotted IPv4 / IPv6 text → 4 or 16 bytes (istio.workload addresses are raw bytes). */
export function ipBytes(ip: string, where: string): Buffer {
  try {
    const addr = ipaddr.parse(ip);
    const v4 = addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress();
    return Buffer.from(v4 ? (addr as ipaddr.IPv6).toIPv4Address().toByteArray() : addr.toByteArray());
  } catch {
    throw new EncodeError(`${where}: "${ip}" is not an IP address`);
  }
}

function extension(name: string, value: ProtoStruct, struct: AnyCodec<ProtoStruct>): ProtoExtension {
  return { name, config: { type_url: STRUCT_TYPE_URL, value: struct.encode(value) } };
}

function gateway(g: GatewayAddress | undefined): ProtoGatewayAddress | null {
  if (!g) return null;
  return { hostname: { namespace: g.namespace, hostname: g.hostname }, hbone_mtls_port: g.hboneMtlsPort };
}

export function workloadToProto(w: Workload): ProtoWorkload {
  const { struct } = wdsCodecs();
  const services: ProtoWorkload['services'] = {};
  for (const [key, ports] of Object.entries(w.services)) {
    services[key] = { ports: ports.map((p) => ({ service_port: p.servicePort, target_port: p.targetPort })) };
  }
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    addresses: w.addresses.map((a) => ipBytes(a, `workload ${w.uid} address`)),
    tunnel_protocol: w.tunnelProtocol,
    trust_domain: w.trustDomain,
    service_account: w.serviceAccount,
    waypoint: gateway(w.waypoint),
    node: w.node,
    canonical_name: w.canonicalName,
    canonical_revision: w.canonicalRevision,
    workload_type: w.workloadType,
    workload_name: w.workloadName,
    native_tunnel: w.nativeTunnel,
    services,
    authorization_policies: w.authorizationPolicies,
    status: w.status,
    network_mode: w.networkMode,
    extensions:
      Object.keys(w.labels).length > 0 ? [extension(LABELS_EXTENSION, structOf(w.labels), struct)] : [],
  };
}

/** A Service resource; `waypoint` when a waypoint has this hostname, `service` absent when it has no Service. */
export function serviceToProto(service: Service | undefined, waypoint: Waypoint | undefined): ProtoService {
  const { struct } = wdsCodecs();
  if (!service && !waypoint) throw new EncodeError('serviceToProto: neither a service nor a waypoint');
  const extensions: ProtoExtension[] = [];
  if (service && Object.keys(service.labels).length > 0)
    extensions.push(extension(LABELS_EXTENSION, structOf(service.labels), struct));
  if (waypoint) {
    extensions.push(
      extension(
        WAYPOINT_EXTENSION,
        structOf({
          name: waypoint.name,
          waypointFor: waypoint.waypointFor,
          trafficType: waypoint.trafficType,
          addresses: waypoint.addresses ?? [],
          service: service !== undefined,
        }),
        struct,
      ),
    );
  }
  const where = `service ${(service ?? waypoint)!.namespace}/${(service ?? waypoint)!.hostname}`;
  return {
    name: service?.name ?? waypoint!.name,
    namespace: service?.namespace ?? waypoint!.namespace,
    hostname: service?.hostname ?? waypoint!.hostname,
    addresses: (service?.addresses ?? []).map((a) => ({
      network: '',
      address: ipBytes(a, `${where} address`),
    })),
    ports: (service?.ports ?? []).map((p) => ({
      service_port: p.servicePort,
      target_port: p.targetPort,
      app_protocol: p.appProtocol,
    })),
    subject_alt_names: service?.subjectAltNames ?? [],
    waypoint: gateway(service?.waypoint),
    extensions,
  };
}

function stringMatch(m: StringMatch): ProtoStringMatch {
  return 'presence' in m ? { presence: {} } : m;
}

function cidr(c: CidrMatch, where: string): { address: Buffer; length: number } {
  return { address: ipBytes(c.address, where), length: c.length };
}

export function authorizationToProto(a: Authorization): ProtoAuthorization {
  const { struct } = wdsCodecs();
  const where = `authorization ${a.namespace}/${a.name}`;
  return {
    name: a.name,
    namespace: a.namespace,
    scope: a.scope,
    action: a.action,
    dry_run: a.dryRun,
    rules: a.rules.map((r) => ({
      clauses: r.clauses.map((c) => ({
        matches: c.matches.map(
          (m): ProtoMatch => ({
            namespaces: m.namespaces.map(stringMatch),
            not_namespaces: m.notNamespaces.map(stringMatch),
            service_accounts: m.serviceAccounts,
            not_service_accounts: m.notServiceAccounts,
            principals: m.principals.map(stringMatch),
            not_principals: m.notPrincipals.map(stringMatch),
            source_ips: m.sourceIps.map((x) => cidr(x, where)),
            not_source_ips: m.notSourceIps.map((x) => cidr(x, where)),
            destination_ips: m.destinationIps.map((x) => cidr(x, where)),
            not_destination_ips: m.notDestinationIps.map((x) => cidr(x, where)),
            destination_ports: m.destinationPorts,
            not_destination_ports: m.notDestinationPorts,
          }),
        ),
      })),
    })),
    extensions: a.selector ? [extension(SELECTOR_EXTENSION, structOf(a.selector), struct)] : [],
  };
}

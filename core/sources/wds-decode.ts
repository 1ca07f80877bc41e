// WDS resources → the compact model: the inverse of discovery/encode.ts, for a node fed by the
// discovery tier (core/sources/wds.ts). A resource that does not decode into a usable object is a
// DecodeError naming the resource and field; the client NACKs it and keeps the last good version.
import ipaddr from 'ipaddr.js';
import type {
  AppProtocol,
  Authorization,
  CidrMatch,
  GatewayAddress,
  Match,
  Service,
  StringMatch,
  Waypoint,
  Workload,
} from '../state/model.js';
import { HBONE_PORT } from '../hbone/settings.js';
import { DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.js';
import {
  type ProtoAuthorization,
  type ProtoExtension,
  type ProtoGatewayAddress,
  type ProtoService,
  type ProtoStringMatch,
  type ProtoStruct,
  type ProtoWorkload,
  LABELS_EXTENSION,
  SELECTOR_EXTENSION,
  STRUCT_TYPE_URL,
  WAYPOINT_EXTENSION,
  stringsOf,
  wdsCodecs,
} from './wds-proto.js';

export class DecodeError extends Error {
  readonly code = 'WDS_DECODE';
  constructor(message: string) {
    super(message);
    this.name = 'DecodeError';
  }
}

export function ipText(bytes: Uint8Array, where: string): string {
  if (bytes.length !== 4 && bytes.length !== 16)
    throw new DecodeError(`${where}: ${bytes.length} bytes is neither IPv4 (4) nor IPv6 (16)`);
  return ipaddr.fromByteArray([...bytes]).toString();
}

function extensionStruct(exts: ProtoExtension[] | undefined, name: string): ProtoStruct | undefined {
  const ext = exts?.find((e) => e.name === name);
  if (!ext?.config) return undefined;
  if (ext.config.type_url !== STRUCT_TYPE_URL)
    throw new DecodeError(`extension ${name}: config is ${ext.config.type_url}, expected ${STRUCT_TYPE_URL}`);
  return wdsCodecs().struct.decode(ext.config.value);
}

function gateway(g: ProtoGatewayAddress | null | undefined, where: string): GatewayAddress | undefined {
  if (!g) return undefined;
  if (!g.hostname) throw new DecodeError(`${where}: only the hostname form of GatewayAddress is supported`);
  return {
    namespace: g.hostname.namespace,
    hostname: g.hostname.hostname,
    hboneMtlsPort: g.hbone_mtls_port || HBONE_PORT,
  };
}

function oneOf<T extends string>(value: string, allowed: readonly T[], where: string): T {
  if (!(allowed as readonly string[]).includes(value))
    throw new DecodeError(`${where}: ${value} is not supported (one of ${allowed.join(', ')})`);
  return value as T;
}

const APP_PROTOCOLS: readonly AppProtocol[] = ['UNKNOWN', 'HTTP11', 'HTTP2', 'GRPC', 'TCP', 'TLS'];

export function workloadFromProto(p: ProtoWorkload): Workload {
  const where = `workload ${p.uid || '(no uid)'}`;
  if (!p.uid) throw new DecodeError(`${where}: uid is empty`);
  const services: Workload['services'] = {};
  for (const [key, list] of Object.entries(p.services ?? {})) {
    services[key] = (list.ports ?? []).map((x) => ({
      servicePort: x.service_port,
      targetPort: x.target_port,
    }));
  }
  const waypoint = gateway(p.waypoint, `${where} waypoint`);
  return {
    uid: p.uid,
    name: p.name,
    namespace: p.namespace,
    addresses: p.addresses.map((a) => ipText(a, `${where} addresses`)),
    node: p.node,
    // istio/ztunnel proto/workload.proto: elided when the mesh default / "default".
    serviceAccount: p.service_account || 'default',
    trustDomain: p.trust_domain || DEFAULT_TRUST_DOMAIN,
    tunnelProtocol: oneOf(p.tunnel_protocol, ['NONE', 'HBONE'] as const, `${where} tunnel_protocol`),
    ...(waypoint ? { waypoint } : {}),
    services,
    authorizationPolicies: p.authorization_policies,
    labels: stringsOf(extensionStruct(p.extensions, LABELS_EXTENSION)),
    canonicalName: p.canonical_name,
    canonicalRevision: p.canonical_revision,
    workloadName: p.workload_name,
    workloadType: oneOf(
      p.workload_type,
      ['DEPLOYMENT', 'POD', 'JOB', 'CRONJOB'] as const,
      `${where} workload_type`,
    ),
    status: oneOf(p.status, ['HEALTHY', 'UNHEALTHY'] as const, `${where} status`),
    networkMode: oneOf(p.network_mode, ['STANDARD', 'HOST_NETWORK'] as const, `${where} network_mode`),
    nativeTunnel: p.native_tunnel,
  };
}

/** A Service resource: the Service (absent for a waypoint without one) and the waypoint it names, if any. */
export function serviceFromProto(p: ProtoService): { service?: Service; waypoint?: Waypoint } {
  const where = `service ${p.namespace}/${p.hostname}`;
  if (!p.hostname || !p.namespace) throw new DecodeError(`${where}: namespace and hostname are required`);
  const wp = extensionStruct(p.extensions, WAYPOINT_EXTENSION);
  let waypoint: Waypoint | undefined;
  let isService = true;
  if (wp) {
    const f = wp.fields ?? {};
    const waypointFor = oneOf(
      f.waypointFor?.stringValue ?? 'service',
      ['service', 'workload', 'all', 'none'] as const,
      `${where} ${WAYPOINT_EXTENSION}.waypointFor`,
    );
    const addresses = (f.addresses?.listValue?.values ?? []).flatMap((v) =>
      v.stringValue ? [v.stringValue] : [],
    );
    waypoint = {
      name: f.name?.stringValue ?? p.name,
      namespace: p.namespace,
      waypointFor,
      trafficType: f.trafficType?.stringValue ?? '',
      hostname: p.hostname,
      ...(addresses.length > 0 ? { addresses } : {}),
    };
    isService = f.service?.boolValue !== false;
  }
  if (!isService) return { ...(waypoint ? { waypoint } : {}) };
  const svcWaypoint = gateway(p.waypoint, `${where} waypoint`);
  const service: Service = {
    name: p.name,
    namespace: p.namespace,
    hostname: p.hostname,
    addresses: p.addresses.map((a) => ipText(a.address, `${where} addresses`)),
    ports: p.ports.map((x) => ({
      servicePort: x.service_port,
      targetPort: x.target_port,
      appProtocol: oneOf(x.app_protocol ?? 'UNKNOWN', APP_PROTOCOLS, `${where} ports.app_protocol`),
    })),
    subjectAltNames: p.subject_alt_names,
    ...(svcWaypoint ? { waypoint: svcWaypoint } : {}),
    labels: stringsOf(extensionStruct(p.extensions, LABELS_EXTENSION)),
  };
  return { service, ...(waypoint ? { waypoint } : {}) };
}

function stringMatch(m: ProtoStringMatch, where: string): StringMatch {
  if ('exact' in m && typeof m.exact === 'string') return { exact: m.exact };
  if ('prefix' in m && typeof m.prefix === 'string') return { prefix: m.prefix };
  if ('suffix' in m && typeof m.suffix === 'string') return { suffix: m.suffix };
  if ('presence' in m && m.presence) return { presence: true };
  throw new DecodeError(`${where}: a StringMatch with no match_type`);
}

function cidr(c: { address: Uint8Array; length: number }, where: string): CidrMatch {
  const address = ipText(c.address, where);
  const max = c.address.length === 4 ? 32 : 128;
  if (c.length > max) throw new DecodeError(`${where}: prefix length ${c.length} > ${max}`);
  return { address, length: c.length };
}

export function authorizationFromProto(p: ProtoAuthorization): Authorization {
  const where = `authorization ${p.namespace}/${p.name}`;
  if (!p.name) throw new DecodeError(`${where}: name is empty`);
  const selector = extensionStruct(p.extensions, SELECTOR_EXTENSION);
  const sm = (list: ProtoStringMatch[], field: string) =>
    list.map((m) => stringMatch(m, `${where} ${field}`));
  const cm = (list: { address: Uint8Array; length: number }[], field: string) =>
    list.map((c) => cidr(c, `${where} ${field}`));
  return {
    name: p.name,
    namespace: p.namespace,
    scope: oneOf(p.scope, ['GLOBAL', 'NAMESPACE', 'WORKLOAD_SELECTOR'] as const, `${where} scope`),
    action: oneOf(p.action, ['ALLOW', 'DENY'] as const, `${where} action`),
    dryRun: p.dry_run,
    rules: p.rules.map((r) => ({
      clauses: r.clauses.map((c) => ({
        matches: c.matches.map(
          (m): Match => ({
            namespaces: sm(m.namespaces, 'namespaces'),
            notNamespaces: sm(m.not_namespaces, 'not_namespaces'),
            principals: sm(m.principals, 'principals'),
            notPrincipals: sm(m.not_principals, 'not_principals'),
            sourceIps: cm(m.source_ips, 'source_ips'),
            notSourceIps: cm(m.not_source_ips, 'not_source_ips'),
            destinationIps: cm(m.destination_ips, 'destination_ips'),
            notDestinationIps: cm(m.not_destination_ips, 'not_destination_ips'),
            destinationPorts: m.destination_ports,
            notDestinationPorts: m.not_destination_ports,
            serviceAccounts: m.service_accounts.map((s) => ({
              namespace: s.namespace,
              serviceAccount: s.serviceAccount,
            })),
            notServiceAccounts: m.not_service_accounts.map((s) => ({
              namespace: s.namespace,
              serviceAccount: s.serviceAccount,
            })),
          }),
        ),
      })),
    })),
    ...(selector ? { selector: stringsOf(selector) } : {}),
    notes: [],
  };
}

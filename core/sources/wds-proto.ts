// The wire side of Istio's Workload Discovery Service (WDS): the .proto files in proto/ loaded once,
// the type URLs istiod uses, and the codecs for the resources carried in google.protobuf.Any.
// grpc-js + proto-loader carry the DeltaAggregatedResources stream; the resources inside each
// envoy.service.discovery.v3.Resource are encoded and decoded here with protobufjs (what
// proto-loader is built on), because proto-loader leaves an Any as {type_url, value bytes}.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/** istio/ztunnel src/xds.rs ADDRESS_TYPE / AUTHORIZATION_TYPE. */
export const ADDRESS_TYPE_URL = 'type.googleapis.com/istio.workload.Address';
export const AUTHORIZATION_TYPE_URL = 'type.googleapis.com/istio.security.Authorization';
export const STRUCT_TYPE_URL = 'type.googleapis.com/google.protobuf.Struct';
/** Ambit's extensions (istio.workload.Extension names), each a google.protobuf.Struct; see discovery/encode.ts. */
export const LABELS_EXTENSION = 'ambit.dev/labels';
export const WAYPOINT_EXTENSION = 'ambit.dev/waypoint';
export const SELECTOR_EXTENSION = 'ambit.dev/selector';
export const ADS_SERVICE_NAME = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const DELTA_ADS_PATH = `/${ADS_SERVICE_NAME}/DeltaAggregatedResources`;

/** The files a peer needs, relative to protoRoot(). */
export const WDS_PROTO_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'workload.proto',
  'authorization.proto',
] as const;

/** proto/ at the repository root, found by walking up (works from sources and from dist/). */
export function protoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'workload.proto'))) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`proto/workload.proto not found above ${fileURLToPath(import.meta.url)}`);
}

// --- Wire shapes (proto-loader / protobufjs toObject with keepCase, enums as strings) -----------------

export interface ProtoAny {
  type_url: string;
  value: Uint8Array;
}
export interface ProtoStatus {
  code: number;
  message: string;
}
export interface ProtoStructValue {
  nullValue?: string;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values?: ProtoStructValue[] };
}
export interface ProtoStruct {
  fields?: Record<string, ProtoStructValue>;
}
export interface ProtoNode {
  id?: string;
  cluster?: string;
  metadata?: ProtoStruct | null;
}
export interface DeltaDiscoveryRequest {
  node?: ProtoNode | null;
  type_url: string;
  resource_names_subscribe: string[];
  resource_names_unsubscribe: string[];
  initial_resource_versions: Record<string, string>;
  response_nonce: string;
  error_detail?: ProtoStatus | null;
}
export interface ProtoResource {
  name: string;
  version: string;
  resource: ProtoAny | null;
  aliases?: string[];
}
export interface DeltaDiscoveryResponse {
  system_version_info: string;
  type_url: string;
  nonce: string;
  resources: ProtoResource[];
  removed_resources: string[];
}

export interface ProtoExtension {
  name: string;
  config?: ProtoAny | null;
}
export interface ProtoNetworkAddress {
  network?: string;
  address: Uint8Array;
  length?: number;
}
export interface ProtoGatewayAddress {
  hostname?: { namespace: string; hostname: string } | null;
  address?: ProtoNetworkAddress | null;
  hbone_mtls_port?: number;
}
export interface ProtoPort {
  service_port: number;
  target_port: number;
  app_protocol?: string;
}
export interface ProtoWorkload {
  uid: string;
  name: string;
  namespace: string;
  addresses: Uint8Array[];
  hostname?: string;
  network?: string;
  tunnel_protocol: string;
  trust_domain: string;
  service_account: string;
  waypoint?: ProtoGatewayAddress | null;
  node: string;
  canonical_name: string;
  canonical_revision: string;
  workload_type: string;
  workload_name: string;
  native_tunnel: boolean;
  services: Record<string, { ports?: ProtoPort[] }>;
  authorization_policies: string[];
  status: string;
  cluster_id?: string;
  network_mode: string;
  extensions: ProtoExtension[];
}
export interface ProtoService {
  name: string;
  namespace: string;
  hostname: string;
  addresses: ProtoNetworkAddress[];
  ports: ProtoPort[];
  subject_alt_names: string[];
  waypoint?: ProtoGatewayAddress | null;
  extensions: ProtoExtension[];
}
export interface ProtoAddress {
  workload?: ProtoWorkload | null;
  service?: ProtoService | null;
  type?: 'workload' | 'service';
}
export type ProtoStringMatch =
  | { exact: string }
  | { prefix: string }
  | { suffix: string }
  | { presence: Record<string, never> };
export interface ProtoCidr {
  address: Uint8Array;
  length: number;
}
export interface ProtoMatch {
  namespaces: ProtoStringMatch[];
  not_namespaces: ProtoStringMatch[];
  service_accounts: { namespace: string; serviceAccount: string }[];
  not_service_accounts: { namespace: string; serviceAccount: string }[];
  principals: ProtoStringMatch[];
  not_principals: ProtoStringMatch[];
  source_ips: ProtoCidr[];
  not_source_ips: ProtoCidr[];
  destination_ips: ProtoCidr[];
  not_destination_ips: ProtoCidr[];
  destination_ports: number[];
  not_destination_ports: number[];
}
export interface ProtoAuthorization {
  name: string;
  namespace: string;
  scope: string;
  action: string;
  rules: { clauses: { matches: ProtoMatch[] }[] }[];
  dry_run: boolean;
  extensions: ProtoExtension[];
}

// --- Loading ----------------------------------------------------------------------------------------

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

let serviceCache: grpc.ServiceDefinition | undefined;

/** The AggregatedDiscoveryService definition for grpc-js servers and clients. */
export function adsServiceDefinition(): grpc.ServiceDefinition {
  if (serviceCache) return serviceCache;
  const def = protoLoader.loadSync([...WDS_PROTO_FILES], { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: grpc.ServiceClientConstructor } } } };
  };
  serviceCache = pkg.envoy.service.discovery.v3.AggregatedDiscoveryService.service;
  return serviceCache;
}

/** A codec for one message type carried in an Any. */
export interface AnyCodec<T> {
  readonly typeUrl: string;
  encode(value: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

let rootCache: protobuf.Root | undefined;

function root(): protobuf.Root {
  if (rootCache) return rootCache;
  const dir = protoRoot();
  const r = new protobuf.Root();
  // Imports are relative to proto/ (as protoc -I proto); google/protobuf/* are protobufjs' bundled
  // well-known types.
  r.resolvePath = (_origin, target) =>
    target.startsWith('google/protobuf/') || target.startsWith('/') ? target : join(dir, target);
  r.loadSync([...WDS_PROTO_FILES], { keepCase: true });
  r.resolveAll();
  rootCache = r;
  return r;
}

const TO_OBJECT: protobuf.IConversionOptions = {
  enums: String,
  longs: Number,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
};

function codecOf<T>(fullName: string): AnyCodec<T> {
  const type = root().lookupType(fullName);
  return {
    typeUrl: `type.googleapis.com/${fullName}`,
    encode: (value) => type.encode(type.fromObject(value as Record<string, unknown>)).finish(),
    decode: (bytes) => type.toObject(type.decode(bytes), TO_OBJECT) as T,
  };
}

let codecs:
  | {
      address: AnyCodec<ProtoAddress>;
      authorization: AnyCodec<ProtoAuthorization>;
      struct: AnyCodec<ProtoStruct>;
    }
  | undefined;

/** Codecs for istio.workload.Address, istio.security.Authorization and google.protobuf.Struct. */
export function wdsCodecs(): NonNullable<typeof codecs> {
  codecs ??= {
    address: codecOf<ProtoAddress>('istio.workload.Address'),
    authorization: codecOf<ProtoAuthorization>('istio.security.Authorization'),
    struct: codecOf<ProtoStruct>('google.protobuf.Struct'),
  };
  return codecs;
}

// --- Small conversions both sides share ---------------------------------------------------------------

/** A string map as a google.protobuf.Struct (Ambit's extensions carry labels and waypoint facts). */
export function structOf(map: Record<string, string | boolean | string[]>): ProtoStruct {
  const fields: Record<string, ProtoStructValue> = {};
  for (const [k, v] of Object.entries(map)) {
    if (typeof v === 'boolean') fields[k] = { boolValue: v };
    else if (Array.isArray(v)) fields[k] = { listValue: { values: v.map((s) => ({ stringValue: s })) } };
    else fields[k] = { stringValue: v };
  }
  return { fields };
}

/** The string fields of a Struct (others ignored). */
export function stringsOf(s: ProtoStruct | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {}))
    if (typeof v.stringValue === 'string') out[k] = v.stringValue;
  return out;
}

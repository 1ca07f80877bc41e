// The in-memory model every component consumes, shaped like Istio's workload discovery (WDS) types
// (istio/ztunnel proto/workload.proto, proto/authorization.proto) so an xDS source could feed it unchanged.
// Data path code asks questions of `MeshState` (state.ts); it never parses YAML or talks to Kubernetes.

export type TunnelProtocol = 'NONE' | 'HBONE';
export type WorkloadStatus = 'HEALTHY' | 'UNHEALTHY';
export type AppProtocol = 'UNKNOWN' | 'HTTP11' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS';

/** Where a waypoint is: istio.workload.GatewayAddress (hostname form), plus what we resolved it to. */
export interface GatewayAddress {
  /** Namespace and hostname of the waypoint's Service (`<gw>.<ns>.svc.cluster.local`). */
  namespace: string;
  hostname: string;
  /** Always 15008 (`hbone_mtls_port`). */
  hboneMtlsPort: number;
}

/** Per-endpoint service-port → target-port map (istio.workload.PortList). */
export interface PortMapping {
  servicePort: number;
  targetPort: number;
}

export interface Workload {
  /** `<cluster>//v1/Pod/<ns>/<name>` like istiod, e.g. `Kubernetes//v1/Pod/default/a-1`. */
  uid: string;
  name: string;
  namespace: string;
  /** Dotted IPv4 / IPv6 text. */
  addresses: string[];
  node: string;
  serviceAccount: string;
  trustDomain: string;
  tunnelProtocol: TunnelProtocol;
  /** Workload-scoped waypoint (use-waypoint on pod/namespace, waypoint-for workload|all). */
  waypoint?: GatewayAddress;
  /** Service key `ns/hostname` → ports this endpoint serves. */
  services: Record<string, PortMapping[]>;
  /** Keys `ns/name` of selector-scoped policies that select this workload (WORKLOAD_SELECTOR). */
  authorizationPolicies: string[];
  labels: Record<string, string>;
  canonicalName: string;
  canonicalRevision: string;
  workloadName: string;
  workloadType: 'DEPLOYMENT' | 'POD' | 'JOB' | 'CRONJOB';
  status: WorkloadStatus;
  networkMode: 'STANDARD' | 'HOST_NETWORK';
  /** This workload is itself a waypoint (speaks HBONE natively: do not double-tunnel). */
  nativeTunnel: boolean;
}

export interface ServicePort {
  name?: string;
  servicePort: number;
  /** 0 means a named target port resolved per endpoint (see Workload.services). */
  targetPort: number;
  appProtocol: AppProtocol;
}

export interface Service {
  name: string;
  namespace: string;
  /** `<name>.<ns>.svc.cluster.local` */
  hostname: string;
  /** VIPs (ClusterIPs). Empty = headless. */
  addresses: string[];
  ports: ServicePort[];
  subjectAltNames: string[];
  waypoint?: GatewayAddress;
  labels: Record<string, string>;
}

// --- Compiled L4 authorization (istio.security.Authorization) ---------------------------------------

export type Scope = 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR';
export type Action = 'ALLOW' | 'DENY';

export type StringMatch = { exact: string } | { prefix: string } | { suffix: string } | { presence: true };

export interface CidrMatch {
  address: string;
  length: number;
}

export interface ServiceAccountMatch {
  namespace: string;
  serviceAccount: string;
}

/** istio.security.Match: six families, each positive (any) AND negative (none). */
export interface Match {
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  sourceIps: CidrMatch[];
  notSourceIps: CidrMatch[];
  destinationIps: CidrMatch[];
  notDestinationIps: CidrMatch[];
  destinationPorts: number[];
  notDestinationPorts: number[];
  serviceAccounts: ServiceAccountMatch[];
  notServiceAccounts: ServiceAccountMatch[];
}

/** Clause: matches OR'ed. */
export interface Clause {
  matches: Match[];
}

/** Rule: clauses AND'ed. */
export interface Rule {
  clauses: Clause[];
  /** Index of the AuthorizationPolicy `spec.rules` entry this came from (dropped rules shift positions). */
  sourceRule?: number;
}

export interface Authorization {
  name: string;
  namespace: string;
  scope: Scope;
  action: Action;
  /** Rules OR'ed. Zero rules never matches. */
  rules: Rule[];
  dryRun: boolean;
  /** For WORKLOAD_SELECTOR: the selector (the translation resolves it into Workload.authorizationPolicies). */
  selector?: Record<string, string>;
  /** What compilation dropped or narrowed to fit L4, for explain / status. */
  notes: CompileNote[];
}

export interface CompileNote {
  rule: number;
  kind: 'allow-rule-dropped' | 'deny-rule-narrowed' | 'deny-rule-noop' | 'unparsable-value' | 'warning';
  message: string;
  /** The L7 fields found, e.g. ["to[0].operation.methods"]. */
  fields: string[];
}

// --- L7 (waypoint) policy and routes ------------------------------------------------------------------

export interface TargetRef {
  group: string;
  kind: string;
  name: string;
}

/** An AuthorizationPolicy attached with targetRefs, kept in its source shape for the L7 engine. */
export interface L7AuthorizationPolicy {
  name: string;
  namespace: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
  targetRefs: TargetRef[];
  /** The `spec.rules` as given (security.istio.io/v1 shape). */
  rules: unknown[];
  dryRun: boolean;
}

export interface Waypoint {
  /** Gateway name = service account = waypoint identity's SA. */
  name: string;
  namespace: string;
  /** istio.io/waypoint-for: service (default) | workload | all | none */
  waypointFor: 'service' | 'workload' | 'all' | 'none';
  trafficType: string;
  /** The Gateway's own address when known (`<name>.<ns>.svc.cluster.local`). */
  hostname: string;
  /** IP addresses from the Gateway's spec.addresses / status.addresses (type IPAddress), if any. */
  addresses?: string[];
}

export interface HttpRoute {
  kind: 'HTTPRoute' | 'GRPCRoute';
  name: string;
  namespace: string;
  /** parentRefs as given (Service or Gateway). */
  parentRefs: { group?: string; kind?: string; name: string; namespace?: string; port?: number }[];
  /** spec.rules as given (Gateway API shape); the waypoint compiles them. */
  rules: unknown[];
}

/** A namespace as the mesh sees it: its labels drive enrollment and waypoint binding. */
export interface Namespace {
  name: string;
  labels: Record<string, string>;
}

/** PeerAuthentication mode after inheritance; the compiled form lives in Authorization. */
export type MtlsMode = 'UNSET' | 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/**
 * One Istio Telemetry resource's tracing settings (telemetry.istio.io/v1 `tracing[0]`), with its scope:
 * root namespace and no selector = mesh-wide; otherwise its namespace, narrowed by `targetRefs` or `selector`.
 */
export interface TelemetryTracing {
  name: string;
  namespace: string;
  /** `selector.matchLabels`, when set. */
  selector?: Record<string, string>;
  /** `targetRefs` (kind/name), when set: e.g. a waypoint's Gateway. */
  targetRefs?: { kind: string; name: string }[];
  randomSamplingPercentage?: number;
  disableSpanReporting?: boolean;
  /** Provider names (meshConfig.extensionProviders), when set. */
  providers?: string[];
}

// security.istio.io/v1 AuthorizationPolicy and PeerAuthentication as users write them
// (istio/api security/v1beta1/authorization_policy.proto, peer_authentication.proto; v1 = v1beta1 shape).
// The manifest and Kubernetes sources validate objects into these shapes; core/policy compiles them.

export interface ObjectMeta {
  name: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** RFC 3339; "oldest wins" for PeerAuthentication conflicts. */
  creationTimestamp?: string;
  uid?: string;
  resourceVersion?: string;
}

export interface PolicyTargetReference {
  group?: string;
  kind: string;
  name: string;
  namespace?: string;
}

export interface Source {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
  trustDomains?: string[];
  notTrustDomains?: string[];
}

export interface Operation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}

export interface Condition {
  key: string;
  values?: string[];
  notValues?: string[];
}

export interface AuthorizationRule {
  from?: { source?: Source }[];
  to?: { operation?: Operation }[];
  when?: Condition[];
}

export interface AuthorizationPolicySpec {
  selector?: { matchLabels?: Record<string, string> };
  targetRef?: PolicyTargetReference;
  targetRefs?: PolicyTargetReference[];
  action?: 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
  provider?: { name: string };
  rules?: AuthorizationRule[];
}

export interface AuthorizationPolicy {
  apiVersion: string;
  kind: 'AuthorizationPolicy';
  metadata: ObjectMeta;
  spec: AuthorizationPolicySpec;
}

export type PeerAuthenticationMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

export interface PeerAuthenticationSpec {
  selector?: { matchLabels?: Record<string, string> };
  mtls?: { mode?: PeerAuthenticationMode };
  /** Keys are port numbers as strings (target ports). */
  portLevelMtls?: Record<string, { mode?: PeerAuthenticationMode }>;
}

export interface PeerAuthentication {
  apiVersion: string;
  kind: 'PeerAuthentication';
  metadata: ObjectMeta;
  spec: PeerAuthenticationSpec;
}

export const ROOT_NAMESPACE_DEFAULT = 'istio-system';

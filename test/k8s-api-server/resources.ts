// TEST DOUBLE — the table of resources the in-repo Kubernetes API server serves. Names, groups and
// scopes are exactly the real API server's (`kubectl api-resources`), so URLs built by
// @kubernetes/client-node resolve the same way they would against a cluster.

export interface ResourceType {
  group: string; // '' = core
  version: string;
  /** Plural, as in the URL. */
  resource: string;
  kind: string;
  namespaced: boolean;
  /** Has a /status subresource: the main endpoint ignores status, /status changes only status. */
  status: boolean;
  /** Only `create` is served (TokenReview): nothing is stored. */
  createOnly?: boolean;
}

const r = (
  group: string,
  version: string,
  resource: string,
  kind: string,
  namespaced: boolean,
  status = false,
  createOnly = false,
): ResourceType => ({ group, version, resource, kind, namespaced, status, createOnly });

export const RESOURCES: readonly ResourceType[] = [
  r('', 'v1', 'namespaces', 'Namespace', false, true),
  r('', 'v1', 'pods', 'Pod', true, true),
  r('', 'v1', 'services', 'Service', true, true),
  r('', 'v1', 'configmaps', 'ConfigMap', true),
  r('', 'v1', 'secrets', 'Secret', true),
  r('', 'v1', 'serviceaccounts', 'ServiceAccount', true),
  r('', 'v1', 'nodes', 'Node', false, true),
  r('', 'v1', 'events', 'Event', true),
  r('discovery.k8s.io', 'v1', 'endpointslices', 'EndpointSlice', true),
  r('security.istio.io', 'v1', 'authorizationpolicies', 'AuthorizationPolicy', true, true),
  r('security.istio.io', 'v1', 'peerauthentications', 'PeerAuthentication', true, true),
  r('telemetry.istio.io', 'v1', 'telemetries', 'Telemetry', true, true),
  r('gateway.networking.k8s.io', 'v1', 'gateways', 'Gateway', true, true),
  r('gateway.networking.k8s.io', 'v1', 'gatewayclasses', 'GatewayClass', false, true),
  r('gateway.networking.k8s.io', 'v1', 'httproutes', 'HTTPRoute', true, true),
  r('gateway.networking.k8s.io', 'v1', 'grpcroutes', 'GRPCRoute', true, true),
  r('apps', 'v1', 'deployments', 'Deployment', true, true),
  r('apps', 'v1', 'daemonsets', 'DaemonSet', true, true),
  r('apps', 'v1', 'replicasets', 'ReplicaSet', true, true),
  r('coordination.k8s.io', 'v1', 'leases', 'Lease', true),
  r('rbac.authorization.k8s.io', 'v1', 'clusterroles', 'ClusterRole', false),
  r('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', false),
  r('authentication.k8s.io', 'v1', 'tokenreviews', 'TokenReview', false, false, true),
];

export const apiVersionOf = (t: ResourceType): string => (t.group ? `${t.group}/${t.version}` : t.version);

/** Key for a resource type independent of version: `group/resource`. */
export const typeKey = (t: { group: string; resource: string }): string => `${t.group}/${t.resource}`;

export function findResource(group: string, version: string, resource: string): ResourceType | undefined {
  return RESOURCES.find((t) => t.group === group && t.version === version && t.resource === resource);
}

export function findKind(apiVersion: string, kind: string): ResourceType | undefined {
  return RESOURCES.find((t) => apiVersionOf(t) === apiVersion && t.kind === kind);
}

/** The APIResourceList a client's discovery call gets for one group/version. */
export function resourceList(group: string, version: string): Record<string, unknown> | undefined {
  const types = RESOURCES.filter((t) => t.group === group && t.version === version);
  if (types.length === 0) return undefined;
  const resources: Record<string, unknown>[] = [];
  for (const t of types) {
    const verbs = t.createOnly
      ? ['create']
      : ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
    resources.push({
      name: t.resource,
      singularName: t.kind.toLowerCase(),
      namespaced: t.namespaced,
      kind: t.kind,
      verbs,
    });
    if (t.status)
      resources.push({
        name: `${t.resource}/status`,
        singularName: '',
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: ['get', 'patch', 'update'],
      });
  }
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: group ? `${group}/${version}` : version,
    resources,
  };
}

/** The APIGroupList served at /apis. */
export function groupList(): Record<string, unknown> {
  const groups = new Map<string, Set<string>>();
  for (const t of RESOURCES) {
    if (!t.group) continue;
    let s = groups.get(t.group);
    if (!s) {
      s = new Set();
      groups.set(t.group, s);
    }
    s.add(t.version);
  }
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: [...groups].map(([name, versions]) => {
      const vs = [...versions].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
      return { name, versions: vs, preferredVersion: vs[0] };
    }),
  };
}

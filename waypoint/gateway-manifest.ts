// The Gateway that declares a waypoint, exactly as `istioctl waypoint generate|apply` writes it
// (istio/istio istioctl/pkg/waypoint/waypoint.go): gatewayClassName istio-waypoint, one listener
// {name: mesh, port: 15008, protocol: HBONE}, and the label istio.io/waypoint-for (istioctl writes it even
// for the default `service`).
import { stringify } from 'yaml';

export type WaypointFor = 'service' | 'workload' | 'all' | 'none';
const FOR: readonly WaypointFor[] = ['service', 'workload', 'all', 'none'];
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export class GatewayManifestError extends Error {
  readonly code = 'WAYPOINT_MANIFEST_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'GatewayManifestError';
  }
}

export interface GatewayManifestInput {
  name: string;
  namespace: string;
  waypointFor: string;
  /** istioctl --revision: label istio.io/rev. */
  revision?: string;
}

export function gatewayManifest(input: GatewayManifestInput): Record<string, unknown> {
  if (!DNS_LABEL.test(input.name)) {
    throw new GatewayManifestError(
      `--name ${JSON.stringify(input.name)}: not a valid Kubernetes name (DNS label)`,
    );
  }
  if (!DNS_LABEL.test(input.namespace)) {
    throw new GatewayManifestError(
      `--namespace ${JSON.stringify(input.namespace)}: not a valid namespace name`,
    );
  }
  if (!FOR.includes(input.waypointFor as WaypointFor)) {
    throw new GatewayManifestError(
      `--for ${JSON.stringify(input.waypointFor)}: must be one of ${FOR.join(', ')}`,
    );
  }
  const labels: Record<string, string> = { 'istio.io/waypoint-for': input.waypointFor };
  if (input.revision) labels['istio.io/rev'] = input.revision;
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { labels, name: input.name, namespace: input.namespace },
    spec: {
      gatewayClassName: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
    },
  };
}

export function gatewayManifestYaml(input: GatewayManifestInput): string {
  return stringify(gatewayManifest(input));
}

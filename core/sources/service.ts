// Kubernetes Service → WDS Service, the pure part of the translation (istio/istio
// pilot/pkg/serviceregistry/kube/controller/ambient/services.go: constructService).
import type { AppProtocol, GatewayAddress, Service, ServicePort } from '../state/model.js';
import type { ServiceObject } from './schema.js';

import { HBONE_PORT } from '../hbone/settings.js';

export { HBONE_PORT };

export function serviceHostname(name: string, namespace: string, domainSuffix: string): string {
  return `${name}.${namespace}.svc.${domainSuffix}`;
}

export function gatewayAddress(
  waypointName: string,
  waypointNamespace: string,
  domainSuffix: string,
): GatewayAddress {
  return {
    namespace: waypointNamespace,
    hostname: serviceHostname(waypointName, waypointNamespace, domainSuffix),
    hboneMtlsPort: HBONE_PORT,
  };
}

/**
 * Istio's protocol selection (pkg/config/protocol + kube ConvertProtocol): `appProtocol` wins, else the
 * port name's prefix before the first `-` (`http`, `http-web`, `grpc-api`, ...). Mapped to the WDS enum.
 */
export function appProtocolOf(port: { name?: string; appProtocol?: string }): AppProtocol {
  const fromName = (p: string): AppProtocol | undefined => {
    switch (p.toLowerCase()) {
      case 'http':
      case 'kubernetes.io/ws':
      case 'kubernetes.io/wss':
        return 'HTTP11';
      case 'http2':
      case 'kubernetes.io/h2c':
        return 'HTTP2';
      case 'grpc':
      case 'grpc-web':
        return 'GRPC';
      case 'tcp':
      case 'mongo':
      case 'mysql':
      case 'redis':
        return 'TCP';
      case 'tls':
      case 'https':
        return 'TLS';
      default:
        return undefined;
    }
  };
  if (port.appProtocol) {
    const p = fromName(port.appProtocol);
    if (p) return p;
  }
  if (port.name) {
    const prefix = port.name.split('-')[0] ?? '';
    const p = fromName(prefix);
    if (p) return p;
  }
  return 'UNKNOWN';
}

/** VIPs: spec.clusterIPs (dual stack) else spec.clusterIP; `None` (headless) gives none. */
export function serviceVips(svc: ServiceObject): string[] {
  const ips = svc.spec.clusterIPs?.length
    ? svc.spec.clusterIPs
    : svc.spec.clusterIP
      ? [svc.spec.clusterIP]
      : [];
  return ips.filter((ip) => ip !== 'None' && ip !== '');
}

export function servicePorts(svc: ServiceObject): ServicePort[] {
  return (svc.spec.ports ?? []).map((p) => {
    // Named target ports are resolved per endpoint (target_port 0 in WDS); absent means "same as port".
    const target = p.targetPort === undefined ? p.port : typeof p.targetPort === 'number' ? p.targetPort : 0;
    const out: ServicePort = { servicePort: p.port, targetPort: target, appProtocol: appProtocolOf(p) };
    if (p.name) out.name = p.name;
    return out;
  });
}

export function buildService(svc: ServiceObject, domainSuffix: string, waypoint?: GatewayAddress): Service {
  const out: Service = {
    name: svc.metadata.name,
    namespace: svc.metadata.namespace,
    hostname: serviceHostname(svc.metadata.name, svc.metadata.namespace, domainSuffix),
    addresses: serviceVips(svc),
    ports: servicePorts(svc),
    subjectAltNames: [],
    labels: { ...(svc.metadata.labels ?? {}) },
  };
  if (waypoint) out.waypoint = waypoint;
  return out;
}

/**
 * The Service istiod's gateway controller creates for a waypoint (`<gateway>` with the HBONE port 15008
 * and the status port 15021, selecting the waypoint pods by gateway-name label). A manifest directory has
 * no controller, so when no real Service of that name exists the translation supplies this one.
 */
export function waypointServiceObject(name: string, namespace: string, addresses: string[]): ServiceObject {
  return {
    kind: 'Service',
    apiVersion: 'v1',
    metadata: { name, namespace, labels: { 'gateway.networking.k8s.io/gateway-name': name } },
    spec: {
      selector: { 'gateway.networking.k8s.io/gateway-name': name },
      clusterIPs: addresses,
      ports: [
        { name: 'status-port', port: 15021, targetPort: 15021, protocol: 'TCP' },
        { name: 'mesh', port: HBONE_PORT, targetPort: HBONE_PORT, protocol: 'TCP' },
      ],
    },
  } as ServiceObject;
}

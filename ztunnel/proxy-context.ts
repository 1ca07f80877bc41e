// What every listener path of ztunnel is given by the composition root (ztunnel.ts): the state it asks,
// the config, telemetry, the connection tracker and a logger. Paths hold no other global.
import type { Logger } from 'pino';
import type { Baggage } from '../core/hbone/connect-request.js';
import type { Workload } from '../core/state/model.js';
import type { MeshState } from '../core/state/state.js';
import { workloadIdentity } from '../core/state/state.js';
import type { Telemetry } from '../core/telemetry/connection-report.js';
import type { PeerLabels } from '../core/telemetry/metrics.js';
import type { ZtunnelConfig } from './config.js';
import type { ConnectionManager } from './connection-manager.js';

export interface ProxyContext {
  state: MeshState;
  config: ZtunnelConfig;
  illegalPorts: ReadonlySet<number>;
  telemetry: Telemetry;
  connections: ConnectionManager;
  log: Logger;
  /** False while draining: new connections are refused. */
  accepting(): boolean;
}

/** Telemetry labels for a workload (istio/ztunnel metrics: workload name, canonical service/revision). */
export function peerLabels(w: Workload | undefined, cluster: string, principal?: string): PeerLabels {
  if (!w) return principal ? { principal } : {};
  return {
    workload: w.workloadName || w.name,
    namespace: w.namespace,
    principal: principal ?? workloadIdentity(w),
    canonicalService: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    cluster,
  };
}

/** `ip:port`, bracketing IPv6. */
/** `ip:port` / `[v6]:port`: core/route/address.ts formatAddr. */
export { formatAddr as hostPort } from '../core/route/address.js';

/** Baggage describing a workload (istio/ztunnel src/baggage.rs): sent on CONNECT and on the 200. */
export function baggageOf(w: Workload, cluster: string): Baggage {
  const b: Baggage = { 'k8s.cluster.name': cluster, 'k8s.namespace.name': w.namespace };
  if (w.workloadName) b[`k8s.${w.workloadType.toLowerCase()}.name`] = w.workloadName;
  if (w.canonicalName) b['service.name'] = w.canonicalName;
  if (w.canonicalRevision) b['service.version'] = w.canonicalRevision;
  return b;
}

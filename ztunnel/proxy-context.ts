// What every listener path of ztunnel is given by the composition root (ztunnel.ts): the state it asks,
// the config, telemetry, the connection tracker and a logger. Paths hold no other global.
import type { Logger } from 'pino';
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
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

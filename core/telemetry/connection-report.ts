// The one object that follows a proxied connection for telemetry: it bumps the opened counter, counts
// bytes in both directions, and on close writes the closed/bytes counters, the access-log line and a
// flow event — exactly once, whichever path closes it. Paths never touch prom-client or pino directly.
import type { AccessLog, AccessLogRecord } from './access-log.js';
import type { FlowEvents } from './flow-events.js';
import {
  type ConnectionSecurityPolicy,
  type DestinationServiceLabels,
  type PeerLabels,
  type Reporter,
  type ResponseFlags,
  type TrafficMetrics,
  trafficLabels,
} from './metrics.js';

export interface ConnectionContext {
  reporter: Reporter;
  path: 'outbound' | 'inbound' | 'inbound-passthrough';
  srcAddr: string;
  dstAddr: string;
  hboneAddr?: string;
  source: PeerLabels;
  destination: PeerLabels;
  service?: DestinationServiceLabels;
  securityPolicy: ConnectionSecurityPolicy;
}

export class Telemetry {
  private nextId = 1;
  constructor(
    readonly metrics: TrafficMetrics,
    readonly accessLog: AccessLog,
    readonly flows: FlowEvents,
  ) {}

  begin(ctx: ConnectionContext): ConnectionReport {
    return new ConnectionReport(this, this.nextId++, ctx);
  }
}

export class ConnectionReport {
  private readonly started = Date.now();
  private opened = false;
  private finished = false;
  /** Client → server. */
  requestBytes = 0;
  /** Server → client. */
  responseBytes = 0;
  policy: string | undefined;

  constructor(
    private readonly t: Telemetry,
    readonly id: number,
    readonly ctx: ConnectionContext,
  ) {}

  private record(): AccessLogRecord {
    const c = this.ctx;
    return {
      connId: this.id,
      direction: c.reporter === 'source' ? 'outbound' : 'inbound',
      src: {
        addr: c.srcAddr,
        workload: c.source.workload,
        namespace: c.source.namespace,
        // ztunnel logs src.identity only when the peer was authenticated by mTLS.
        identity: c.securityPolicy === 'mutual_tls' ? c.source.principal : undefined,
        cluster: c.source.cluster,
      },
      dst: {
        addr: c.dstAddr,
        service: c.service?.hostname,
        workload: c.destination.workload,
        namespace: c.destination.namespace,
        identity: c.destination.principal,
        cluster: c.destination.cluster,
      },
      hboneAddr: c.hboneAddr,
    };
  }

  private flowBase() {
    const r = this.record();
    return {
      id: this.id,
      time: new Date().toISOString(),
      direction: r.direction,
      path: this.ctx.path,
      src: { ...r.src, identity: this.ctx.source.principal },
      dst: r.dst,
      hboneAddr: r.hboneAddr,
      securityPolicy: this.ctx.securityPolicy,
      policy: this.policy,
    };
  }

  /** The destination learned more (e.g. the endpoint picked); call before open(). */
  update(patch: Partial<ConnectionContext>): void {
    Object.assign(this.ctx, patch);
  }

  open(): void {
    if (this.opened) return;
    this.opened = true;
    this.t.metrics.connectionOpened(trafficLabels(this.labelInput('-')));
    this.t.accessLog.opened(this.record());
    this.t.flows.publish({ ...this.flowBase(), phase: 'open' });
  }

  private labelInput(flags: ResponseFlags) {
    const c = this.ctx;
    return {
      reporter: c.reporter,
      source: c.source,
      destination: c.destination,
      service: c.service,
      securityPolicy: c.securityPolicy,
      responseFlags: flags,
    };
  }

  /**
   * Ends the connection's telemetry once. A connection refused before it was opened still counts as
   * opened and closed with its response flag (ztunnel counts failures in both).
   */
  finish(error?: string, flags: ResponseFlags = error ? 'CONNECT' : '-'): void {
    if (this.finished) return;
    this.finished = true;
    const durationMs = Date.now() - this.started;
    const labels = trafficLabels(this.labelInput(error ? flags : '-'));
    if (!this.opened) this.t.metrics.connectionOpened(labels);
    this.t.metrics.connectionClosed(labels, this.requestBytes, this.responseBytes);
    this.t.accessLog.complete(this.record(), {
      bytesSent: this.requestBytes,
      bytesRecv: this.responseBytes,
      durationMs,
      error,
      responseFlags: error ? flags : undefined,
    });
    this.t.flows.publish({
      ...this.flowBase(),
      phase: 'close',
      bytesSent: this.requestBytes,
      bytesRecv: this.responseBytes,
      durationMs,
      responseFlags: error ? flags : '-',
      error,
    });
  }
}

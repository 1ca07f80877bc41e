// Istio's L4 traffic metrics, with Istio's names and labels, on a prom-client registry.
// istio/ztunnel src/proxy/metrics.rs (`CommonTrafficLabels`, registry prefix `istio`): dashboards built
// for Istio ambient (Kiali, the Istio Grafana boards) read exactly these series, so names and label
// sets must not drift. Missing label values render as `unknown`, as ztunnel does.
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';

// The three prom-client classes by their own modules, not through its index: the index also loads
// Histogram, Summary (tdigest), the Pushgateway, the cluster aggregator, the default metrics and
// @opentelemetry/api, which a ztunnel never uses (+1.2-1.6 MB heap, +3.6 MB private RSS measured; these
// three alone +0.12 MB). They are the same modules the index re-exports, so a Registry made through
// 'prom-client' (the waypoint's) is this Registry. telemetry.test.ts renders through them.
const require = createRequire(import.meta.url);
const Registry = require('prom-client/lib/registry') as typeof PromClient.Registry;
const Counter = require('prom-client/lib/counter') as typeof PromClient.Counter;
const Gauge = require('prom-client/lib/gauge') as typeof PromClient.Gauge;
type Registry = PromClient.Registry;
type Counter<T extends string> = PromClient.Counter<T>;
type Gauge<T extends string> = PromClient.Gauge<T>;

/** `waypoint`: what Istio's waypoint proxies report (istio.io Istio Standard Metrics). */
export type Reporter = 'source' | 'destination' | 'waypoint';
export type ConnectionSecurityPolicy = 'mutual_tls' | 'unknown';

/** istio/ztunnel `ResponseFlags`: `-` means no failure. */
export type ResponseFlags =
  | '-'
  | 'DENY'
  | 'CONNECT'
  | 'TLS_FAILURE'
  | 'H2_HANDSHAKE_FAILURE'
  | 'NETWORK_POLICY'
  | 'IDENTITY_ERROR'
  | 'CERT_REVOKED';

/** Source and destination labels every Istio traffic metric carries, in ztunnel's order (CommonTrafficLabels). */
export const PEER_TRAFFIC_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
] as const;

/** The L4 label names, in ztunnel's order. */
export const TRAFFIC_LABELS = [
  ...PEER_TRAFFIC_LABELS,
  'response_flags',
  'connection_security_policy',
] as const;

export type TrafficLabelName = (typeof TRAFFIC_LABELS)[number];
export type TrafficLabels = Record<TrafficLabelName, string>;

/** What is known about one side of a connection; anything missing becomes `unknown`. */
export interface PeerLabels {
  workload?: string;
  namespace?: string;
  /** SPIFFE ID (with `spiffe://`), as ztunnel renders `source_principal`. */
  principal?: string;
  canonicalService?: string;
  canonicalRevision?: string;
  cluster?: string;
}

export interface DestinationServiceLabels {
  hostname?: string;
  namespace?: string;
  name?: string;
}

export interface TrafficLabelInput {
  reporter: Reporter;
  source: PeerLabels;
  destination: PeerLabels;
  service?: DestinationServiceLabels;
  securityPolicy: ConnectionSecurityPolicy;
  responseFlags?: ResponseFlags;
}

const UNKNOWN = 'unknown';

function v(s: string | undefined): string {
  return s === undefined || s === '' ? UNKNOWN : s;
}

/** Builds the full label set. `*_app`/`*_version` mirror canonical service/revision, as in ztunnel. */
export function trafficLabels(input: TrafficLabelInput): TrafficLabels {
  const s = input.source;
  const d = input.destination;
  const svc = input.service ?? {};
  return {
    reporter: input.reporter,
    source_workload: v(s.workload),
    source_canonical_service: v(s.canonicalService),
    source_canonical_revision: v(s.canonicalRevision),
    source_workload_namespace: v(s.namespace),
    source_principal: v(s.principal),
    source_app: v(s.canonicalService),
    source_version: v(s.canonicalRevision),
    source_cluster: v(s.cluster),
    destination_service: v(svc.hostname),
    destination_service_namespace: v(svc.namespace),
    destination_service_name: v(svc.name),
    destination_workload: v(d.workload),
    destination_canonical_service: v(d.canonicalService),
    destination_canonical_revision: v(d.canonicalRevision),
    destination_workload_namespace: v(d.namespace),
    destination_principal: v(d.principal),
    destination_app: v(d.canonicalService),
    destination_version: v(d.canonicalRevision),
    destination_cluster: v(d.cluster),
    // ztunnel only proxies L4: request_protocol is always `tcp`.
    request_protocol: 'tcp',
    response_flags: input.responseFlags ?? '-',
    connection_security_policy: input.securityPolicy,
  };
}

interface BoundSeries {
  opened: { inc(n?: number): void };
  closed: { inc(n?: number): void };
  failed: { inc(n?: number): void };
  sent: { inc(n?: number): void };
  received: { inc(n?: number): void };
}

/** The registry a ztunnel serves on 15020 `/metrics` and `/stats/prometheus`. */
export class TrafficMetrics {
  readonly registry: Registry;
  readonly opened: Counter<TrafficLabelName>;
  readonly closed: Counter<TrafficLabelName>;
  readonly failed: Counter<TrafficLabelName>;
  readonly sentBytes: Counter<TrafficLabelName>;
  readonly receivedBytes: Counter<TrafficLabelName>;
  readonly socketsOpen: Gauge<'reporter'>;
  readonly build: Gauge<'component' | 'tag'>;

  constructor(opts: { component?: string; tag?: string; registry?: Registry } = {}) {
    this.registry = opts.registry ?? new Registry();
    const labelNames = [...TRAFFIC_LABELS];
    const registers = [this.registry];
    this.opened = new Counter({
      name: 'istio_tcp_connections_opened_total',
      help: 'The total number of TCP connections opened',
      labelNames,
      registers,
    });
    this.closed = new Counter({
      name: 'istio_tcp_connections_closed_total',
      help: 'The total number of TCP connections closed',
      labelNames,
      registers,
    });
    this.failed = new Counter({
      name: 'istio_tcp_connections_failed_total',
      help: 'The total number of TCP connections that failed to establish (unstable)',
      labelNames,
      registers,
    });
    this.sentBytes = new Counter({
      name: 'istio_tcp_sent_bytes_total',
      help: 'The size of total bytes sent during response in case of a TCP connection',
      labelNames,
      registers,
    });
    this.receivedBytes = new Counter({
      name: 'istio_tcp_received_bytes_total',
      help: 'The size of total bytes received during request in case of a TCP connection',
      labelNames,
      registers,
    });
    this.socketsOpen = new Gauge({
      name: 'istio_tcp_sockets_open',
      help: 'The current number of open TCP sockets (unstable)',
      labelNames: ['reporter'],
      registers,
    });
    this.build = new Gauge({
      name: 'istio_build',
      help: 'Istio component build info',
      labelNames: ['component', 'tag'],
      registers,
    });
    this.build.set({ component: opts.component ?? 'ztunnel', tag: opts.tag ?? 'ambit' }, 1);
  }

  // prom-client hashes all 23 labels on every inc(); one lookup of the bound children per label set
  // is cheaper. Label sets are bounded (workload × peer × flags), as in Istio.
  private readonly bound = new Map<string, BoundSeries>();

  private seriesFor(labels: TrafficLabels): BoundSeries {
    const key = TRAFFIC_LABELS.map((k) => labels[k]).join('\u0000');
    let b = this.bound.get(key);
    if (!b) {
      b = {
        opened: this.opened.labels(labels),
        closed: this.closed.labels(labels),
        failed: this.failed.labels(labels),
        sent: this.sentBytes.labels(labels),
        received: this.receivedBytes.labels(labels),
      };
      this.bound.set(key, b);
    }
    return b;
  }

  connectionOpened(labels: TrafficLabels): void {
    this.seriesFor(labels).opened.inc();
    this.socketsOpen.inc({ reporter: labels.reporter });
  }

  /**
   * Records the close of a connection that was counted as opened. Bytes are given in the
   * request (client → server) and response (server → client) directions.
   * istio/istio#32399: for reporter=source Istio's sent/received counters are flipped (sent = request
   * bytes), and ztunnel keeps that so dashboards agree with sidecars; we do the same.
   */
  connectionClosed(labels: TrafficLabels, requestBytes: number, responseBytes: number): void {
    const b = this.seriesFor(labels);
    b.closed.inc();
    this.socketsOpen.dec({ reporter: labels.reporter });
    if (labels.response_flags !== '-') b.failed.inc();
    const [sent, received] =
      labels.reporter === 'source' ? [requestBytes, responseBytes] : [responseBytes, requestBytes];
    // inc(0) still creates the series, so a connection with no payload shows up in both counters.
    b.sent.inc(Math.max(0, sent));
    b.received.inc(Math.max(0, received));
  }

  /** Prometheus text exposition. */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

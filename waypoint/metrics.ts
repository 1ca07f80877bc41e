// Istio's request metrics as the waypoint reports them (istio-ambient.md §7.4: the standard Istio
// metric set with reporter="waypoint"; Envoy's istio.stats filter, names and labels from istio/proxy
// source/extensions/filters/http/istio_stats). Missing values render as `unknown`, as Envoy does, so
// dashboards built for Istio ambient (Kiali, Grafana's Istio boards) read these series unchanged.
import { Counter, Histogram, Registry } from 'prom-client';
import type { PeerLabels } from '../core/telemetry/metrics.js';

export const REQUEST_LABELS = [
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
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

export type RequestLabelName = (typeof REQUEST_LABELS)[number];

export interface RequestRecord {
  source: PeerLabels;
  destination: PeerLabels;
  service?: { hostname?: string; namespace?: string; name?: string };
  /** `http` (HTTP/1.1), `http2`? Istio renders HTTP/2 as `http` too and gRPC as `grpc`. */
  protocol: 'http' | 'grpc';
  responseCode: number;
  /** gRPC status code as text, '' when not gRPC. */
  grpcStatus: string;
  /** Envoy response flags, `-` for none. */
  responseFlags: string;
  durationMs: number;
}

const MAX_SERIES = 10_000;

const u = (s: string | undefined): string => (s === undefined || s === '' ? 'unknown' : s);

// Envoy/Istio's default request duration buckets (istio/proxy stats plugin).
const BUCKETS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];

export class RequestMetrics {
  readonly registry: Registry;
  readonly requests: Counter<RequestLabelName>;
  readonly duration: Histogram<RequestLabelName>;

  constructor(registry = new Registry()) {
    this.registry = registry;
    const labelNames = [...REQUEST_LABELS];
    this.requests = new Counter({
      name: 'istio_requests_total',
      help: 'Total requests handled by an Istio proxy',
      labelNames,
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'istio_request_duration_milliseconds',
      help: 'Request duration in milliseconds',
      labelNames,
      buckets: BUCKETS,
      registers: [registry],
    });
  }

  // prom-client hashes a 25-label object on every inc/observe; a request's label set is decided by a few
  // values, so the bound children are kept per key (bounded: cleared when it grows past MAX_SERIES).
  private readonly bound = new Map<string, { inc(): void; observe(v: number): void }>();

  record(r: RequestRecord): void {
    const s = r.source;
    const d = r.destination;
    const key = `${s.workload}|${s.namespace}|${s.principal}|${s.canonicalService}|${s.canonicalRevision}|${s.cluster}|${r.service?.hostname}|${r.service?.namespace}|${r.service?.name}|${d.workload}|${d.namespace}|${d.principal}|${d.canonicalService}|${d.canonicalRevision}|${d.cluster}|${r.protocol}|${r.responseCode}|${r.grpcStatus}|${r.responseFlags}`;
    let b = this.bound.get(key);
    if (!b) {
      if (this.bound.size >= MAX_SERIES) this.bound.clear();
      const labels = this.labelsOf(r);
      const c = this.requests.labels(labels);
      const h = this.duration.labels(labels);
      b = { inc: () => c.inc(), observe: (v) => h.observe(v) };
      this.bound.set(key, b);
    }
    b.inc();
    b.observe(r.durationMs);
  }

  private labelsOf(r: RequestRecord): Record<RequestLabelName, string> {
    const s = r.source;
    const d = r.destination;
    const labels: Record<RequestLabelName, string> = {
      reporter: 'waypoint',
      source_workload: u(s.workload),
      source_canonical_service: u(s.canonicalService),
      source_canonical_revision: u(s.canonicalRevision),
      source_workload_namespace: u(s.namespace),
      source_principal: u(s.principal),
      source_app: u(s.canonicalService),
      source_version: u(s.canonicalRevision),
      source_cluster: u(s.cluster),
      destination_service: u(r.service?.hostname),
      destination_service_namespace: u(r.service?.namespace),
      destination_service_name: u(r.service?.name),
      destination_workload: u(d.workload),
      destination_canonical_service: u(d.canonicalService),
      destination_canonical_revision: u(d.canonicalRevision),
      destination_workload_namespace: u(d.namespace),
      destination_principal: u(d.principal),
      destination_app: u(d.canonicalService),
      destination_version: u(d.canonicalRevision),
      destination_cluster: u(d.cluster),
      request_protocol: r.protocol,
      response_code: String(r.responseCode),
      grpc_response_status: r.grpcStatus,
      response_flags: r.responseFlags,
      connection_security_policy: 'mutual_tls',
    };
    return labels;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }
}

// Istio's request metrics as the waypoint reports them (istio.io Istio Standard Metrics: the standard Istio
// metric set with reporter="waypoint"; Envoy's istio.stats filter, names and labels from istio/proxy
// source/extensions/filters/http/istio_stats). Missing values render as `unknown`, as Envoy does, so
// dashboards built for Istio ambient (Kiali, Grafana's Istio boards) read these series unchanged.
import { Registry } from 'prom-client';
import { PEER_TRAFFIC_LABELS, type PeerLabels } from '../core/telemetry/metrics.js';

export const REQUEST_LABELS = [
  ...PEER_TRAFFIC_LABELS,
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
  /** Request / response body bytes (istio_request_bytes, istio_response_bytes); 0 when none. */
  requestBytes?: number;
  responseBytes?: number;
}

const MAX_SERIES = 10_000;

const u = (s: string | undefined): string => (s === undefined || s === '' ? 'unknown' : s);

// Envoy/Istio's default histogram buckets (istio/proxy stats plugin), for durations and byte sizes alike.
const BUCKETS = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000,
  3600000,
];

/** One histogram's state for one label set. */
interface Histogram {
  sum: number;
  /** Cumulative counts per BUCKETS bound (observation ≤ bound). */
  buckets: number[];
}

interface Series {
  /** Rendered label set `{a="b",...}`. */
  labels: string;
  count: number;
  duration: Histogram;
  requestBytes: Histogram;
  responseBytes: Histogram;
}

const newHistogram = (): Histogram => ({ sum: 0, buckets: BUCKETS.map(() => 0) });

function observe(h: Histogram, v: number): void {
  h.sum += v;
  for (let i = BUCKETS.length - 1; i >= 0 && v <= BUCKETS[i]!; i--) h.buckets[i]!++;
}

// The three histograms Istio's dashboards read (istio-workload / istio-service: Request Duration, Request
// Size, Response Size), each with the request label set.
const HISTOGRAMS = [
  ['istio_request_duration_milliseconds', 'duration', 'Request duration in milliseconds'],
  ['istio_request_bytes', 'requestBytes', 'Request body size in bytes'],
  ['istio_response_bytes', 'responseBytes', 'Response body size in bytes'],
] as const;

const escapeLabel = (v: string): string =>
  v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/**
 * The two request metrics, kept as plain counters per label set and rendered in the Prometheus text
 * format next to the prom-client registry (which stays for anything else registered). Why not prom-client
 * Counter/Histogram: they hash the 25-label object on every inc/observe (~4 % of a request's CPU here);
 * a request's label set is decided by a few values, so one string key finds its series.
 */
export class RequestMetrics {
  readonly registry: Registry;
  private readonly series = new Map<string, Series>();

  constructor(registry = new Registry()) {
    this.registry = registry;
  }

  record(r: RequestRecord): void {
    const s = r.source;
    const d = r.destination;
    const key = `${s.workload}|${s.namespace}|${s.principal}|${s.canonicalService}|${s.canonicalRevision}|${s.cluster}|${r.service?.hostname}|${r.service?.namespace}|${r.service?.name}|${d.workload}|${d.namespace}|${d.principal}|${d.canonicalService}|${d.canonicalRevision}|${d.cluster}|${r.protocol}|${r.responseCode}|${r.grpcStatus}|${r.responseFlags}`;
    let x = this.series.get(key);
    if (!x) {
      // Bounded: a label explosion must not grow memory without end (Envoy caps stats the same way).
      if (this.series.size >= MAX_SERIES) this.series.clear();
      const labels = this.labelsOf(r);
      x = {
        labels: REQUEST_LABELS.map((n) => `${n}="${escapeLabel(labels[n])}"`).join(','),
        count: 0,
        duration: newHistogram(),
        requestBytes: newHistogram(),
        responseBytes: newHistogram(),
      };
      this.series.set(key, x);
    }
    x.count++;
    observe(x.duration, r.durationMs);
    observe(x.requestBytes, r.requestBytes ?? 0);
    observe(x.responseBytes, r.responseBytes ?? 0);
  }

  /** Value of istio_requests_total for the series whose labels include every `want` pair (tests, admin). */
  count(want: Partial<Record<RequestLabelName, string>>): number {
    let n = 0;
    for (const x of this.series.values()) {
      if (Object.entries(want).every(([k, v]) => x.labels.includes(`${k}="${escapeLabel(String(v))}"`)))
        n += x.count;
    }
    return n;
  }

  private labelsOf(r: RequestRecord): Record<RequestLabelName, string> {
    const s = r.source;
    const d = r.destination;
    return {
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
  }

  /** Prometheus text exposition: the request counter and histograms, then whatever else the registry holds. */
  async render(): Promise<string> {
    const out: string[] = [
      '# HELP istio_requests_total Total requests handled by an Istio proxy',
      '# TYPE istio_requests_total counter',
    ];
    for (const x of this.series.values()) out.push(`istio_requests_total{${x.labels}} ${x.count}`);
    for (const [name, field, help] of HISTOGRAMS) {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
      for (const x of this.series.values()) {
        const h = x[field];
        BUCKETS.forEach((b, i) => {
          out.push(`${name}_bucket{${x.labels},le="${b}"} ${h.buckets[i]}`);
        });
        out.push(`${name}_bucket{${x.labels},le="+Inf"} ${x.count}`);
        out.push(`${name}_sum{${x.labels}} ${h.sum}`);
        out.push(`${name}_count{${x.labels}} ${x.count}`);
      }
    }
    const rest = await this.registry.metrics();
    return `${out.join('\n')}\n${rest}`;
  }
}

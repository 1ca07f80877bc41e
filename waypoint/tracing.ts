// Distributed tracing at the waypoint: one span per HTTP/gRPC request, parented to the client's W3C
// `traceparent` and exported over OTLP/HTTP (protobuf) with the OpenTelemetry JS SDK — what Istio's waypoint
// (Envoy's OpenTelemetry tracer, meshConfig.extensionProviders[].opentelemetry) does. The span's context
// replaces the client's `traceparent` towards the app, so the app's own spans hang under the waypoint's.
//
// Sampling follows Envoy: a request whose traceparent carries a decision keeps it (sampled flag); a request
// without one is sampled at `randomSamplingPercentage` (Istio Telemetry API `tracing[]`, default 1 %, as
// istio.io "Telemetry API: tracing" documents). The SDK is loaded only when tracing is configured: with it
// off, the waypoint has no tracer and the request path creates no span object at all (request.ts `?.`).
import { type Context, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { Sampler, SamplingResult, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Headers } from './forward.js';

export class TracingConfigError extends Error {
  readonly code = 'WAYPOINT_TRACING_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'TracingConfigError';
  }
}

/** Istio's default random sampling percentage when nothing sets one (meshConfig defaultConfig.tracing). */
export const DEFAULT_SAMPLING_PERCENT = 1;

export interface TracingOptions {
  /** OTLP/HTTP traces URL, e.g. http://otel-collector.observability:4318/v1/traces. */
  endpoint: string;
  /**
   * Percentage (0..100) of requests WITHOUT an upstream sampling decision that are traced. A function is
   * read per such request, so a changed Telemetry resource applies without a restart.
   */
  samplingPercent: () => number;
  /** OpenTelemetry `service.name`: Istio names a proxy's spans `<canonical service>.<namespace>`. */
  serviceName: string;
  /** Resource attributes added to every span (k8s.namespace.name, istio.* ...). */
  resource?: Record<string, string>;
  /** How long spans wait in the batch before export (OTel default 5000 ms). */
  exportDelayMs?: number;
  /**
   * Telemetry `disableSpanReporting`: spans are still made and propagated (sampling unchanged, as Istio
   * documents) but not exported. Read per finished span.
   */
  reportingDisabled?: () => boolean;
}

/** What the request path reports when it ends a span. */
export interface SpanOutcome {
  status: number;
  grpcStatus: string;
  responseFlags: string;
  upstream?: string;
  /** The waypoint's reason for a local reply (policy denial, timeout ...). */
  reason?: string;
}

export interface RequestSpanStart {
  method: string;
  path: string;
  authority: string;
  protocol: string;
  /** Incoming request headers (traceparent / tracestate are read from them). */
  headers: Record<string, string | string[] | undefined>;
  sourcePrincipal: string;
}

/** One request's span; `inject` writes its context into the headers sent upstream. */
export interface RequestSpan {
  inject(headers: Headers): void;
  end(outcome: SpanOutcome): void;
}

export interface WaypointTracer {
  start(r: RequestSpanStart): RequestSpan;
  /** Flushes spans still batched and stops the exporter. */
  close(): Promise<void>;
}

/** Validates the configured endpoint: an http(s) URL, named in the error when it is not. */
export function checkEndpoint(endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new TracingConfigError(`tracing endpoint ${JSON.stringify(endpoint)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TracingConfigError(
      `tracing endpoint ${JSON.stringify(endpoint)}: OTLP/HTTP needs http:// or https://`,
    );
  return url;
}

const getter = {
  keys: (h: RequestSpanStart['headers']) => Object.keys(h),
  get: (h: RequestSpanStart['headers'], k: string) => h[k],
};
const setter = {
  set: (h: Headers, k: string, v: string) => {
    h[k] = v;
  },
};

/** Builds the tracer (loads the SDK and the OTLP exporter now, not at start-up of a waypoint without tracing). */
export async function createTracer(opts: TracingOptions): Promise<WaypointTracer> {
  checkEndpoint(opts.endpoint);
  const [{ BasicTracerProvider, BatchSpanProcessor, TraceIdRatioBasedSampler }, res, exp, core] =
    await Promise.all([
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/exporter-trace-otlp-proto'),
      import('@opentelemetry/core'),
    ]);
  const propagator = new core.W3CTraceContextPropagator();

  // Root decisions by percentage, re-read per decision; parents' decisions win (Envoy honours the sampled
  // flag of an incoming traceparent). Kept as one small Sampler so a Telemetry change needs no new provider.
  let ratio = -1;
  let ratioSampler: Sampler = new TraceIdRatioBasedSampler(0);
  const sampler: Sampler = {
    shouldSample(ctx, traceId, name, kind, attrs, links): SamplingResult {
      const parent = trace.getSpanContext(ctx);
      if (parent && trace.isSpanContextValid(parent))
        return { decision: parent.traceFlags & 1 ? 2 /* RECORD_AND_SAMPLED */ : 0 /* NOT_RECORD */ };
      const p = opts.samplingPercent();
      if (p !== ratio) {
        ratio = p;
        ratioSampler = new TraceIdRatioBasedSampler(Math.min(1, Math.max(0, p / 100)));
      }
      return ratioSampler.shouldSample(ctx, traceId, name, kind, attrs, links);
    },
    toString: () => `WaypointSampler{parent-based, root ${ratio}%}`,
  };

  const batch = new BatchSpanProcessor(new exp.OTLPTraceExporter({ url: opts.endpoint }), {
    scheduledDelayMillis: opts.exportDelayMs ?? 5000,
  });
  const reporting: SpanProcessor = {
    onStart: (span, ctx) => batch.onStart(span, ctx),
    onEnd: (span) => {
      if (!opts.reportingDisabled?.()) batch.onEnd(span);
    },
    forceFlush: () => batch.forceFlush(),
    shutdown: () => batch.shutdown(),
  };
  const provider = new BasicTracerProvider({
    resource: res.resourceFromAttributes({ 'service.name': opts.serviceName, ...(opts.resource ?? {}) }),
    sampler,
    spanProcessors: [reporting],
  });
  const tracer = provider.getTracer('ambit-waypoint');

  return {
    start(r: RequestSpanStart): RequestSpan {
      const parent: Context = propagator.extract(ROOT_CONTEXT, r.headers, getter);
      // Envoy's operation name for a proxy span: `<authority><path without query>`, as Istio shows it.
      const span: Span = tracer.startSpan(
        `${r.authority}${r.path.split('?')[0]}`,
        {
          kind: SpanKind.SERVER,
          attributes: {
            'http.request.method': r.method,
            'url.path': r.path,
            'server.address': r.authority,
            'network.protocol.name': r.protocol,
            'istio.source_principal': r.sourcePrincipal,
            component: 'proxy',
          },
        },
        parent,
      );
      return {
        inject(headers: Headers): void {
          propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, setter);
        },
        end(o: SpanOutcome): void {
          if (span.isRecording()) {
            span.setAttributes({
              'http.response.status_code': o.status,
              response_flags: o.responseFlags,
              ...(o.grpcStatus ? { 'rpc.grpc.status_code': Number(o.grpcStatus) } : {}),
              ...(o.upstream ? { upstream_address: o.upstream } : {}),
            });
            if (o.status >= 500 || o.status === 0 || (o.grpcStatus !== '' && o.grpcStatus !== '0'))
              span.setStatus({ code: SpanStatusCode.ERROR, ...(o.reason ? { message: o.reason } : {}) });
          }
          span.end();
        },
      };
    },
    close: () => provider.shutdown(),
  };
}

// The waypoint's one typed configuration object, validated at start; defaults beside each field.
// Environment names follow Istio where it has one (TRUST_DOMAIN, CA_ADDRESS).
import { z } from 'zod';
import { DEFAULT_PATH_NORMALIZATION, PATH_NORMALIZATIONS } from '../core/http/request-target.js';
import { DEFAULT_TRUST_DOMAIN, validateTrustDomain } from '../core/identity/spiffe.js';
import { DEFAULT_LIMITS, type WaypointLimits, resolveLimits } from './limits.js';

export class WaypointConfigError extends Error {
  readonly code = 'WAYPOINT_CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'WaypointConfigError';
  }
}

const port = z.number().int().min(0).max(65535);
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

const Schema = z.object({
  /** Gateway name = service account = the waypoint identity's SA. Required. */
  name: z.string().regex(DNS_LABEL, 'must be a DNS label (lower-case letters, digits, dashes)'),
  /** Namespace of the Gateway. Required. */
  namespace: z.string().regex(DNS_LABEL, 'must be a DNS label (lower-case letters, digits, dashes)'),
  /** Trust domain (TRUST_DOMAIN), default cluster.local. */
  trustDomain: z.string().default(DEFAULT_TRUST_DOMAIN),
  /** Cluster id for telemetry labels (CLUSTER_ID). */
  clusterId: z.string().default('Kubernetes'),
  /** HBONE listener: the Gateway's `mesh` listener, 15008 (Istio's waypoint Gateway: listener `mesh`, protocol HBONE). */
  listenAddress: z.string().default('0.0.0.0'),
  listenPort: port.default(15008),
  /** Port of the destination ztunnels' HBONE listener (always 15008 in a mesh; tests change it). */
  upstreamHbonePort: port.default(15008),
  /** Prometheus /metrics, /stats/prometheus and /healthz/ready (Istio's waypoint: 15020 / 15021 → one port here). */
  statsAddress: z.string().default('0.0.0.0'),
  statsPort: port.default(15020),
  /** Largest request body buffered so a retry can resend it; bigger → 413. Default 8 MiB. */
  maxBufferedBodyBytes: z
    .number()
    .int()
    .positive()
    .default(8 * 1024 * 1024),
  /** Root namespace for GatewayClass-attached policies (meshConfig rootNamespace). */
  rootNamespace: z.string().default('istio-system'),
  /**
   * Istio meshConfig.pathNormalization.normalization: NONE | BASE | MERGE_SLASHES |
   * DECODE_AND_MERGE_SLASHES (core/http/request-target.ts). Default BASE, as Istio.
   */
  pathNormalization: z.enum(PATH_NORMALIZATIONS).default(DEFAULT_PATH_NORMALIZATION),
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  /**
   * Tracing (waypoint/tracing.ts), off when absent. `endpoint`: OTLP/HTTP traces URL (Istio:
   * meshConfig.extensionProviders[].opentelemetry). `samplingPercent`: share of requests without an upstream
   * decision that are traced, used when no Telemetry resource sets `randomSamplingPercentage`; default 1.
   */
  tracing: z
    .object({
      endpoint: z.string().url('must be an http(s) URL such as http://collector:4318/v1/traces'),
      samplingPercent: z.number().min(0).max(100).optional(),
    })
    .optional(),
});

export type WaypointConfig = z.infer<typeof Schema> & { limits: WaypointLimits };
export type WaypointConfigInput = z.input<typeof Schema> & { limits?: Partial<WaypointLimits> };

export function resolveConfig(input: WaypointConfigInput): WaypointConfig {
  const r = Schema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new WaypointConfigError(`waypoint config: ${i?.path.join('.') || '(root)'}: ${i?.message}`);
  }
  const tdProblem = validateTrustDomain(r.data.trustDomain);
  if (tdProblem) throw new WaypointConfigError(`waypoint config: trustDomain: ${tdProblem}`);
  let limits: WaypointLimits;
  try {
    limits = resolveLimits(input.limits ?? {});
  } catch (err) {
    throw new WaypointConfigError((err as Error).message);
  }
  return { ...r.data, limits };
}

export { DEFAULT_LIMITS };

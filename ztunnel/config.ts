// ztunnel's one typed configuration object. Defaults are documented beside each field and follow
// istio/ztunnel src/config.rs; environment variables use ztunnel's names where it has one
// (CA_ADDRESS, CONNECTION_TERMINATION_DEADLINE, TERMINATION_GRACE_PERIOD_SECONDS,
// KUBERNETES_SYNC_TIMEOUT (Ambit's: istiod has no such bound for its own cluster),
// POOL_MAX_STREAMS_PER_CONNECTION, POOL_UNUSED_RELEASE_TIMEOUT, TRUST_DOMAIN, NODE_NAME, LOG_FORMAT).
import { z } from 'zod/v4';
import { DEFAULT_TRUST_DOMAIN, validateTrustDomain } from '../core/identity/spiffe.js';
import { syncTimeoutFrom } from '../core/sources/sync-timeout.js';

export class ConfigError extends Error {
  readonly code = 'ZTUNNEL_CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const port = z.number().int().min(0).max(65535);

const Schema = z.object({
  /** Node this ztunnel serves (NODE_NAME). Only workloads with this `node` are local. Required. */
  node: z.string().min(1),
  /** Manifest directory that is the cluster in local mode (`-m`). Required unless a state is injected. */
  manifestsDir: z.string().optional(),
  /** Read the state from the Kubernetes API instead (`--kubernetes`): in-cluster, or `kubeconfig`. */
  kubernetes: z.boolean().default(false),
  /** kubeconfig file for `kubernetes` (default: in-cluster, then $KUBECONFIG / ~/.kube/config). */
  kubeconfig: z.string().optional(),
  /**
   * With `kubernetes`: start fails unless every kind has been listed within this many ms
   * (`--sync-timeout`, KUBERNETES_SYNC_TIMEOUT). Default 120 s; bench/scale measures what a cluster
   * of a given size needs.
   */
  kubernetesSyncTimeoutMs: z.number().int().positive().optional(),
  /**
   * Discovery tier host:port (XDS_ADDRESS; `--discovery`): read the state over Istio's WDS instead of
   * a manifest directory or the Kubernetes API. Istio's default is istiod.istio-system.svc:15012, the
   * same server as the CA. Verified with caRootFile, authenticated with the node token, as the CA.
   */
  discoveryAddress: z.string().optional(),
  /** How long the first discovery sync may take before start fails, ms. Default 60 s. */
  discoverySyncTimeoutMs: z.number().int().positive().default(60_000),
  /** CA gRPC address host:port (CA_ADDRESS; Istio default istiod.istio-system.svc:15012). */
  caAddress: z.string().optional(),
  /** PEM file with the CA roots that sign the CA server's TLS certificate (`--ca-root`). */
  caRootFile: z.string().optional(),
  /** File holding the node token presented to the CA (`--token`). */
  tokenFile: z.string().optional(),
  /** Trust domain (TRUST_DOMAIN), default cluster.local. */
  trustDomain: z.string().default(DEFAULT_TRUST_DOMAIN),
  /** Cluster id for telemetry labels (CLUSTER_ID), default Kubernetes as istiod. */
  clusterId: z.string().default('Kubernetes'),
  /** Address the data-path listeners bind (transparent, so any destination). Default 0.0.0.0. */
  listenAddress: z.string().default('0.0.0.0'),
  /** Outbound capture port. istio/ztunnel: 15001. */
  outboundPort: port.default(15001),
  /** Inbound plaintext capture port. istio/ztunnel: 15006. */
  inboundPlaintextPort: port.default(15006),
  /** Inbound HBONE port, also the port peers dial. istio/ztunnel: 15008. */
  inboundPort: port.default(15008),
  /** Admin listener; localhost only as in istio/ztunnel (config_dump exposes certificates' metadata). */
  adminAddress: z.string().default('127.0.0.1'),
  adminPort: port.default(15000),
  /** Prometheus listener (/metrics, /stats/prometheus). istio/ztunnel: 0.0.0.0:15020. */
  statsAddress: z.string().default('0.0.0.0'),
  statsPort: port.default(15020),
  /** Readiness listener (/healthz/ready). istio/ztunnel: 0.0.0.0:15021. */
  readinessAddress: z.string().default('0.0.0.0'),
  readinessPort: port.default(15021),
  /** Drain deadline in ms (CONNECTION_TERMINATION_DEADLINE, default 5 s; see fromEnv for the grace rule). */
  drainDeadlineMs: z.number().int().positive().default(5000),
  /** Upstream TCP connect timeout in ms (istio/ztunnel: 10 s). */
  connectTimeoutMs: z.number().int().positive().default(10_000),
  /** Streams per pooled HBONE connection (POOL_MAX_STREAMS_PER_CONNECTION, default 100). */
  poolMaxStreamsPerConnection: z.number().int().positive().default(100),
  /** Idle pooled HBONE connection release, ms (POOL_UNUSED_RELEASE_TIMEOUT, default 5 min). */
  poolUnusedReleaseTimeoutMs: z.number().int().positive().default(300_000),
  /** Log level: off|error|warn|info|debug|trace (changeable at runtime through admin /logging). */
  logLevel: z.enum(['silent', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  /**
   * Dial pods with the original client's IP as source (IP_TRANSPARENT), so apps, ipBlocks and telemetry
   * see the real client (istio/ztunnel ENABLE_ORIG_SRC). Needs root and the capture's return-path rules.
   */
  preserveSourceIp: z.boolean().default(true),
  /**
   * Capture listeners are IP_TRANSPARENT so a TPROXY'd / sk_assign'd connection keeps its original
   * destination as local address. Off only for loopback unit tests without root.
   */
  transparent: z.boolean().default(true),
  /** Packet mark on ztunnel's own sockets so capture rules skip them (istio/ztunnel PACKET_MARK 0x539). */
  packetMark: z.number().int().nonnegative().default(0x539),
});

export type ZtunnelConfig = z.infer<typeof Schema>;
export type ZtunnelConfigInput = z.input<typeof Schema>;

/** The ports no captured or tunneled connection may target (istio/ztunnel `illegal_ports`). */
export function illegalPorts(c: ZtunnelConfig): Set<number> {
  return new Set([c.outboundPort, c.inboundPlaintextPort, c.inboundPort]);
}

/** Validates a config, throwing one ConfigError whose message names the field. */
export function parseConfig(input: ZtunnelConfigInput): ZtunnelConfig {
  const r = Schema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new ConfigError(`ztunnel config: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const tdError = validateTrustDomain(r.data.trustDomain);
  if (tdError) throw new ConfigError(`ztunnel config: trustDomain: ${tdError}`);
  return r.data;
}

function envSeconds(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  // Istio durations in env may be given as "5s"; accept seconds with or without the suffix.
  const m = /^(\d+)(ms|s)?$/.exec(raw.trim());
  if (!m) throw new ConfigError(`ztunnel config: environment ${name}=${JSON.stringify(raw)} is not a number`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1000 : n;
}

/**
 * Fills unset fields from the environment with ztunnel's variable names. Explicit input wins.
 * Drain: istio/ztunnel uses TERMINATION_GRACE_PERIOD_SECONDS − 5 s (− 1 s when the grace period is
 * ≤ 10 s) when set, otherwise CONNECTION_TERMINATION_DEADLINE (default 5 s).
 */
export function configFromEnv(
  input: Omit<ZtunnelConfigInput, 'node'> & { node?: string },
  env: NodeJS.ProcessEnv = process.env,
): ZtunnelConfig {
  const merged: ZtunnelConfigInput = { ...input, node: input.node ?? env.NODE_NAME ?? '' };
  merged.caAddress ??= env.CA_ADDRESS;
  // istio/ztunnel src/config.rs XDS_ADDRESS is a URL (https://istiod.istio-system.svc:15012).
  merged.discoveryAddress ??= env.XDS_ADDRESS?.replace(/^https?:\/\//, '') || undefined;
  merged.trustDomain ??= env.TRUST_DOMAIN;
  merged.clusterId ??= env.CLUSTER_ID;
  if (merged.kubernetesSyncTimeoutMs === undefined) {
    try {
      merged.kubernetesSyncTimeoutMs = syncTimeoutFrom(undefined, env);
    } catch (err) {
      throw new ConfigError(`ztunnel config: environment ${(err as Error).message}`);
    }
  }
  if (merged.drainDeadlineMs === undefined) {
    const grace = envSeconds(env, 'TERMINATION_GRACE_PERIOD_SECONDS');
    const deadline = envSeconds(env, 'CONNECTION_TERMINATION_DEADLINE');
    if (grace !== undefined) merged.drainDeadlineMs = Math.max(1, grace <= 10 ? grace - 1 : grace - 5) * 1000;
    else if (deadline !== undefined) merged.drainDeadlineMs = Math.round(deadline * 1000);
  }
  const rawStreams = env.POOL_MAX_STREAMS_PER_CONNECTION;
  const streams = rawStreams ? Number(rawStreams) : undefined;
  if (merged.poolMaxStreamsPerConnection === undefined && streams !== undefined)
    merged.poolMaxStreamsPerConnection = streams;
  const idle = envSeconds(env, 'POOL_UNUSED_RELEASE_TIMEOUT');
  if (merged.poolUnusedReleaseTimeoutMs === undefined && idle !== undefined)
    merged.poolUnusedReleaseTimeoutMs = Math.round(idle * 1000);
  // Drop undefined so zod defaults apply.
  for (const k of Object.keys(merged) as (keyof ZtunnelConfigInput)[]) {
    if (merged[k] === undefined) delete merged[k];
  }
  return parseConfig(merged);
}

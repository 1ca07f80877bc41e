// The CA's configuration: one typed object, validated at start, defaults documented per field.
// Environment variables use Istio's names where Istio has one.
import { z } from 'zod';
import { DEFAULT_TRUST_DOMAIN, validateTrustDomain } from '../../core/identity/spiffe.js';
import { DEFAULT_TRUSTED_NODE_ACCOUNTS, parseTrustedNodeAccounts } from './auth.js';
import { DEFAULT_WORKLOAD_CERT_TTL_SECONDS, MAX_WORKLOAD_CERT_TTL_SECONDS } from './signer.js';

export const CaServerConfigSchema = z
  .object({
    /** Mesh trust domain (istio TRUST_DOMAIN). Default cluster.local. */
    trustDomain: z
      .string()
      .default(DEFAULT_TRUST_DOMAIN)
      .superRefine((v, ctx) => {
        const e = validateTrustDomain(v);
        if (e) ctx.addIssue({ code: z.ZodIssueCode.custom, message: e });
      }),
    /** host:port to serve gRPC on (istiod serves the CA on 15012). Port 0 = ephemeral. */
    listen: z.string().default('127.0.0.1:15012'),
    /** Local-mode store directory for the self-signed root (ca-cert.pem, ca-key.pem 0600, ...). */
    dir: z.string().min(1),
    /** Plugged-in CA directory (istio ROOT_CA_DIR, `cacerts` Secret layout); hot-reloaded. */
    cacertsDir: z.string().min(1).optional(),
    /** Token file for local-mode authentication (see auth.ts for the format). */
    tokensFile: z.string().min(1).optional(),
    /** <ns>/<sa> allowed to use ImpersonatedIdentity (istio CA_TRUSTED_NODE_ACCOUNTS). */
    trustedNodeAccounts: z.array(z.string()).default(DEFAULT_TRUSTED_NODE_ACCOUNTS),
    /** istio DEFAULT_WORKLOAD_CERT_TTL, seconds. Default 24 h. */
    defaultTtlSeconds: z.number().int().positive().default(DEFAULT_WORKLOAD_CERT_TTL_SECONDS),
    /** istio MAX_WORKLOAD_CERT_TTL, seconds. Default 90 d; above it a request is an error. */
    maxTtlSeconds: z.number().int().positive().default(MAX_WORKLOAD_CERT_TTL_SECONDS),
    /** istio CITADEL_SELF_SIGNED_CA_CERT_TTL, days. Default 3650. */
    rootTtlDays: z.number().positive().default(3650),
    /** istio CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE. Default 20. */
    rootGracePercent: z.number().min(1).max(99).default(20),
    /** istio CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL, ms. Default 1 h. */
    rootCheckIntervalMs: z.number().int().positive().default(3_600_000),
    /** Debounce for cacerts file events, ms. Default 500. */
    reloadDebounceMs: z.number().int().nonnegative().default(500),
    /** DNS SANs of the gRPC serving certificate (ztunnel verifies istiod.istio-system.svc). */
    servingDnsNames: z.array(z.string().min(1)).default(['istiod.istio-system.svc']),
    /** IP SANs of the serving certificate. Default the loopback. */
    servingIps: z.array(z.string().min(1)).default(['127.0.0.1']),
  })
  .strict();

export type CaServerConfigInput = z.input<typeof CaServerConfigSchema>;
export type CaServerConfig = z.output<typeof CaServerConfigSchema>;

/** Validates a config; the error names the field. */
export function parseCaServerConfig(input: CaServerConfigInput): CaServerConfig {
  const r = CaServerConfigSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new Error(`ca config: ${i?.path.join('.') || '(root)'}: ${i?.message}`);
  }
  return r.data;
}

/** Istio environment variables that override config (TRUST_DOMAIN, CA_TRUSTED_NODE_ACCOUNTS, ...). */
export function caConfigFromEnv(env: NodeJS.ProcessEnv): Partial<CaServerConfigInput> {
  const out: Partial<CaServerConfigInput> = {};
  if (env.TRUST_DOMAIN) out.trustDomain = env.TRUST_DOMAIN;
  if (env.CA_TRUSTED_NODE_ACCOUNTS !== undefined)
    out.trustedNodeAccounts = parseTrustedNodeAccounts(env.CA_TRUSTED_NODE_ACCOUNTS);
  if (env.ROOT_CA_DIR) out.cacertsDir = env.ROOT_CA_DIR;
  return out;
}

// zod schemas for security.istio.io AuthorizationPolicy and PeerAuthentication (v1 and v1beta1 share one
// shape: istio/api security/v1beta1/authorization_policy.proto, peer_authentication.proto), with the
// checks istiod's validation webhook makes (istio/istio pkg/config/validation: ValidateAuthorizationPolicy,
// ValidatePeerAuthentication). Specs are strict: an unknown field is an error, because a typo such as
// `notPrincipal` silently dropped would widen what a policy allows.
import ipaddr from 'ipaddr.js';
// zod 4 (the `zod/v4` entry of the installed zod 3.25): about 3x faster than the v3 API, which the
// 10,000-policy load budget needs.
import { z } from 'zod/v4';

/** A superRefine step: `ok` or one custom issue with a message built from the value. */
export function check<T>(ok: (v: T) => boolean, message: (v: T) => string) {
  return (v: T, ctx: z.RefinementCtx<T>): void => {
    if (!ok(v)) ctx.addIssue({ code: 'custom', message: message(v), input: v });
  };
}

export const ISTIO_SECURITY_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'] as const;

const ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;
const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;

export const labelMap = z.record(z.string(), z.string({ error: 'label values must be strings' }));

/** An IP or a CIDR. Non-canonical CIDRs (10.0.0.1/8) are accepted like Istio does and match as the network. */
export function isIpOrCidr(value: string): boolean {
  const v6 = value.includes(':');
  const slash = value.indexOf('/');
  const addr = slash < 0 ? value : value.slice(0, slash);
  // Go's netip (what istiod validates with) takes four-part decimal IPv4 only; ipaddr.js alone would
  // also take "10.1" or hex forms. Checking the family first also keeps 10,000 policies cheap to load.
  if (addr.includes('%')) return false; // zones are not addresses in a policy
  if (v6 ? !ipaddr.IPv6.isValid(addr) : !ipaddr.IPv4.isValidFourPartDecimal(addr)) return false;
  if (slash < 0) return true;
  const bits = value.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bits)) return false;
  return Number(bits) <= (v6 ? 128 : 32);
}

/** Istio's port fields are strings holding a number 1–65535; YAML integers are accepted and stringified. */
export const portString = z
  .union([z.string(), z.number()])
  .transform((v) => String(v))
  .superRefine((v, ctx) => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || n < 1 || n > 65535)
      ctx.addIssue({ code: 'custom', message: `port "${v}" out of range 1-65535` });
  });

// The two specs and their parts are built on the first policy a node sees (most nodes of a cluster
// without policies never do); z.lazy caches the result. Built, they are ~0.8 MB of heap.
function buildSpecs() {
  const ipBlock = z.string().superRefine(check(isIpOrCidr, (v) => `"${v}" is not an IP address or CIDR`));

  const strings = z.array(z.string());

  const source = z
    .object({
      principals: strings,
      notPrincipals: strings,
      requestPrincipals: strings,
      notRequestPrincipals: strings,
      namespaces: strings,
      notNamespaces: strings,
      serviceAccounts: strings,
      notServiceAccounts: strings,
      ipBlocks: z.array(ipBlock),
      notIpBlocks: z.array(ipBlock),
      remoteIpBlocks: z.array(ipBlock),
      notRemoteIpBlocks: z.array(ipBlock),
      trustDomains: strings,
      notTrustDomains: strings,
    })
    .partial()
    .strict()
    .superRefine((s, ctx) => {
      // istio validation: serviceAccounts cannot be combined with principals or namespaces.
      const sa = (s.serviceAccounts?.length ?? 0) + (s.notServiceAccounts?.length ?? 0) > 0;
      const other =
        (s.principals?.length ?? 0) +
          (s.notPrincipals?.length ?? 0) +
          (s.namespaces?.length ?? 0) +
          (s.notNamespaces?.length ?? 0) >
        0;
      if (sa && other)
        ctx.addIssue({
          code: 'custom',
          path: ['serviceAccounts'],
          message: 'serviceAccounts cannot be combined with principals or namespaces',
        });
    });

  const operation = z
    .object({
      hosts: strings,
      notHosts: strings,
      ports: z.array(portString),
      notPorts: z.array(portString),
      methods: strings,
      notMethods: strings,
      paths: strings,
      notPaths: strings,
    })
    .partial()
    .strict();

  // istio pkg/config/security: the `when` keys AuthorizationPolicy understands.
  const WHEN_KEYS = new Set([
    'source.ip',
    'remote.ip',
    'source.namespace',
    'source.serviceAccount',
    'source.trustDomain',
    'source.principal',
    'request.auth.principal',
    'request.auth.audiences',
    'request.auth.presenter',
    'destination.ip',
    'destination.port',
    'connection.sni',
  ]);
  const WHEN_PREFIXES = ['request.headers[', 'request.auth.claims[', 'experimental.envoy.filters.'];

  const condition = z
    .object({
      key: z.string().min(1, 'key is empty'),
      values: strings.optional(),
      notValues: strings.optional(),
    })
    .strict()
    .superRefine((c, ctx) => {
      if (!WHEN_KEYS.has(c.key) && !WHEN_PREFIXES.some((p) => c.key.startsWith(p)))
        ctx.addIssue({ code: 'custom', path: ['key'], message: `unknown attribute "${c.key}"` });
      if ((c.values?.length ?? 0) + (c.notValues?.length ?? 0) === 0)
        ctx.addIssue({
          code: 'custom',
          message: 'at least one of values or notValues must be set',
        });
      const check = (field: 'values' | 'notValues', ok: (v: string) => boolean, what: string) =>
        c[field]?.forEach((v, i) => {
          if (!ok(v)) ctx.addIssue({ code: 'custom', path: [field, i], message: `"${v}" is not ${what}` });
        });
      if (c.key === 'source.ip' || c.key === 'remote.ip' || c.key === 'destination.ip') {
        check('values', isIpOrCidr, 'an IP address or CIDR');
        check('notValues', isIpOrCidr, 'an IP address or CIDR');
      }
      if (c.key === 'destination.port') {
        const port = (v: string) => /^[0-9]+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535;
        check('values', port, 'a port in range 1-65535');
        check('notValues', port, 'a port in range 1-65535');
      }
    });

  const rule = z
    .object({
      from: z.array(z.object({ source: source.optional() }).strict()).optional(),
      to: z.array(z.object({ operation: operation.optional() }).strict()).optional(),
      when: z.array(condition).optional(),
    })
    .strict();

  const selector = z.object({ matchLabels: labelMap.optional() }).strict();

  const targetRef = z
    .object({
      group: z.string().optional(),
      kind: z.string().min(1, 'kind is empty'),
      name: z.string().min(1, 'name is empty'),
      namespace: z.string().optional(),
    })
    .strict();

  const authorizationPolicySpec = z
    .object({
      selector: selector.optional(),
      targetRef: targetRef.optional(),
      targetRefs: z.array(targetRef).optional(),
      action: z
        .string()
        .superRefine(
          check(
            (a) => (ACTIONS as readonly string[]).includes(a),
            (a) => `unknown action "${a}" (expected ALLOW, DENY, AUDIT or CUSTOM)`,
          ),
        )
        .optional(),
      provider: z
        .object({ name: z.string().min(1) })
        .strict()
        .optional(),
      rules: z.array(rule).optional(),
    })
    .strict()
    .superRefine((s, ctx) => {
      const hasTargets = s.targetRef !== undefined || (s.targetRefs?.length ?? 0) > 0;
      if (s.selector !== undefined && hasTargets)
        ctx.addIssue({
          code: 'custom',
          path: [s.targetRefs ? 'targetRefs' : 'targetRef'],
          message: 'only one of selector or targetRef(s) may be set',
        });
      if (s.targetRef !== undefined && s.targetRefs !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['targetRefs'],
          message: 'only one of targetRef or targetRefs may be set',
        });
      if (s.action === 'CUSTOM' && !s.provider)
        ctx.addIssue({
          code: 'custom',
          path: ['provider'],
          message: 'CUSTOM action requires a provider',
        });
      if (s.action !== 'CUSTOM' && s.provider)
        ctx.addIssue({
          code: 'custom',
          path: ['provider'],
          message: 'provider is only allowed with action CUSTOM',
        });
    });

  const mtls = z
    .object({
      mode: z
        .string()
        .superRefine(
          check(
            (m) => (MTLS_MODES as readonly string[]).includes(m),
            (m) => `unknown mTLS mode "${m}" (expected UNSET, DISABLE, PERMISSIVE or STRICT)`,
          ),
        )
        .optional(),
    })
    .strict();

  const peerAuthenticationSpec = z
    .object({
      selector: selector.optional(),
      mtls: mtls.optional(),
      portLevelMtls: z.record(z.string(), mtls).optional(),
    })
    .strict()
    .superRefine((s, ctx) => {
      for (const port of Object.keys(s.portLevelMtls ?? {})) {
        const n = Number(port);
        if (!/^[0-9]+$/.test(port) || n < 1 || n > 65535)
          ctx.addIssue({
            code: 'custom',
            path: ['portLevelMtls', port],
            message: `port "${port}" out of range 1-65535`,
          });
      }
      // istio validation: port level mTLS needs a workload selector.
      if (
        Object.keys(s.portLevelMtls ?? {}).length > 0 &&
        Object.keys(s.selector?.matchLabels ?? {}).length === 0
      )
        ctx.addIssue({
          code: 'custom',
          path: ['portLevelMtls'],
          message: 'portLevelMtls requires a workload selector',
        });
    });
  return { authorizationPolicySpec, peerAuthenticationSpec };
}

let specs: ReturnType<typeof buildSpecs> | undefined;
const builtSpecs = () => {
  specs ??= buildSpecs();
  return specs;
};
export const authorizationPolicySpec = z.lazy(() => builtSpecs().authorizationPolicySpec);
export const peerAuthenticationSpec = z.lazy(() => builtSpecs().peerAuthenticationSpec);

/**
 * Warnings for values Istio accepts but that can never match. A principal written with `spiffe://`
 * is the classic: ztunnel strips the scheme from the peer identity before comparing, so the value
 * never matches. We keep it as written (as Istio does): dropping it could turn an ALLOW that denies
 * everyone else into an ALLOW of everything.
 */
export function authorizationPolicyWarnings(spec: z.infer<typeof authorizationPolicySpec>): string[] {
  const out: string[] = [];
  spec.rules?.forEach((r, ri) => {
    r.from?.forEach((f, fi) => {
      for (const field of ['principals', 'notPrincipals'] as const) {
        f.source?.[field]?.forEach((p, pi) => {
          if (p.startsWith('spiffe://'))
            out.push(
              `spec.rules[${ri}].from[${fi}].source.${field}[${pi}]: "${p}" starts with spiffe:// and can never match (Istio principals omit the scheme); kept as written`,
            );
        });
      }
    });
    r.when?.forEach((c, ci) => {
      if (c.key !== 'source.principal') return;
      for (const field of ['values', 'notValues'] as const) {
        c[field]?.forEach((p, pi) => {
          if (p.startsWith('spiffe://'))
            out.push(
              `spec.rules[${ri}].when[${ci}].${field}[${pi}]: "${p}" starts with spiffe:// and can never match (Istio principals omit the scheme); kept as written`,
            );
        });
      }
    });
  });
  return out;
}

// SPIFFE identities as Istio uses them: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
// istio/istio pkg/spiffe: the path has exactly these four segments; anything else is not a workload identity.

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

export interface SpiffeId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

/** A SPIFFE ID string that does not have Istio's workload shape; `reason` says what is malformed. */
export class InvalidSpiffeId extends Error {
  readonly code = 'INVALID_SPIFFE_ID';
  constructor(
    readonly input: string,
    readonly reason: string,
  ) {
    super(`invalid SPIFFE ID ${JSON.stringify(input)}: ${reason}`);
    this.name = 'InvalidSpiffeId';
  }
}

// RFC 1123 label-ish names as Kubernetes allows for namespaces and service accounts (DNS subdomain for SAs).
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
// SPIFFE spec: trust domain is lowercase letters, digits, dots, dashes and underscores.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;

export function validateTrustDomain(td: string): string | undefined {
  if (td.length === 0) return 'trust domain is empty';
  if (td.length > 255) return 'trust domain is longer than 255 characters';
  if (!TRUST_DOMAIN.test(td))
    return `trust domain "${td}" may only hold lowercase letters, digits, ".", "-" and "_"`;
  return undefined;
}

function validateName(kind: string, name: string): string | undefined {
  if (name.length === 0) return `${kind} is empty`;
  if (name.length > 253) return `${kind} "${name}" is longer than 253 characters`;
  if (!K8S_NAME.test(name)) return `${kind} "${name}" is not a valid Kubernetes name`;
  return undefined;
}

/** Parses `spiffe://td/ns/NS/sa/SA`; throws InvalidSpiffeId naming the malformed part. */
export function parseSpiffeId(input: string): SpiffeId {
  const prefix = 'spiffe://';
  if (!input.startsWith(prefix)) throw new InvalidSpiffeId(input, 'must start with "spiffe://"');
  const rest = input.slice(prefix.length);
  const slash = rest.indexOf('/');
  if (slash < 0) throw new InvalidSpiffeId(input, 'has no path after the trust domain');
  const trustDomain = rest.slice(0, slash);
  const tdError = validateTrustDomain(trustDomain);
  if (tdError) throw new InvalidSpiffeId(input, tdError);
  const segments = rest.slice(slash + 1).split('/');
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    throw new InvalidSpiffeId(input, 'path must be exactly /ns/<namespace>/sa/<service-account>');
  }
  const namespace = segments[1]!;
  const serviceAccount = segments[3]!;
  const nsError = validateName('namespace', namespace);
  if (nsError) throw new InvalidSpiffeId(input, nsError);
  const saError = validateName('service account', serviceAccount);
  if (saError) throw new InvalidSpiffeId(input, saError);
  return { trustDomain, namespace, serviceAccount };
}

export function tryParseSpiffeId(input: string): SpiffeId | undefined {
  try {
    return parseSpiffeId(input);
  } catch {
    return undefined;
  }
}

export function formatSpiffeId(id: SpiffeId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Istio's AuthorizationPolicy principal form: the SPIFFE ID without `spiffe://`. */
export function principalOf(id: SpiffeId): string {
  return `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

export function sameIdentity(a: SpiffeId, b: SpiffeId): boolean {
  return (
    a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount
  );
}

/**
 * Accepts the CLI's forms: a full SPIFFE ID, `ns/sa` (trust domain defaulted), or a principal
 * `td/ns/x/sa/y`. Returns undefined for `none` (plaintext).
 */
export function parseIdentityArg(input: string, trustDomain = DEFAULT_TRUST_DOMAIN): SpiffeId | undefined {
  if (input === 'none' || input === '') return undefined;
  if (input.startsWith('spiffe://')) return parseSpiffeId(input);
  const parts = input.split('/');
  if (parts.length === 2) return parseSpiffeId(`spiffe://${trustDomain}/ns/${parts[0]}/sa/${parts[1]}`);
  return parseSpiffeId(`spiffe://${input}`);
}

/**
 * The URI SANs in Node's rendering of a certificate's SAN extension (`X509Certificate.subjectAltName`,
 * `PeerCertificate.subjectaltname`: "URI:a, DNS:b, ..."), in order. Node JSON-quotes a value holding a
 * separator, so a quoted value is unquoted (and skipped if malformed); a SPIFFE ID never needs it.
 */
export function uriSansOfText(subjectAltName: string | undefined): string[] {
  const out: string[] = [];
  for (const entry of subjectAltName?.split(', ') ?? []) {
    if (!entry.startsWith('URI:')) continue;
    let value = entry.slice(4);
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        continue;
      }
    }
    out.push(value);
  }
  return out;
}

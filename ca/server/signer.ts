// Signs workload certificates exactly as istiod does (istio/istio security/pkg/pki/util/generate_cert.go
// genCertTemplateFromCSR + san.go): empty subject, one critical URI SAN, digitalSignature+keyEncipherment,
// EKU serverAuth+clientAuth, CA:FALSE, NotBefore now−2 min, NotAfter now+TTL clamped to the CA's own
// NotAfter, random 128-bit serial. Only the CSR's public key is used; the SAN is the identity the caller
// was authorized for.
import { createPublicKey } from 'node:crypto';
import * as x509 from '../x509.js';
import { type SpiffeId, formatSpiffeId, validateTrustDomain } from '../../core/identity/spiffe.js';
import { type CertificateRequestOptions, createKeyAndCsr } from '../client/csr.js';
import { type WorkloadCertificate, parseWorkloadCertificate } from '../client/workload-certificate.js';
import { InvalidCaMaterial, InvalidCsr, InvalidTtl, WrongTrustDomain, CaError } from '../errors.js';
import { certificatesOf } from '../pem.js';
import { type CaKeyMaterial, randomSerialHex } from './root.js';
import { type SigningKey, importSigningKey } from './signing-key.js';

export const DEFAULT_WORKLOAD_CERT_TTL_SECONDS = 24 * 3600; // istio DEFAULT_WORKLOAD_CERT_TTL
export const MAX_WORKLOAD_CERT_TTL_SECONDS = 90 * 24 * 3600; // istio MAX_WORKLOAD_CERT_TTL
const CLOCK_SKEW_MS = 2 * 60_000; // istio generate_cert.go: NotBefore = now − 2 min

export interface SignerOptions {
  /** Trust domain this CA signs for. Default: the root's O= if it is a valid trust domain, else cluster.local. */
  trustDomain?: string;
  defaultTtlSeconds?: number;
  maxTtlSeconds?: number;
}

export interface SignOptions {
  identity: SpiffeId;
  /** ≤ 0 means the default (istio: validity_duration ≤ 0 → DEFAULT_WORKLOAD_CERT_TTL). */
  ttlSeconds: number;
}

/** A CSR that passed validation: its signature checks, its key is strong enough. */
export interface ValidatedCsr {
  request: x509.Pkcs10CertificateRequest;
  /** URI SANs the CSR asked for (informational: the CA decides the SAN). */
  uriSans: string[];
}

/** Parses and checks a PEM CSR; throws InvalidCsr saying which check failed. */
export async function validateCsr(csrPem: string): Promise<ValidatedCsr> {
  if (typeof csrPem !== 'string' || !csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----')) {
    throw new InvalidCsr('CSR is not a PEM "CERTIFICATE REQUEST" block');
  }
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new InvalidCsr(`CSR PEM cannot be parsed: ${(err as Error).message}`);
  }
  checkPublicKey(Buffer.from(request.publicKey.rawData));
  let ok = false;
  try {
    ok = await request.verify();
  } catch (err) {
    throw new InvalidCsr(`CSR signature cannot be checked: ${(err as Error).message}`);
  }
  if (!ok) throw new InvalidCsr('CSR signature is invalid');
  const uriSans: string[] = [];
  const san = request.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension | null;
  for (const n of san?.names.items ?? []) if (n.type === 'url') uriSans.push(n.value);
  return { request, uriSans };
}

function checkPublicKey(spki: Buffer): void {
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new InvalidCsr(`CSR public key cannot be read: ${(err as Error).message}`);
  }
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (d.namedCurve !== 'prime256v1' && d.namedCurve !== 'secp384r1')
      throw new InvalidCsr(`CSR key curve ${d.namedCurve} is not allowed (ECDSA P-256 or P-384)`);
    return;
  }
  if (key.asymmetricKeyType === 'rsa') {
    if ((d.modulusLength ?? 0) < 2048)
      throw new InvalidCsr(`CSR key is RSA-${d.modulusLength}, too weak (RSA needs at least 2048 bits)`);
    return;
  }
  throw new InvalidCsr(
    `CSR key type ${key.asymmetricKeyType} is not allowed (ECDSA P-256/P-384 or RSA >= 2048)`,
  );
}

function isSelfSigned(cert: x509.X509Certificate): boolean {
  return cert.subject === cert.issuer;
}

/** Signs workload certificates with one CA key material. Immutable: a CA reload makes a new Signer. */
export class Signer {
  readonly trustDomain: string;
  readonly caCert: x509.X509Certificate;
  readonly defaultTtlSeconds: number;
  readonly maxTtlSeconds: number;
  /** Intermediates appended after the leaf (roots removed). */
  private readonly intermediatesPem: string[];
  /** The last element of every response: all roots concatenated (istio: ztunnel trusts each root in it). */
  private readonly rootsBundlePem: string;
  private keyPromise: Promise<{ key: SigningKey; aki: x509.Extension }> | undefined;

  constructor(
    readonly ca: CaKeyMaterial,
    opts: SignerOptions = {},
  ) {
    try {
      this.caCert = new x509.X509Certificate(ca.certPem);
    } catch (err) {
      throw new InvalidCaMaterial(`CA certificate cannot be parsed: ${(err as Error).message}`);
    }
    const roots = certificatesOf(ca.rootsPem);
    if (roots.length === 0) throw new InvalidCaMaterial('CA material has no root certificate');
    this.rootsBundlePem = roots.join('');
    const rootSet = new Set(roots.map((r) => r.trim()));
    this.intermediatesPem = certificatesOf(ca.certChainPem).filter(
      (c) => !rootSet.has(c.trim()) && !isSelfSigned(new x509.X509Certificate(c)),
    );
    const bc = this.caCert.getExtension(x509.BasicConstraintsExtension);
    if (!bc?.ca) throw new InvalidCaMaterial('CA certificate is not a CA (BasicConstraints CA:TRUE missing)');
    this.trustDomain = opts.trustDomain ?? trustDomainOf(this.caCert, roots);
    const tdError = validateTrustDomain(this.trustDomain);
    if (tdError) throw new InvalidCaMaterial(`signer trust domain: ${tdError}`);
    this.defaultTtlSeconds = opts.defaultTtlSeconds ?? DEFAULT_WORKLOAD_CERT_TTL_SECONDS;
    this.maxTtlSeconds = opts.maxTtlSeconds ?? MAX_WORKLOAD_CERT_TTL_SECONDS;
  }

  /** Imports and checks the key (matches the CA cert). Called lazily by signCsr; call it to fail early. */
  ready(): Promise<void> {
    return this.loadKey().then(() => undefined);
  }

  private loadKey(): Promise<{ key: SigningKey; aki: x509.Extension }> {
    this.keyPromise ??= (async () => {
      const key = await importSigningKey(this.ca.keyPem, 'CA key');
      const certSpki = Buffer.from(this.caCert.publicKey.rawData);
      if (!certSpki.equals(key.spkiDer))
        throw new InvalidCaMaterial('CA key does not match the CA certificate');
      const aki = await x509.AuthorityKeyIdentifierExtension.create(key.publicKey);
      return { key, aki };
    })();
    this.keyPromise.catch(() => {
      this.keyPromise = undefined;
    });
    return this.keyPromise;
  }

  /** The chain every response ends with: intermediates then the roots bundle. */
  chainTail(): string[] {
    return [...this.intermediatesPem, this.rootsBundlePem];
  }

  rootsPem(): string[] {
    return certificatesOf(this.rootsBundlePem);
  }

  /** Resolves a requested TTL: ≤0 → default; above max → InvalidTtl. */
  resolveTtl(ttlSeconds: number): number {
    if (!Number.isFinite(ttlSeconds)) throw new InvalidTtl(`TTL ${ttlSeconds} is not a number of seconds`);
    if (ttlSeconds <= 0) return this.defaultTtlSeconds;
    if (ttlSeconds > this.maxTtlSeconds)
      throw new InvalidTtl(`requested TTL ${ttlSeconds}s is above the maximum ${this.maxTtlSeconds}s`);
    return ttlSeconds;
  }

  /** Validates the CSR and signs a leaf for `identity`. Returns [leaf, intermediates..., roots bundle]. */
  async signCsr(csrPem: string, opts: SignOptions): Promise<string[]> {
    const { request } = await validateCsr(csrPem);
    return this.signPublicKey(request.publicKey, opts);
  }

  /** Signs an already-validated public key. */
  async signPublicKey(publicKey: x509.PublicKey, opts: SignOptions): Promise<string[]> {
    if (opts.identity.trustDomain !== this.trustDomain) {
      throw new WrongTrustDomain(
        `identity ${formatSpiffeId(opts.identity)} is in trust domain "${opts.identity.trustDomain}", this CA signs for "${this.trustDomain}"`,
      );
    }
    const ttl = this.resolveTtl(opts.ttlSeconds);
    const { key, aki } = await this.loadKey();
    const now = Date.now();
    const caNotAfter = this.caCert.notAfter.getTime();
    // istio ca.go: signing with an expired CA is refused; NotAfter is clamped to the CA's.
    if (caNotAfter <= now) throw new CaError('CA_EXPIRED', 'the CA signing certificate has expired');
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerialHex(),
      subject: new x509.Name([]),
      issuer: this.caCert.subjectName,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(Math.min(now + ttl * 1000, caNotAfter)),
      publicKey,
      signingKey: key.privateKey,
      signingAlgorithm: key.algorithm,
      extensions: [
        // istio san.go: critical because the subject is empty (RFC 5280 §4.2.1.6).
        new x509.SubjectAlternativeNameExtension(
          [{ type: 'url', value: formatSpiffeId(opts.identity) }],
          true,
        ),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.BasicConstraintsExtension(false, undefined, true),
        aki,
      ],
    });
    return [`${leaf.toString('pem')}\n`, ...this.chainTail()];
  }
}

function trustDomainOf(caCert: x509.X509Certificate, roots: string[]): string {
  for (const cert of [caCert, ...roots.map((r) => new x509.X509Certificate(r))]) {
    const o = cert.subjectName.getField('2.5.4.10')[0];
    if (o && !validateTrustDomain(o)) return o;
  }
  return 'cluster.local';
}

/**
 * Makes a key and CSR locally and signs them: for tests and `ambit ca issue`, without a running CA.
 */
export async function issueWorkloadCertificate(
  signer: Signer,
  identity: SpiffeId,
  ttlSeconds: number,
  csrOptions: CertificateRequestOptions = {},
): Promise<WorkloadCertificate> {
  const { keyPem, csrPem } = await createKeyAndCsr(identity, csrOptions);
  const chain = await signer.signCsr(csrPem, { identity, ttlSeconds });
  return parseWorkloadCertificate(identity, keyPem, chain);
}

// Signs workload certificates exactly as istiod does (istio/istio security/pkg/pki/util/generate_cert.go
// genCertTemplateFromCSR + san.go): empty subject, one critical URI SAN, digitalSignature+keyEncipherment,
// EKU serverAuth+clientAuth, CA:FALSE, NotBefore now−2 min, NotAfter now+TTL clamped to the CA's own
// NotAfter, random 128-bit serial. Only the CSR's public key is used; the SAN is the identity the caller
// was authorized for. The leaf is written with a small DER encoder and signed with node:crypto: the
// generic ASN.1 library path costs ~2 ms per certificate, this one a fraction of that.
import {
  type KeyObject,
  X509Certificate,
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign,
} from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { type SpiffeId, formatSpiffeId, validateTrustDomain } from '../../core/identity/spiffe.js';
import { type CertificateRequestOptions, createKeyAndCsr } from '../client/csr.js';
import { type WorkloadCertificate, parseWorkloadCertificate } from '../client/workload-certificate.js';
import {
  NULL,
  TRUE,
  bitString,
  childrenOf,
  content,
  octetString,
  oid,
  positiveInteger,
  raw,
  readTlv,
  seq,
  time,
  tlv,
} from '../der.js';
import { CaError, InvalidCaMaterial, InvalidTtl, WrongTrustDomain } from '../errors.js';
import { certificatesOf, derToPem } from '../pem.js';
import * as x509 from '../x509.js';
import { validateCsr } from './csr-check.js';
import type { CaKeyMaterial } from './root.js';

export { validateCsr, type ValidatedCsr } from './csr-check.js';

export const DEFAULT_WORKLOAD_CERT_TTL_SECONDS = 24 * 3600; // istio DEFAULT_WORKLOAD_CERT_TTL
export const MAX_WORKLOAD_CERT_TTL_SECONDS = 90 * 24 * 3600; // istio MAX_WORKLOAD_CERT_TTL
const CLOCK_SKEW_MS = 2 * 60_000; // istio generate_cert.go: NotBefore = now − 2 min

export interface SignerOptions {
  /** Trust domain this CA signs for. Default: the CA's or a root's O= if it is a valid trust domain, else cluster.local. */
  trustDomain?: string;
  /** Used when a request asks for ≤ 0 s. Default 24 h. */
  defaultTtlSeconds?: number;
  /** A request above this is refused (not clamped). Default 90 days. */
  maxTtlSeconds?: number;
}

export interface SignOptions {
  identity: SpiffeId;
  /** ≤ 0 means the default (istio: validity_duration ≤ 0 → DEFAULT_WORKLOAD_CERT_TTL). */
  ttlSeconds: number;
}

// Leaf extensions that never change, pre-encoded.
const EXT_KEY_USAGE = seq(oid('2.5.29.15'), TRUE, octetString(bitString(Buffer.from([0xa0]), 5))); // digitalSignature|keyEncipherment
const EXT_EXT_KEY_USAGE = seq(
  oid('2.5.29.37'),
  octetString(seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))), // serverAuth, clientAuth
);
const EXT_BASIC_CONSTRAINTS = seq(oid('2.5.29.19'), TRUE, octetString(seq())); // CA:FALSE, critical
const OID_SAN = oid('2.5.29.17');
const VERSION_3 = tlv(0xa0, tlv(0x02, Buffer.from([2])));
const EMPTY_NAME = seq();

interface SigningAlg {
  hash: string;
  algorithmIdentifier: Buffer;
}

function signingAlgFor(key: KeyObject, where: string): SigningAlg {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (d.namedCurve === 'prime256v1')
      return { hash: 'sha256', algorithmIdentifier: seq(oid('1.2.840.10045.4.3.2')) };
    if (d.namedCurve === 'secp384r1')
      return { hash: 'sha384', algorithmIdentifier: seq(oid('1.2.840.10045.4.3.3')) };
    throw new InvalidCaMaterial(`${where}: EC curve ${d.namedCurve} is not supported (P-256 or P-384)`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    if ((d.modulusLength ?? 0) < 2048)
      throw new InvalidCaMaterial(`${where}: RSA key of ${d.modulusLength} bits is too weak (need >= 2048)`);
    return { hash: 'sha256', algorithmIdentifier: seq(oid('1.2.840.113549.1.1.11'), NULL) };
  }
  throw new InvalidCaMaterial(`${where}: key type ${key.asymmetricKeyType} is not supported (EC or RSA)`);
}

function isSelfSigned(pem: string): boolean {
  const c = new X509Certificate(pem);
  return c.subject === c.issuer && c.checkIssued(c);
}

/** The DER of a certificate's subject Name, read from its TBSCertificate. */
function subjectNameDer(certDer: Buffer): Buffer {
  const top = readTlv(certDer, 0);
  const tbs = childrenOf(certDer, top)[0]!;
  const fields = childrenOf(certDer, tbs);
  const base = fields[0]?.tag === 0xa0 ? 1 : 0; // explicit version present
  return Buffer.from(raw(certDer, fields[base + 4]!)); // serial, sigalg, issuer, validity, subject
}

/** Key identifier for the AKI: the CA's SKI, or RFC 5280 §4.2.1.2 method 1 (SHA-1 of the key bits). */
function caKeyId(cert: x509.X509Certificate, spkiDer: Buffer): Buffer {
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return Buffer.from(ski.keyId, 'hex');
  const spki = readTlv(spkiDer, 0);
  const bits = childrenOf(spkiDer, spki)[1]!;
  return createHash('sha1').update(content(spkiDer, bits).subarray(1)).digest();
}

/** Signs workload certificates with one CA key material. Immutable: a CA reload makes a new Signer. */
export class Signer {
  readonly trustDomain: string;
  readonly caCert: X509Certificate;
  readonly defaultTtlSeconds: number;
  readonly maxTtlSeconds: number;
  /** Intermediates appended after the leaf (roots removed). */
  private readonly intermediatesPem: string[];
  /** The last element of every response: all roots concatenated (istio: ztunnel trusts each root in it). */
  private readonly rootsBundlePem: string;
  private readonly key: KeyObject;
  private readonly alg: SigningAlg;
  private readonly issuerName: Buffer;
  private readonly akiExtension: Buffer;
  private readonly caNotAfterMs: number;

  constructor(
    readonly ca: CaKeyMaterial,
    opts: SignerOptions = {},
  ) {
    let peculiarCert: x509.X509Certificate;
    try {
      this.caCert = new X509Certificate(ca.certPem);
      peculiarCert = new x509.X509Certificate(ca.certPem);
    } catch (err) {
      throw new InvalidCaMaterial(`CA certificate cannot be parsed: ${(err as Error).message}`);
    }
    if (!this.caCert.ca)
      throw new InvalidCaMaterial('CA certificate is not a CA (BasicConstraints CA:TRUE missing)');
    try {
      this.key = createPrivateKey(ca.keyPem);
    } catch (err) {
      throw new InvalidCaMaterial(`CA key is not a readable PEM private key (${(err as Error).message})`);
    }
    const certSpki = this.caCert.publicKey.export({ type: 'spki', format: 'der' });
    const keySpki = createPublicKey(this.key).export({ type: 'spki', format: 'der' });
    if (!certSpki.equals(keySpki)) throw new InvalidCaMaterial('CA key does not match the CA certificate');
    this.alg = signingAlgFor(this.key, 'CA key');

    const roots = certificatesOf(ca.rootsPem);
    if (roots.length === 0) throw new InvalidCaMaterial('CA material has no root certificate');
    for (const r of roots) {
      try {
        new X509Certificate(r);
      } catch (err) {
        throw new InvalidCaMaterial(`a root certificate cannot be parsed: ${(err as Error).message}`);
      }
    }
    this.rootsBundlePem = roots.join('');
    const rootSet = new Set(roots.map((r) => r.trim()));
    this.intermediatesPem = certificatesOf(ca.certChainPem).filter(
      (c) => !rootSet.has(c.trim()) && !isSelfSigned(c),
    );

    this.trustDomain = opts.trustDomain ?? trustDomainOf(peculiarCert, roots);
    const tdError = validateTrustDomain(this.trustDomain);
    if (tdError) throw new InvalidCaMaterial(`signer trust domain: ${tdError}`);
    this.defaultTtlSeconds = opts.defaultTtlSeconds ?? DEFAULT_WORKLOAD_CERT_TTL_SECONDS;
    this.maxTtlSeconds = opts.maxTtlSeconds ?? MAX_WORKLOAD_CERT_TTL_SECONDS;
    this.issuerName = subjectNameDer(this.caCert.raw);
    this.akiExtension = seq(oid('2.5.29.35'), octetString(seq(tlv(0x80, caKeyId(peculiarCert, certSpki)))));
    this.caNotAfterMs = new Date(this.caCert.validTo).getTime();
  }

  /** Kept for callers that want to fail early; all checks already ran in the constructor. */
  ready(): Promise<void> {
    return Promise.resolve();
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
    const { spkiDer } = validateCsr(csrPem);
    return this.signSpki(spkiDer, opts);
  }

  /** Signs a leaf for an already-validated SubjectPublicKeyInfo (DER). */
  signSpki(spkiDer: Buffer, opts: SignOptions): string[] {
    if (opts.identity.trustDomain !== this.trustDomain) {
      throw new WrongTrustDomain(
        `identity ${formatSpiffeId(opts.identity)} is in trust domain "${opts.identity.trustDomain}", this CA signs for "${this.trustDomain}"`,
      );
    }
    const uri = tlv(0x86, Buffer.from(formatSpiffeId(opts.identity), 'ascii'));
    return this.signLeaf(spkiDer, [uri], this.resolveTtl(opts.ttlSeconds));
  }

  /**
   * A TLS serving certificate for the CA's own gRPC endpoint (istiod: DNS SAN
   * istiod.istio-system.svc, which ztunnel verifies against the mesh root).
   */
  signServingSpki(
    spkiDer: Buffer,
    opts: { dnsNames: string[]; ipAddresses: string[]; ttlSeconds: number },
  ): string[] {
    const names = [
      ...opts.dnsNames.map((d) => tlv(0x82, Buffer.from(d, 'ascii'))),
      ...opts.ipAddresses.map((ip) => tlv(0x87, ipBytes(ip))),
    ];
    if (names.length === 0) throw new Error('serving certificate needs at least one DNS name or IP');
    return this.signLeaf(spkiDer, names, opts.ttlSeconds);
  }

  private signLeaf(spkiDer: Buffer, generalNames: Buffer[], ttl: number): string[] {
    const now = Date.now();
    // istio ca.go: signing with an expired CA is refused; NotAfter is clamped to the CA's.
    if (this.caNotAfterMs <= now) throw new CaError('CA_EXPIRED', 'the CA signing certificate has expired');
    const notAfter = new Date(Math.min(now + ttl * 1000, this.caNotAfterMs));
    const san = seq(OID_SAN, TRUE, octetString(seq(...generalNames)));
    const tbs = seq(
      VERSION_3,
      positiveInteger(randomBytes(16)), // 128-bit random serial (istio generate_cert.go)
      this.alg.algorithmIdentifier,
      this.issuerName,
      seq(time(new Date(now - CLOCK_SKEW_MS)), time(notAfter)),
      EMPTY_NAME, // istio: subject empty; the identity lives only in the critical SAN
      spkiDer,
      tlv(0xa3, seq(san, EXT_KEY_USAGE, EXT_EXT_KEY_USAGE, EXT_BASIC_CONSTRAINTS, this.akiExtension)),
    );
    const signature = sign(this.alg.hash, tbs, this.key);
    const cert = seq(tbs, this.alg.algorithmIdentifier, bitString(signature));
    return [derToPem(cert, 'CERTIFICATE'), ...this.chainTail()];
  }
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (isIPv6(ip)) {
    const parsed = ipaddr.parse(ip);
    return Buffer.from(parsed.toByteArray());
  }
  throw new Error(`"${ip}" is not an IP address`);
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

// Signs workload certificates exactly as istiod does (istio/istio security/pkg/pki/util/generate_cert.go
// genCertTemplateFromCSR + san.go): empty subject, one critical URI SAN, digitalSignature+keyEncipherment,
// EKU serverAuth+clientAuth, CA:FALSE, NotBefore now−2 min, NotAfter now+TTL clamped to the CA's own
// NotAfter, random 128-bit serial. Only the CSR's public key is used; the SAN is the identity the caller
// was authorized for. The TBSCertificate is built with @peculiar/asn1-x509 and DER-encoded by
// @peculiar/asn1-schema; node:crypto signs it. Everything that is the same for every leaf (algorithm,
// issuer, fixed extensions, AKI) is built once per Signer so a leaf costs one encode and one signature.
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
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_kp_clientAuth,
  id_kp_serverAuth,
} from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import ipaddr from 'ipaddr.js';
import { type SpiffeId, formatSpiffeId, validateTrustDomain } from '../../core/identity/spiffe.js';
import { type CertificateRequestOptions, createKeyAndCsr } from '../client/csr.js';
import { type WorkloadCertificate, parseWorkloadCertificate } from '../client/workload-certificate.js';
import { Encoded } from '../asn1.js';
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

function extension(extnID: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

// Leaf extensions that never change (istio generate_cert.go: KeyUsage and BasicConstraints critical,
// ExtKeyUsage not), and the empty subject.
const EXT_KEY_USAGE = Encoded.of(
  extension(
    id_ce_keyUsage,
    true,
    new KeyUsage(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment),
  ),
);
const EXT_EXT_KEY_USAGE = Encoded.of(
  extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth, id_kp_clientAuth])),
);
const EXT_BASIC_CONSTRAINTS = Encoded.of(
  extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
);
const EMPTY_NAME = Encoded.of(new Name());

interface SigningAlg {
  hash: string;
  algorithmIdentifier: AlgorithmIdentifier;
}

function signingAlgFor(key: KeyObject, where: string): SigningAlg {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    // RFC 5758 §3.2: ECDSA AlgorithmIdentifiers have no parameters.
    if (d.namedCurve === 'prime256v1')
      return {
        hash: 'sha256',
        algorithmIdentifier: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }),
      };
    if (d.namedCurve === 'secp384r1')
      return {
        hash: 'sha384',
        algorithmIdentifier: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.3' }),
      };
    throw new InvalidCaMaterial(`${where}: EC curve ${d.namedCurve} is not supported (P-256 or P-384)`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    if ((d.modulusLength ?? 0) < 2048)
      throw new InvalidCaMaterial(`${where}: RSA key of ${d.modulusLength} bits is too weak (need >= 2048)`);
    // RFC 4055 §5: sha256WithRSAEncryption carries an explicit NULL parameter.
    return {
      hash: 'sha256',
      algorithmIdentifier: new AlgorithmIdentifier({
        algorithm: '1.2.840.113549.1.1.11',
        parameters: new asn1js.Null().toBER(),
      }),
    };
  }
  throw new InvalidCaMaterial(`${where}: key type ${key.asymmetricKeyType} is not supported (EC or RSA)`);
}

function isSelfSigned(pem: string): boolean {
  const c = new X509Certificate(pem);
  return c.subject === c.issuer && c.checkIssued(c);
}

/** Key identifier for the AKI: the CA's SKI, or RFC 5280 §4.2.1.2 method 1 (SHA-1 of the key bits). */
function caKeyId(cert: x509.X509Certificate, spki: SubjectPublicKeyInfo): Buffer {
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return Buffer.from(ski.keyId, 'hex');
  return createHash('sha1').update(new Uint8Array(spki.subjectPublicKey)).digest();
}

/**
 * A positive INTEGER's content for a random serial (istio: rand.Int(rand.Reader, 2^128)); DER wants
 * the minimal two's-complement form, which asn1js derives from the BigInt.
 */
function randomSerial(): ArrayBuffer {
  const n = BigInt(`0x${randomBytes(16).toString('hex')}`);
  const v = asn1js.Integer.fromBigInt(n === 0n ? 1n : n).valueBlock.valueHexView;
  return v.slice().buffer;
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
  private readonly algorithmDer: Encoded;
  private readonly issuerName: Encoded;
  private readonly akiExtension: Encoded;
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
    this.algorithmDer = Encoded.of(this.alg.algorithmIdentifier);

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
    this.issuerName = issuerNameOf(this.caCert.raw);
    this.akiExtension = Encoded.of(
      extension(
        id_ce_authorityKeyIdentifier,
        false,
        new AuthorityKeyIdentifier({
          keyIdentifier: new KeyIdentifier(
            caKeyId(peculiarCert, AsnConvert.parse(certSpki, SubjectPublicKeyInfo)),
          ),
        }),
      ),
    );
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
    const uri = new GeneralName({ uniformResourceIdentifier: formatSpiffeId(opts.identity) });
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
      ...opts.dnsNames.map((d) => new GeneralName({ dNSName: d })),
      ...opts.ipAddresses.map((ip) => new GeneralName({ iPAddress: canonicalIp(ip) })),
    ];
    if (names.length === 0) throw new Error('serving certificate needs at least one DNS name or IP');
    return this.signLeaf(spkiDer, names, opts.ttlSeconds);
  }

  private signLeaf(spkiDer: Buffer, generalNames: GeneralName[], ttl: number): string[] {
    const now = Date.now();
    // istio ca.go: signing with an expired CA is refused; NotAfter is clamped to the CA's.
    if (this.caNotAfterMs <= now) throw new CaError('CA_EXPIRED', 'the CA signing certificate has expired');
    const notAfter = new Date(Math.min(now + ttl * 1000, this.caNotAfterMs));
    const tbs = new TBSCertificate({
      version: Version.v3,
      serialNumber: randomSerial(), // 128-bit random serial (istio generate_cert.go)
      signature: this.algorithmDer.as<AlgorithmIdentifier>(),
      issuer: this.issuerName.as<Name>(),
      // Time picks UTCTime through 2049 and GeneralizedTime after (RFC 5280 §4.1.2.5).
      validity: new Validity({ notBefore: new Date(now - CLOCK_SKEW_MS), notAfter }),
      subject: EMPTY_NAME.as<Name>(), // istio: subject empty; the identity lives only in the critical SAN
      // The key as the CSR carried it (validateCsr checked it; Go's x509 copies RawSubjectPublicKeyInfo too).
      subjectPublicKeyInfo: new Encoded(spkiDer).as<SubjectPublicKeyInfo>(),
      extensions: new Extensions([
        // RFC 5280 §4.2.1.6: with an empty subject the SAN must be critical.
        extension(id_ce_subjectAltName, true, new SubjectAlternativeName(generalNames)),
        EXT_KEY_USAGE.as<Extension>(),
        EXT_EXT_KEY_USAGE.as<Extension>(),
        EXT_BASIC_CONSTRAINTS.as<Extension>(),
        this.akiExtension.as<Extension>(),
      ]),
    });
    const tbsDer = new Uint8Array(AsnConvert.serialize(tbs));
    const signature = sign(this.alg.hash, tbsDer, this.key);
    const cert = new Certificate({
      tbsCertificate: new Encoded(tbsDer).as<TBSCertificate>(), // the bytes just signed, not a re-encoding
      signatureAlgorithm: this.algorithmDer.as<AlgorithmIdentifier>(),
      signatureValue: new Uint8Array(signature).buffer,
    });
    return [derToPem(AsnConvert.serialize(cert), 'CERTIFICATE'), ...this.chainTail()];
  }
}

/**
 * The CA's subject Name, which becomes every leaf's issuer. Re-encoded from the parsed certificate and
 * required to be the certificate's own bytes, so leaves chain by exact name match (RFC 5280 §7.1).
 */
function issuerNameOf(caDer: Buffer): Encoded {
  const cert = AsnConvert.parse(caDer, Certificate);
  const name = Encoded.of(cert.tbsCertificate.subject);
  const tbsRaw = cert.tbsCertificateRaw ? Buffer.from(cert.tbsCertificateRaw) : Buffer.alloc(0);
  if (tbsRaw.indexOf(name.der) < 0)
    throw new InvalidCaMaterial('CA certificate subject is not DER-encoded (leaves could not chain to it)');
  return name;
}

/** IP SAN text in a form the ASN.1 IP converter reads (IPv6 fully expanded, IPv4-mapped included). */
function canonicalIp(ip: string): string {
  if (isIPv4(ip)) return ip;
  if (isIPv6(ip)) return ipaddr.parse(ip).toNormalizedString();
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

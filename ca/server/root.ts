// The CA's own key material: a self-signed root made on first start (istio/istio ca.go
// NewSelfSignedIstioCAOptions: O=<trust domain>, CA:TRUE, certSign; we use ECDSA P-256 instead of
// RSA-2048 — faster, and accepted by every TLS stack ztunnel peers use), same-key renewal, and an
// intermediate generator (for tests and for operators building a `cacerts` directory).
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '../x509.js';
import { importSigningKey } from './signing-key.js';

/** What a CA signs with. Same shape for a self-signed root and a plugged-in intermediate. */
export interface CaKeyMaterial {
  /** The signing (issuing) certificate. */
  certPem: string;
  /** Its private key (PKCS#8 PEM for keys we make; any PEM form when plugged in). */
  keyPem: string;
  /** Issuing certificate up to, excluding, the root; empty when the signing cert is the root itself. */
  certChainPem: string[];
  /** Every root to distribute and trust (several during a root rotation). */
  rootsPem: string[];
}

export const DEFAULT_ROOT_TTL_DAYS = 3650; // istio CITADEL_SELF_SIGNED_CA_CERT_TTL
const DAY_MS = 86_400_000;

export function randomSerialHex(): string {
  // 128-bit random serial (istio generate_cert.go); the x509 library adds a 0x00 pad when the top bit is set.
  return randomBytes(16).toString('hex');
}

async function newEcKeyPair(): Promise<{ keyPem: string; keys: webcrypto.CryptoKeyPair }> {
  const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { keys, keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

function caExtensions(pathLen?: number): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(true, pathLen, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
      true,
    ),
  ];
}

/** A fresh self-signed root: ECDSA P-256, subject O=<trust domain>, 10 years by default. */
export async function createSelfSignedRoot(opts: {
  trustDomain: string;
  ttlDays?: number;
}): Promise<CaKeyMaterial> {
  const { keys, keyPem } = await newEcKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: new x509.Name([{ '2.5.4.10': [opts.trustDomain] }]),
    notBefore: new Date(now - 2 * 60_000),
    notAfter: new Date(now + (opts.ttlDays ?? DEFAULT_ROOT_TTL_DAYS) * DAY_MS),
    keys: keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [...caExtensions(), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
  });
  const certPem = cert.toString('pem');
  return { certPem: `${certPem}\n`, keyPem, certChainPem: [], rootsPem: [`${certPem}\n`] };
}

/**
 * Re-issues a self-signed root with the SAME key and subject and a new validity (istio ca.go root
 * rotator). Leaves signed by the old root keep verifying against the new one: chain building
 * matches on subject + key identifier, and the signature checks with the unchanged public key.
 * The old root stays in the trust bundle until it expires.
 */
export async function renewSelfSignedRoot(
  ca: CaKeyMaterial,
  opts: { ttlDays?: number } = {},
): Promise<CaKeyMaterial> {
  const old = new x509.X509Certificate(ca.certPem);
  const key = await importSigningKey(ca.keyPem, 'root key');
  const lifetime = old.notAfter.getTime() - old.notBefore.getTime();
  const now = Date.now();
  const ttlMs = opts.ttlDays !== undefined ? opts.ttlDays * DAY_MS : lifetime;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: old.subjectName,
    notBefore: new Date(now - 2 * 60_000),
    notAfter: new Date(now + ttlMs),
    keys: { privateKey: key.privateKey, publicKey: key.publicKey },
    signingAlgorithm: key.algorithm,
    extensions: [...caExtensions(), await x509.SubjectKeyIdentifierExtension.create(key.publicKey)],
  });
  const certPem = `${cert.toString('pem')}\n`;
  const stillValidOld = ca.rootsPem.filter((r) => new x509.X509Certificate(r).notAfter.getTime() > now);
  return { certPem, keyPem: ca.keyPem, certChainPem: [], rootsPem: [certPem, ...stillValidOld] };
}

/**
 * An intermediate CA signed by `parent` (P-256, CA:TRUE pathlen 0), shaped as Istio's `cacerts`:
 * certChainPem = [intermediate, parent's chain...], rootsPem = parent's roots.
 */
export async function createIntermediateCa(
  parent: CaKeyMaterial,
  opts: { commonName?: string; organization?: string; ttlDays?: number } = {},
): Promise<CaKeyMaterial> {
  const parentCert = new x509.X509Certificate(parent.certPem);
  const parentKey = await importSigningKey(parent.keyPem, 'parent CA key');
  const { keys, keyPem } = await newEcKeyPair();
  const now = Date.now();
  const name: x509.JsonName = [];
  if (opts.organization) name.push({ '2.5.4.10': [opts.organization] });
  name.push({ '2.5.4.3': [opts.commonName ?? 'Ambit Intermediate CA'] });
  const notAfter = Math.min(now + (opts.ttlDays ?? 365) * DAY_MS, parentCert.notAfter.getTime());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: new x509.Name(name),
    issuer: parentCert.subjectName,
    notBefore: new Date(now - 2 * 60_000),
    notAfter: new Date(notAfter),
    publicKey: keys.publicKey,
    signingKey: parentKey.privateKey,
    signingAlgorithm: parentKey.algorithm,
    extensions: [
      ...caExtensions(0),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(parentKey.publicKey),
    ],
  });
  const certPem = `${cert.toString('pem')}\n`;
  return { certPem, keyPem, certChainPem: [certPem, ...parent.certChainPem], rootsPem: [...parent.rootsPem] };
}

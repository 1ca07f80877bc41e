// A workload's certificate as the client holds it, built from a CA response
// ([leaf, intermediates..., roots bundle], istio/istio server.go) and checked the way
// istio/ztunnel caclient.rs does: the leaf's URI SAN must be exactly the identity asked for.
// node:crypto's X509Certificate, not @peculiar/x509: reading a leaf's SAN, validity and serial is all
// this needs, and @peculiar/x509 with its dependencies (tsyringe, reflect-metadata, the asn1 CMS/PFX/
// RSA schemas) held ~2 MiB of a ztunnel's idle heap, which fetches certificates at start.
import { X509Certificate } from 'node:crypto';
import { type SpiffeId, formatSpiffeId, uriSansOfText } from '../../core/identity/spiffe.js';
import { CertificateMismatch } from '../errors.js';
import { certificatesOf } from '../pem.js';

export interface WorkloadCertificate {
  identity: SpiffeId;
  keyPem: string;
  /** Leaf first, then intermediates; no roots. */
  certChainPem: string[];
  /** Every root of the returned bundle: peers chaining to any of them are trusted. */
  rootsPem: string[];
  notBefore: Date;
  notAfter: Date;
  /** Hex serial of the leaf. */
  serial: string;
}

/** URI SANs of a certificate, in order (core/identity/spiffe.ts uriSansOfText). */
export function uriSansOf(cert: X509Certificate): string[] {
  return uriSansOfText(cert.subjectAltName);
}

export function parseWorkloadCertificate(
  identity: SpiffeId,
  keyPem: string,
  chain: string[],
): WorkloadCertificate {
  if (chain.length < 2)
    throw new CertificateMismatch(`CA response has ${chain.length} element(s); expected leaf and roots`);
  const leafPem = certificatesOf(chain[0]!)[0];
  if (!leafPem) throw new CertificateMismatch('CA response has no leaf certificate');
  const leaf = new X509Certificate(leafPem);
  const want = formatSpiffeId(identity);
  const sans = uriSansOf(leaf);
  if (sans[0] !== want) {
    throw new CertificateMismatch(
      `CA returned a certificate for ${sans[0] ?? '(no URI SAN)'}, requested ${want}`,
    );
  }
  const rootsPem = certificatesOf(chain[chain.length - 1]!);
  const intermediates = certificatesOf(chain.slice(1, -1));
  return {
    identity,
    keyPem,
    certChainPem: [leafPem, ...intermediates],
    rootsPem,
    // Node 20 has no validFromDate: its validFrom/validTo are OpenSSL's "Nov 25 16:00:00 2026 GMT".
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    // OpenSSL's hex without a sign byte, lower-cased as @peculiar/x509 and config_dump print it.
    serial: leaf.serialNumber.toLowerCase(),
  };
}

// A workload's certificate as the client holds it, built from a CA response
// ([leaf, intermediates..., roots bundle], istio/istio server.go) and checked the way
// istio/ztunnel caclient.rs does: the leaf's URI SAN must be exactly the identity asked for.
import * as x509 from '../x509.js';
import { type SpiffeId, formatSpiffeId } from '../../core/identity/spiffe.js';
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

/** URI SANs of a certificate, in order. */
export function uriSansOf(cert: x509.X509Certificate): string[] {
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return (san?.names.items ?? []).filter((n) => n.type === 'url').map((n) => n.value);
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
  const leaf = new x509.X509Certificate(leafPem);
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
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
    serial: leaf.serialNumber,
  };
}

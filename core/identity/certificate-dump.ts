// How an admin `/config_dump` describes a proxy's certificates — istio/ztunnel src/admin.rs
// (`certificates[]`: identity, state, certChain[], rootCerts[]), the form `istioctl ztunnel-config
// certificates` reads. Shared by ztunnel's and the waypoint's admin APIs so both report one shape.
import { X509Certificate } from 'node:crypto';

/** One certificate in `config_dump.certificates[].certChain|rootCerts` (istio/ztunnel admin.rs). */
export interface CertDumpEntry {
  /** Base64 of the PEM text, as ztunnel renders it. */
  pem: string;
  serialNumber: string;
  validFrom: string;
  expirationTime: string;
}

export interface CertificateDump {
  identity: string;
  /** `Initializing`, `Available`, or `Unavailable: <err>`. */
  state: string;
  certChain: CertDumpEntry[];
  rootCerts: CertDumpEntry[];
}

/** Splits a PEM bundle into its certificates and describes each. Unparsable PEM is reported, not thrown. */
export function describePem(pemText: string): CertDumpEntry[] {
  const blocks = pemText.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((pem) => {
    const x = new X509Certificate(pem);
    return {
      pem: Buffer.from(`${pem}\n`).toString('base64'),
      // istio/ztunnel prints the serial as a decimal/hex string; we keep OpenSSL's hex form.
      serialNumber: x.serialNumber.toLowerCase(),
      validFrom: new Date(x.validFrom).toISOString(),
      expirationTime: new Date(x.validTo).toISOString(),
    };
  });
}

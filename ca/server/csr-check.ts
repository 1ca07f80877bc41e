// Validation of PKCS#10 CSRs sent to the CA. istiod uses only the CSR's public key (its SANs are
// replaced by the authorized identity), but the CSR must still be well-formed, self-signed by that
// key, and the key strong enough. Each refusal says which check failed.
//
// The CSR is untrusted input, so its structure is read by a maintained ASN.1 library
// (@peculiar/asn1-csr schemas over asn1js, DER only, with resource limits: ../asn1.ts), and the
// signature is checked by node:crypto (OpenSSL) over the exact certificationRequestInfo bytes.
import { type KeyObject, createPublicKey, verify } from 'node:crypto';
import { CertificationRequest, CertificationRequestInfo } from '@peculiar/asn1-csr';
import { AsnProp, type OctetString } from '@peculiar/asn1-schema';
import { Extensions, GeneralNames, SubjectPublicKeyInfo, id_ce_subjectAltName } from '@peculiar/asn1-x509';
import { UNTRUSTED_LIMITS, decodeDer } from '../asn1.js';
import { InvalidCsr } from '../errors.js';
import { pemToDer } from '../pem.js';

export interface ValidatedCsr {
  /** The CSR's SubjectPublicKeyInfo, DER, copied into the certificate. */
  spkiDer: Buffer;
  publicKey: KeyObject;
  /** URI SANs the CSR asked for (the CA decides the SAN; the service compares them with the authorized identity). */
  uriSans: string[];
}

// Signature algorithms accepted on a CSR → node hash name.
const CSR_SIG_ALGS: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

const MAX_CSR_BYTES = UNTRUSTED_LIMITS.maxContentLength ?? 16 * 1024;

// asn1-csr's schemas, also keeping the key's own DER (`raw`, asn1-schema's option for that): the
// leaf carries the key exactly as the CSR did, as Go's x509 RawSubjectPublicKeyInfo, at no cost.
class RequestInfo extends CertificationRequestInfo {
  subjectPKInfoRaw?: ArrayBuffer;
}
AsnProp({ type: SubjectPublicKeyInfo, raw: true })(RequestInfo.prototype, 'subjectPKInfo');
class Request extends CertificationRequest {
  declare certificationRequestInfo: RequestInfo;
}
AsnProp({ type: RequestInfo, raw: true })(Request.prototype, 'certificationRequestInfo');

export const CSR_PEM_LABEL = 'CERTIFICATE REQUEST';

/** Parses and checks a PEM CSR; throws InvalidCsr saying which check failed. */
export function validateCsr(csrPem: string): ValidatedCsr {
  if (typeof csrPem !== 'string') throw new InvalidCsr('CSR is not a string');
  const m = /-----BEGIN CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE REQUEST-----/.exec(
    csrPem,
  );
  if (!m) throw new InvalidCsr('CSR is not a PEM "CERTIFICATE REQUEST" block');
  const der = pemToDer(m[0]);
  if (der.length === 0) throw new InvalidCsr('CSR PEM block is empty');
  if (der.length > MAX_CSR_BYTES)
    throw new InvalidCsr(
      `CSR PEM cannot be parsed: ${der.length} bytes is above the ${MAX_CSR_BYTES}-byte limit`,
    );

  let csr: Request;
  try {
    csr = decodeDer(der, Request);
  } catch (err) {
    throw new InvalidCsr(`CSR PEM cannot be parsed: ${(err as Error).message}`);
  }
  const info = csr.certificationRequestInfo;
  const infoDer = csr.certificationRequestInfoRaw;
  if (!infoDer || !info.subjectPKInfoRaw || info.version !== 0)
    throw new InvalidCsr('CSR PEM cannot be parsed: certificationRequestInfo missing or not version 1');
  const spkiDer = Buffer.from(new Uint8Array(info.subjectPKInfoRaw)); // a copy: der is a pooled buffer
  const publicKey = checkedPublicKey(spkiDer);
  const sigAlgOid = csr.signatureAlgorithm.algorithm;
  const hash = CSR_SIG_ALGS[sigAlgOid];
  if (!hash)
    throw new InvalidCsr(
      `CSR signature algorithm ${sigAlgOid} is not supported (ECDSA or RSA PKCS#1 v1.5 with SHA-2)`,
    );
  const keyIsRsa = publicKey.asymmetricKeyType === 'rsa';
  if (keyIsRsa !== sigAlgOid.startsWith('1.2.840.113549')) {
    throw new InvalidCsr('CSR signature algorithm does not match its key type');
  }
  let ok = false;
  try {
    ok = verify(hash, new Uint8Array(infoDer), publicKey, new Uint8Array(csr.signature));
  } catch {
    ok = false;
  }
  if (!ok) throw new InvalidCsr('CSR signature is invalid (not signed by the key it carries)');
  let uriSans: string[] = [];
  try {
    uriSans = requestedUriSans(csr);
  } catch (err) {
    throw new InvalidCsr(`CSR extension request cannot be parsed: ${(err as Error).message}`);
  }
  return { spkiDer, publicKey, uriSans };
}

/** URI SANs from the PKCS#9 extensionRequest attribute, if any. */
function requestedUriSans(csr: Request): string[] {
  const out: string[] = [];
  for (const attr of csr.certificationRequestInfo.attributes ?? []) {
    if (attr.type !== OID_EXTENSION_REQUEST) continue;
    for (const value of attr.values) {
      const exts = decodeDer(new Uint8Array(value), Extensions);
      for (const ext of exts) {
        if (ext.extnID !== id_ce_subjectAltName) continue;
        const names = decodeDer(new Uint8Array((ext.extnValue as OctetString).buffer), GeneralNames);
        for (const gn of names)
          if (gn.uniformResourceIdentifier !== undefined) out.push(gn.uniformResourceIdentifier);
      }
    }
  }
  return out;
}

/** ECDSA P-256/P-384 or RSA ≥ 2048 (istio accepts what Go's x509 parses; weak RSA is refused here on purpose). */
function checkedPublicKey(spki: Buffer): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    throw new InvalidCsr(`CSR public key cannot be read: ${(err as Error).message}`);
  }
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    if (d.namedCurve !== 'prime256v1' && d.namedCurve !== 'secp384r1')
      throw new InvalidCsr(`CSR key curve ${d.namedCurve} is not allowed (ECDSA P-256 or P-384)`);
    return key;
  }
  if (key.asymmetricKeyType === 'rsa') {
    if ((d.modulusLength ?? 0) < 2048)
      throw new InvalidCsr(`CSR key is RSA-${d.modulusLength}, too weak (RSA needs at least 2048 bits)`);
    return key;
  }
  throw new InvalidCsr(
    `CSR key type ${key.asymmetricKeyType} is not allowed (ECDSA P-256/P-384 or RSA >= 2048)`,
  );
}

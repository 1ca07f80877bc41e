// Validation of PKCS#10 CSRs sent to the CA. istiod uses only the CSR's public key (its SANs are
// replaced by the authorized identity), but the CSR must still be well-formed, self-signed by that
// key, and the key strong enough. Each refusal says which check failed.
import { type KeyObject, createPublicKey, verify } from 'node:crypto';
import { InvalidCsr } from '../errors.js';
import { DerError, type Tlv, childrenOf, content, decodeOid, raw, readTlv } from '../der.js';
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
const OID_SAN = '2.5.29.17';

export const CSR_PEM_LABEL = 'CERTIFICATE REQUEST';

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new InvalidCsr(`CSR PEM cannot be parsed: ${what} missing or malformed`);
  return t;
}

/** Parses and checks a PEM CSR; throws InvalidCsr saying which check failed. */
export function validateCsr(csrPem: string): ValidatedCsr {
  if (typeof csrPem !== 'string') throw new InvalidCsr('CSR is not a string');
  const m = /-----BEGIN CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]*)-----END CERTIFICATE REQUEST-----/.exec(
    csrPem,
  );
  if (!m) throw new InvalidCsr('CSR is not a PEM "CERTIFICATE REQUEST" block');
  const der = pemToDer(m[0]);
  if (der.length === 0) throw new InvalidCsr('CSR PEM block is empty');
  let cri: Tlv;
  let sigAlgOid: string;
  let sig: Buffer;
  let spkiDer: Buffer;
  let attrs: Tlv | undefined;
  try {
    const top = expect(readTlv(der, 0), 0x30, 'CertificationRequest');
    if (top.end !== der.length)
      throw new InvalidCsr('CSR PEM cannot be parsed: trailing bytes after the request');
    const [criT, algT, sigT] = childrenOf(der, top);
    cri = expect(criT, 0x30, 'certificationRequestInfo');
    const alg = expect(algT, 0x30, 'signatureAlgorithm');
    const algOid = expect(childrenOf(der, alg)[0], 0x06, 'signature algorithm OID');
    sigAlgOid = decodeOid(content(der, algOid));
    const sigBits = expect(sigT, 0x03, 'signature');
    sig = content(der, sigBits).subarray(1);
    const criParts = childrenOf(der, cri);
    expect(criParts[0], 0x02, 'version');
    expect(criParts[1], 0x30, 'subject');
    spkiDer = raw(der, expect(criParts[2], 0x30, 'subjectPublicKeyInfo'));
    attrs = criParts[3]?.tag === 0xa0 ? criParts[3] : undefined;
  } catch (err) {
    if (err instanceof InvalidCsr) throw err;
    throw new InvalidCsr(`CSR PEM cannot be parsed: ${(err as Error).message}`);
  }
  const publicKey = checkedPublicKey(spkiDer);
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
    ok = verify(hash, raw(der, cri), publicKey, sig);
  } catch {
    ok = false;
  }
  if (!ok) throw new InvalidCsr('CSR signature is invalid (not signed by the key it carries)');
  let uriSans: string[] = [];
  try {
    uriSans = attrs ? requestedUriSans(der, attrs) : [];
  } catch (err) {
    throw new InvalidCsr(`CSR extension request cannot be parsed: ${(err as Error).message}`);
  }
  return { spkiDer: Buffer.from(spkiDer), publicKey, uriSans };
}

function requestedUriSans(der: Buffer, attrs: Tlv): string[] {
  const out: string[] = [];
  for (const attr of childrenOf(der, attrs)) {
    const [typeT, valuesT] = childrenOf(der, attr);
    if (!typeT || !valuesT || decodeOid(content(der, typeT)) !== OID_EXTENSION_REQUEST) continue;
    for (const exts of childrenOf(der, valuesT)) {
      for (const ext of childrenOf(der, exts)) {
        const parts = childrenOf(der, ext);
        if (!parts[0] || decodeOid(content(der, parts[0])) !== OID_SAN) continue;
        const value = parts[parts.length - 1]!;
        const inner = content(der, value);
        const names = readTlv(inner, 0);
        for (const gn of childrenOf(inner, names)) {
          if (gn.tag === 0x86) out.push(content(inner, gn).toString('ascii'));
        }
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

export { DerError };

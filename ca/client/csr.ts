// Key + CSR for one identity, shaped as istio/ztunnel's caclient.rs makes them: a fresh ECDSA P-256
// key, empty subject, a single critical URI SAN = the SPIFFE ID, SHA-256 signature. Written with the
// small DER encoder and node:crypto (no ASN.1 schema library on the client's path).
import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPair, sign } from 'node:crypto';
import { promisify } from 'node:util';
import { type SpiffeId, formatSpiffeId } from '../../core/identity/spiffe.js';
import { NULL, TRUE, bitString, octetString, oid, seq, tlv } from '../der.js';
import { derToPem } from '../pem.js';

const generateKeyPairAsync = promisify(generateKeyPair);

export interface CertificateRequestOptions {
  /**
   * Use this private key (any PEM form, EC or RSA) instead of a fresh P-256 key. For tests of the
   * CA's key checks and for operators who bring their own key.
   */
  privateKeyPem?: string;
}

export interface KeyAndCsr {
  /** PKCS#8 PEM. */
  keyPem: string;
  csrPem: string;
}

function signatureAlgorithm(key: KeyObject): { hash: string; algorithmIdentifier: Buffer } {
  if (key.asymmetricKeyType === 'rsa')
    return { hash: 'sha256', algorithmIdentifier: seq(oid('1.2.840.113549.1.1.11'), NULL) };
  if (key.asymmetricKeyType === 'ec') {
    return key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
      ? { hash: 'sha384', algorithmIdentifier: seq(oid('1.2.840.10045.4.3.3')) }
      : { hash: 'sha256', algorithmIdentifier: seq(oid('1.2.840.10045.4.3.2')) };
  }
  throw new Error(`CSR key type ${key.asymmetricKeyType} is not supported (EC or RSA)`);
}

/** Builds a PKCS#10 CSR (RFC 2986) with an empty subject and one critical URI SAN per `uris`. */
export function buildCsr(privateKey: KeyObject, uris: string[]): string {
  const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const san = seq(
    oid('2.5.29.17'),
    TRUE,
    octetString(seq(...uris.map((u) => tlv(0x86, Buffer.from(u, 'ascii'))))),
  );
  const extensionRequest = seq(oid('1.2.840.113549.1.9.14'), tlv(0x31, seq(san)));
  const cri = seq(tlv(0x02, Buffer.from([0])), seq(), spki, tlv(0xa0, extensionRequest));
  const alg = signatureAlgorithm(privateKey);
  const signature = sign(alg.hash, cri, privateKey);
  return derToPem(seq(cri, alg.algorithmIdentifier, bitString(signature)), 'CERTIFICATE REQUEST');
}

export async function createKeyAndCsr(
  identity: SpiffeId,
  opts: CertificateRequestOptions = {},
): Promise<KeyAndCsr> {
  const privateKey = opts.privateKeyPem
    ? createPrivateKey(opts.privateKeyPem)
    : (await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' })).privateKey;
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  return { keyPem, csrPem: buildCsr(privateKey, [formatSpiffeId(identity)]) };
}

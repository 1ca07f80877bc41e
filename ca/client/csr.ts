// Key + CSR for one identity, shaped as istio/ztunnel's caclient.rs makes them: a fresh ECDSA P-256
// key, empty subject, a single critical URI SAN = the SPIFFE ID, SHA-256 signature. Key and signature
// from node:crypto; the DER around them is written here. Why not an ASN.1 library: the request is one
// fixed template, and asn1js + @peculiar/asn1-{schema,x509,csr} cost a ztunnel ~2 MB of idle heap (it
// makes CSRs at start). csr.test.ts checks the bytes against those libraries, and the CA decodes every
// CSR with them, strictly (ca/asn1.ts decodeDer).
import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPair, sign } from 'node:crypto';
import { promisify } from 'node:util';
import { type SpiffeId, formatSpiffeId } from '../../core/identity/spiffe.js';
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

// X.690 DER: tag, definite length in the fewest octets, contents.
function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  let length: number[];
  if (n < 0x80) length = [n];
  else {
    const octets: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) octets.unshift(v % 256);
    length = [0x80 | octets.length, ...octets];
  }
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}

const SEQUENCE = 0x30;
const SET = 0x31;

/** OBJECT IDENTIFIER from dotted form (X.690 §8.19: first two arcs packed, base-128 arcs). */
function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [];
  for (const arc of [arcs[0]! * 40 + arcs[1]!, ...arcs.slice(2)]) {
    const septets = [arc % 128];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) septets.unshift((v % 128) | 0x80);
    out.push(...septets);
  }
  return tlv(0x06, Buffer.from(out));
}

const OID_EXTENSION_REQUEST = oid('1.2.840.113549.1.9.14'); // PKCS#9 extensionRequest
const OID_SUBJECT_ALT_NAME = oid('2.5.29.17');
const DER_NULL = Buffer.from([0x05, 0x00]);
const DER_TRUE = Buffer.from([0x01, 0x01, 0xff]);

function signatureAlgorithm(key: KeyObject): { hash: string; algorithmIdentifier: Buffer } {
  if (key.asymmetricKeyType === 'rsa') {
    // RFC 4055 §5: sha256WithRSAEncryption carries an explicit NULL parameter.
    return { hash: 'sha256', algorithmIdentifier: tlv(SEQUENCE, oid('1.2.840.113549.1.1.11'), DER_NULL) };
  }
  if (key.asymmetricKeyType === 'ec') {
    // RFC 5758 §3.2: ECDSA AlgorithmIdentifiers have no parameters.
    return key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
      ? { hash: 'sha384', algorithmIdentifier: tlv(SEQUENCE, oid('1.2.840.10045.4.3.3')) }
      : { hash: 'sha256', algorithmIdentifier: tlv(SEQUENCE, oid('1.2.840.10045.4.3.2')) };
  }
  throw new Error(`CSR key type ${key.asymmetricKeyType} is not supported (EC or RSA)`);
}

/** Builds a PKCS#10 CSR (RFC 2986) with an empty subject and one critical URI SAN per `uris`. */
export function buildCsr(privateKey: KeyObject, uris: string[]): string {
  const names = uris.map((u) => {
    // GeneralName uniformResourceIdentifier is [6] IMPLICIT IA5String: ASCII only.
    if (!/^[\x20-\x7e]*$/.test(u)) throw new Error(`CSR URI SAN ${JSON.stringify(u)} is not printable ASCII`);
    return tlv(0x86, Buffer.from(u, 'ascii'));
  });
  const san = tlv(
    SEQUENCE,
    OID_SUBJECT_ALT_NAME,
    DER_TRUE, // RFC 5280 §4.2.1.6: the subject is empty, so the SAN is critical
    tlv(0x04, tlv(SEQUENCE, ...names)),
  );
  const extensionRequest = tlv(SEQUENCE, OID_EXTENSION_REQUEST, tlv(SET, tlv(SEQUENCE, san)));
  const info = tlv(
    SEQUENCE,
    Buffer.from([0x02, 0x01, 0x00]), // version 0
    tlv(SEQUENCE), // empty subject Name
    createPublicKey(privateKey).export({ type: 'spki', format: 'der' }), // OpenSSL's own encoding of the key
    tlv(0xa0, extensionRequest), // attributes [0] IMPLICIT SET OF Attribute
  );
  const alg = signatureAlgorithm(privateKey);
  const signature = sign(alg.hash, info, privateKey); // ECDSA: DER Ecdsa-Sig-Value, as X.509 wants
  const csr = tlv(SEQUENCE, info, alg.algorithmIdentifier, tlv(0x03, Buffer.from([0]), signature));
  return derToPem(csr, 'CERTIFICATE REQUEST');
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

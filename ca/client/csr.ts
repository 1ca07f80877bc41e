// Key + CSR for one identity, shaped as istio/ztunnel's caclient.rs makes them: a fresh ECDSA P-256
// key, empty subject, a single critical URI SAN = the SPIFFE ID, SHA-256 signature. Structure from
// @peculiar/asn1-csr / asn1-x509, DER from @peculiar/asn1-schema, signature from node:crypto.
import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPair, sign } from 'node:crypto';
import { promisify } from 'node:util';
import { type SpiffeId, formatSpiffeId } from '../../core/identity/spiffe.js';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import { CertificationRequest, CertificationRequestInfo } from '@peculiar/asn1-csr';
import {
  AlgorithmIdentifier,
  Attribute,
  Extension,
  Extensions,
  GeneralName,
  Name,
  SubjectAlternativeName,
  type SubjectPublicKeyInfo,
  id_ce_subjectAltName,
} from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { Encoded } from '../asn1.js';
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

const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14'; // PKCS#9 extensionRequest

function signatureAlgorithm(key: KeyObject): { hash: string; algorithmIdentifier: AlgorithmIdentifier } {
  if (key.asymmetricKeyType === 'rsa') {
    // RFC 4055 §5: sha256WithRSAEncryption carries an explicit NULL parameter.
    const parameters = new asn1js.Null().toBER();
    return {
      hash: 'sha256',
      algorithmIdentifier: new AlgorithmIdentifier({ algorithm: '1.2.840.113549.1.1.11', parameters }),
    };
  }
  if (key.asymmetricKeyType === 'ec') {
    // RFC 5758 §3.2: ECDSA AlgorithmIdentifiers have no parameters.
    return key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
      ? { hash: 'sha384', algorithmIdentifier: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.3' }) }
      : {
          hash: 'sha256',
          algorithmIdentifier: new AlgorithmIdentifier({ algorithm: '1.2.840.10045.4.3.2' }),
        };
  }
  throw new Error(`CSR key type ${key.asymmetricKeyType} is not supported (EC or RSA)`);
}

/** Builds a PKCS#10 CSR (RFC 2986) with an empty subject and one critical URI SAN per `uris`. */
export function buildCsr(privateKey: KeyObject, uris: string[]): string {
  const spkiDer = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const san = new Extension({
    extnID: id_ce_subjectAltName,
    critical: true, // RFC 5280 §4.2.1.6: the subject is empty, so the SAN is critical
    extnValue: new OctetString(
      AsnConvert.serialize(
        new SubjectAlternativeName(uris.map((u) => new GeneralName({ uniformResourceIdentifier: u }))),
      ),
    ),
  });
  const info = new CertificationRequestInfo({
    version: 0,
    subject: new Name(),
    subjectPKInfo: new Encoded(spkiDer).as<SubjectPublicKeyInfo>(), // OpenSSL's own encoding of the key
  });
  info.attributes.push(
    new Attribute({ type: OID_EXTENSION_REQUEST, values: [AsnConvert.serialize(new Extensions([san]))] }),
  );
  const alg = signatureAlgorithm(privateKey);
  const infoDer = new Uint8Array(AsnConvert.serialize(info));
  const signature = sign(alg.hash, infoDer, privateKey);
  const csr = new CertificationRequest({
    certificationRequestInfo: new Encoded(infoDer).as<CertificationRequestInfo>(), // the bytes just signed
    signatureAlgorithm: alg.algorithmIdentifier,
    signature: new Uint8Array(signature).buffer,
  });
  return derToPem(AsnConvert.serialize(csr), 'CERTIFICATE REQUEST');
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

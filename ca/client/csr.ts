// Key + CSR for one identity, shaped as istio/ztunnel's caclient.rs makes them: a fresh ECDSA P-256
// key, empty subject, a single critical URI SAN = the SPIFFE ID, SHA-256 signature.
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import * as x509 from '../x509.js';
import { type SpiffeId, formatSpiffeId } from '../../core/identity/spiffe.js';

export interface CertificateRequestOptions {
  /**
   * Use this private key (any PEM form, EC or RSA) instead of a fresh P-256 key. For tests of the
   * CA's key checks and for operators who bring their own key.
   */
  privateKeyPem?: string;
}

export interface KeyAndCsr {
  keyPem: string;
  csrPem: string;
}

export async function createKeyAndCsr(
  identity: SpiffeId,
  opts: CertificateRequestOptions = {},
): Promise<KeyAndCsr> {
  let keys: webcrypto.CryptoKeyPair;
  let signingAlgorithm: webcrypto.Algorithm | webcrypto.EcdsaParams;
  let keyPem: string;
  if (opts.privateKeyPem) {
    const priv = createPrivateKey(opts.privateKeyPem);
    const pkcs8 = priv.export({ type: 'pkcs8', format: 'der' });
    const spki = createPublicKey(priv).export({ type: 'spki', format: 'der' });
    let alg: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams;
    if (priv.asymmetricKeyType === 'rsa') {
      alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
      signingAlgorithm = alg;
    } else {
      const curve = priv.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'P-384' : 'P-256';
      alg = { name: 'ECDSA', namedCurve: curve };
      signingAlgorithm = { name: 'ECDSA', hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' };
    }
    keys = {
      privateKey: await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, true, ['sign']),
      publicKey: await webcrypto.subtle.importKey('spki', spki, alg, true, ['verify']),
    };
    keyPem = priv.export({ type: 'pkcs8', format: 'pem' }).toString();
  } else {
    keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair;
    signingAlgorithm = { name: 'ECDSA', hash: 'SHA-256' };
    keyPem = x509.PemConverter.encode(
      await webcrypto.subtle.exportKey('pkcs8', keys.privateKey),
      'PRIVATE KEY',
    );
  }
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: new x509.Name([]),
    keys: keys,
    signingAlgorithm: signingAlgorithm,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: formatSpiffeId(identity) }], true),
    ],
  });
  return { keyPem: keyPem.endsWith('\n') ? keyPem : `${keyPem}\n`, csrPem: `${csr.toString('pem')}\n` };
}

// Turns a CA private key in any PEM form (PKCS#8, SEC1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY")
// into a WebCrypto signing key and the matching X.509 signature algorithm. Istio's default
// self-signed root is RSA-2048 and plugged-in cacerts are often RSA, so both families are accepted.
import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';
import { InvalidCaMaterial } from '../errors.js';

export interface SigningKey {
  privateKey: webcrypto.CryptoKey;
  publicKey: webcrypto.CryptoKey;
  /** Algorithm for @peculiar/x509's `signingAlgorithm`. */
  algorithm: webcrypto.EcdsaParams | webcrypto.Algorithm;
  /** SPKI DER of the public half, to check it matches a certificate. */
  spkiDer: Buffer;
}

export async function importSigningKey(keyPem: string, where: string): Promise<SigningKey> {
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new InvalidCaMaterial(
      `${where}: private key is not a readable PEM key (${(err as Error).message})`,
    );
  }
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  const spkiDer = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    const namedCurve =
      details.namedCurve === 'prime256v1'
        ? 'P-256'
        : details.namedCurve === 'secp384r1'
          ? 'P-384'
          : undefined;
    if (!namedCurve)
      throw new InvalidCaMaterial(
        `${where}: EC curve ${details.namedCurve} is not supported (P-256 or P-384)`,
      );
    const hash = namedCurve === 'P-384' ? 'SHA-384' : 'SHA-256';
    const alg = { name: 'ECDSA', namedCurve };
    const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, true, ['sign']);
    const publicKey = await webcrypto.subtle.importKey('spki', spkiDer, alg, true, ['verify']);
    return { privateKey, publicKey, algorithm: { name: 'ECDSA', hash }, spkiDer };
  }
  if (key.asymmetricKeyType === 'rsa') {
    if ((details.modulusLength ?? 0) < 2048)
      throw new InvalidCaMaterial(
        `${where}: RSA key of ${details.modulusLength} bits is too weak (need >= 2048)`,
      );
    const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, alg, true, ['sign']);
    const publicKey = await webcrypto.subtle.importKey('spki', spkiDer, alg, true, ['verify']);
    return { privateKey, publicKey, algorithm: alg, spkiDer };
  }
  throw new InvalidCaMaterial(`${where}: key type ${key.asymmetricKeyType} is not supported (EC or RSA)`);
}

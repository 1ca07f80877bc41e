import { execFileSync } from 'node:child_process';
import { type KeyObject, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificationRequest, CertificationRequestInfo } from '@peculiar/asn1-csr';
import { AsnConvert, AsnParser, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  Attribute,
  Extension,
  Extensions,
  GeneralName,
  Name,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
  id_ce_subjectAltName,
} from '@peculiar/asn1-x509';
import * as asn1js from 'asn1js';
import { describe, expect, it } from 'vitest';
import { pemToDer } from '../pem.js';
import { buildCsr } from './csr.js';

/** The same request built with the ASN.1 libraries (how csr.ts built it before it wrote DER itself). */
function referenceCsr(key: KeyObject, uris: string[]): Buffer {
  const san = new Extension({
    extnID: id_ce_subjectAltName,
    critical: true,
    extnValue: new OctetString(
      AsnConvert.serialize(
        new SubjectAlternativeName(uris.map((u) => new GeneralName({ uniformResourceIdentifier: u }))),
      ),
    ),
  });
  const spki = AsnParser.parse(
    createPublicKey(key).export({ type: 'spki', format: 'der' }),
    SubjectPublicKeyInfo,
  );
  const info = new CertificationRequestInfo({ version: 0, subject: new Name(), subjectPKInfo: spki });
  info.attributes.push(
    new Attribute({ type: '1.2.840.113549.1.9.14', values: [AsnConvert.serialize(new Extensions([san]))] }),
  );
  const rsa = key.asymmetricKeyType === 'rsa';
  const p384 = key.asymmetricKeyDetails?.namedCurve === 'secp384r1';
  const algorithm = rsa ? '1.2.840.113549.1.1.11' : p384 ? '1.2.840.10045.4.3.3' : '1.2.840.10045.4.3.2';
  const infoDer = new Uint8Array(AsnConvert.serialize(info));
  const signature = sign(p384 ? 'sha384' : 'sha256', infoDer, key);
  const csr = new CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new AlgorithmIdentifier(
      rsa ? { algorithm, parameters: new asn1js.Null().toBER() } : { algorithm },
    ),
    signature: new Uint8Array(signature).buffer,
  });
  return Buffer.from(AsnConvert.serialize(csr));
}

const infoOf = (der: Buffer) =>
  Buffer.from(AsnConvert.serialize(AsnParser.parse(der, CertificationRequest).certificationRequestInfo));

const uri = 'spiffe://cluster.local/ns/demo/sa/client';
const long = `spiffe://cluster.local/ns/demo/sa/${'x'.repeat(200)}`;

describe('buildCsr', () => {
  it('writes byte for byte what the ASN.1 libraries write (RSA signatures are deterministic)', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    for (const uris of [[uri], [uri, long]]) {
      expect(pemToDer(buildCsr(privateKey, uris)).equals(referenceCsr(privateKey, uris))).toBe(true);
    }
  });

  it('signs the same request info for P-256 and P-384 keys, with their algorithm', () => {
    for (const namedCurve of ['prime256v1', 'secp384r1']) {
      const { privateKey } = generateKeyPairSync('ec', { namedCurve });
      const der = pemToDer(buildCsr(privateKey, [long]));
      const reference = referenceCsr(privateKey, [long]);
      expect(infoOf(der).equals(infoOf(reference))).toBe(true);
      expect(AsnParser.parse(der, CertificationRequest).signatureAlgorithm.algorithm).toBe(
        namedCurve === 'secp384r1' ? '1.2.840.10045.4.3.3' : '1.2.840.10045.4.3.2',
      );
    }
  });

  it('is a CSR OpenSSL verifies, with an empty subject and one critical URI SAN', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const dir = mkdtempSync(join(tmpdir(), 'csr-test-'));
    try {
      writeFileSync(join(dir, 'req.pem'), buildCsr(privateKey, [uri]));
      const text = execFileSync(
        'openssl',
        ['req', '-in', join(dir, 'req.pem'), '-verify', '-noout', '-text'],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      expect(text).toMatch(
        /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client/,
      );
      expect(text).toMatch(/Subject:\s*\n/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a URI that is not printable ASCII (IA5String) and keys it cannot sign with', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    expect(() => buildCsr(privateKey, ['spiffe://cluster.local/ns/é/sa/x'])).toThrow(/not printable ASCII/);
    const ed = generateKeyPairSync('ed25519').privateKey;
    expect(() => buildCsr(ed, [uri])).toThrow(/CSR key type ed25519 is not supported/);
  });
});

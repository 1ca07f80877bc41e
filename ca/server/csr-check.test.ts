import { execFileSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCsr } from '../client/csr.js';
import { derToPem, pemToDer } from '../pem.js';
import { validateCsr } from './csr-check.js';

const uri = 'spiffe://cluster.local/ns/default/sa/sleep';
const dir = mkdtempSync(join(tmpdir(), 'csr-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A CSR made by openssl req (not by our own encoder), from a key of the given openssl genpkey args. */
function opensslCsr(name: string, genpkey: string[], extra: string[] = []): string {
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['genpkey', ...genpkey, '-out', key], { stdio: 'pipe' });
  execFileSync('openssl', ['req', '-new', '-key', key, '-out', join(dir, `${name}.csr`), ...extra], {
    stdio: 'pipe',
  });
  return readFileSync(join(dir, `${name}.csr`), 'utf8');
}

const asPem = (der: Uint8Array): string => derToPem(der, 'CERTIFICATE REQUEST');

describe('validateCsr', () => {
  it('accepts an openssl CSR with a subject, reads its URI SAN and keeps its key bytes exactly', () => {
    const pem = opensslCsr(
      'p256',
      ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      ['-subj', '/O=example/CN=sleep', '-addext', `subjectAltName=critical,DNS:sleep.default.svc,URI:${uri}`],
    );
    const csr = validateCsr(pem);
    expect(csr.uriSans).toEqual([uri]);
    const opensslKey = createPublicKey(readFileSync(join(dir, 'p256.key'))).export({
      type: 'spki',
      format: 'der',
    });
    expect(csr.spkiDer.equals(opensslKey)).toBe(true);
    expect(csr.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
  });

  it('accepts a CSR without any extension request (no SANs asked)', () => {
    const pem = opensslCsr(
      'plain',
      ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
      ['-subj', '/CN=plain'],
    );
    expect(validateCsr(pem).uriSans).toEqual([]);
  });

  it('refuses an Ed25519 key, naming the key type', () => {
    const pem = opensslCsr('ed', ['-algorithm', 'ED25519'], ['-subj', '/CN=ed']);
    expect(() => validateCsr(pem)).toThrow(/CSR key type ed25519 is not allowed/);
  });

  it('refuses an unsupported curve, naming it', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp521r1' });
    expect(() => validateCsr(buildCsr(privateKey, [uri]))).toThrow(/CSR key curve secp521r1 is not allowed/);
  });

  it('refuses trailing bytes after the request', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const der = pemToDer(buildCsr(privateKey, [uri]));
    expect(() => validateCsr(asPem(Buffer.concat([der, Buffer.from([0x05, 0x00])])))).toThrow(
      /cannot be parsed: 2 trailing bytes/,
    );
  });

  it('refuses a BER (non-minimal) length even though the signature still matches', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const der = pemToDer(buildCsr(privateKey, [uri]));
    // The outer SEQUENCE's length is outside the signed bytes: 30 81 LL (or 30 82 01 LL) → 30 83 00 0L LL.
    const lenBytes = der[1]! & 0x7f;
    const body = der.subarray(2 + lenBytes);
    const padded = Buffer.concat([
      Buffer.from([0x30, 0x83, 0x00, body.length >> 8, body.length & 0xff]),
      body,
    ]);
    expect(() => validateCsr(asPem(padded))).toThrow(/not in its shortest form/);
  });

  it('refuses a request larger than any workload CSR', () => {
    const big = Buffer.concat([Buffer.from([0x30, 0x82, 0x50, 0x00]), Buffer.alloc(0x5000)]);
    expect(() => validateCsr(asPem(big))).toThrow(/above the 16384-byte limit/);
  });

  it('reads the signature algorithm from the request and refuses one it does not know', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const der = Buffer.from(pemToDer(buildCsr(privateKey, [uri])));
    // The outer signatureAlgorithm (outside the signed bytes): OID ecdsa-with-SHA256 = 2a 86 48 ce 3d 04 03 02.
    const ecdsa256 = Buffer.from('06082a8648ce3d040302', 'hex');
    const at = der.lastIndexOf(ecdsa256);
    const swapped = Buffer.from(der);
    swapped[at + ecdsa256.length - 1] = 0x04; // ecdsa-with-SHA512: hashes differently, no longer verifies
    expect(() => validateCsr(asPem(swapped))).toThrow(/CSR signature is invalid/);
    swapped[at + ecdsa256.length - 1] = 0x01; // 1.2.840.10045.4.3.1 (ecdsa-with-SHA224)
    expect(() => validateCsr(asPem(swapped))).toThrow(
      /CSR signature algorithm 1\.2\.840\.10045\.4\.3\.1 is not supported/,
    );
  });
});

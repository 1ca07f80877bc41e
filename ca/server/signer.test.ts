import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { SpiffeId } from '../../core/identity/spiffe.js';
import { buildCsr, createKeyAndCsr } from '../client/csr.js';
import { createIntermediateCa, createSelfSignedRoot, renewSelfSignedRoot } from './root.js';
import { Signer, issueWorkloadCertificate, validateCsr } from './signer.js';

const sleep: SpiffeId = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' };

describe('Signer', () => {
  it('issues an Istio-shaped leaf that chains to the root', async () => {
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const signer = new Signer(root);
    const before = Date.now();
    const wc = await issueWorkloadCertificate(signer, sleep, 3600);
    const leaf = new X509Certificate(wc.certChainPem[0]!);
    const rootCert = new X509Certificate(root.certPem);
    expect(leaf.subject ?? '').toBe(''); // node reports an empty subject as undefined
    expect(leaf.subjectAltName).toBe('URI:spiffe://cluster.local/ns/default/sa/sleep');
    expect(leaf.ca).toBe(false);
    expect(leaf.keyUsage?.sort()).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(leaf.verify(rootCert.publicKey)).toBe(true);
    expect(leaf.checkIssued(rootCert)).toBe(true);
    const skewMs = before - new Date(leaf.validFrom).getTime();
    expect(skewMs).toBeGreaterThan(100_000); // NotBefore ≈ now − 2 min
    expect(skewMs).toBeLessThan(140_000);
    expect(wc.notAfter.getTime() - wc.notBefore.getTime()).toBe((3600 + 120) * 1000);
    expect(wc.serial).toMatch(/^[0-9a-f]{30,34}$/);
    expect(wc.rootsPem).toEqual(root.rootsPem);
    expect(wc.certChainPem).toHaveLength(1);
  });

  it('defaults the TTL to 24 h and refuses more than 90 days', async () => {
    const signer = new Signer(await createSelfSignedRoot({ trustDomain: 'cluster.local' }));
    const wc = await issueWorkloadCertificate(signer, sleep, 0);
    expect(wc.notAfter.getTime() - Date.now()).toBeGreaterThan(23 * 3600_000);
    await expect(issueWorkloadCertificate(signer, sleep, 91 * 86400)).rejects.toThrow(
      /TTL .* above the maximum/,
    );
  });

  it('refuses an identity of another trust domain', async () => {
    const signer = new Signer(await createSelfSignedRoot({ trustDomain: 'cluster.local' }));
    await expect(issueWorkloadCertificate(signer, { ...sleep, trustDomain: 'evil.org' }, 60)).rejects.toThrow(
      /trust domain "evil.org"/,
    );
  });

  it('signs with an intermediate and returns [leaf, intermediate, roots]', async () => {
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const inter = await createIntermediateCa(root);
    const signer = new Signer(inter);
    const { csrPem } = await createKeyAndCsr(sleep);
    const chain = await signer.signCsr(csrPem, { identity: sleep, ttlSeconds: 60 });
    expect(chain).toHaveLength(3);
    const leaf = new X509Certificate(chain[0]!);
    const ic = new X509Certificate(chain[1]!);
    expect(leaf.checkIssued(ic)).toBe(true);
    expect(ic.checkIssued(new X509Certificate(chain[2]!))).toBe(true);
  });

  it('after same-key root renewal, old leaves verify against the new root', async () => {
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local', ttlDays: 1 });
    const old = await issueWorkloadCertificate(new Signer(root), sleep, 600);
    const renewed = await renewSelfSignedRoot(root, { ttlDays: 30 });
    const newRoot = new X509Certificate(renewed.certPem);
    expect(newRoot.serialNumber).not.toBe(new X509Certificate(root.certPem).serialNumber);
    expect(new Date(newRoot.validTo).getTime()).toBeGreaterThan(Date.now() + 29 * 86400_000);
    const oldLeaf = new X509Certificate(old.certChainPem[0]!);
    expect(oldLeaf.checkIssued(newRoot)).toBe(true);
    expect(oldLeaf.verify(newRoot.publicKey)).toBe(true);
    expect(renewed.rootsPem).toHaveLength(2);
  });

  it('puts every root of a multi-root bundle in the last element; the client trusts each', async () => {
    const oldRoot = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const newRoot = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const inter = await createIntermediateCa(newRoot);
    const signer = new Signer({ ...inter, rootsPem: [newRoot.certPem, oldRoot.certPem] });
    const { csrPem } = await createKeyAndCsr(sleep);
    const chain = await signer.signCsr(csrPem, { identity: sleep, ttlSeconds: 60 });
    expect(chain.at(-1)).toBe(newRoot.certPem + oldRoot.certPem); // Istio: one element, roots concatenated
    const wc = await issueWorkloadCertificate(signer, sleep, 60);
    expect(wc.rootsPem).toEqual([newRoot.certPem, oldRoot.certPem]);
    expect(wc.certChainPem).toEqual([expect.any(String), inter.certPem]);
  });

  it('refuses a mismatched CA key', async () => {
    const a = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const b = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    expect(() => new Signer({ ...a, keyPem: b.keyPem })).toThrow(/CA key does not match/);
  });
});

describe('validateCsr', () => {
  it('accepts a ztunnel-shaped CSR and reads its URI SAN', async () => {
    const { csrPem } = await createKeyAndCsr(sleep);
    expect(validateCsr(csrPem).uriSans).toEqual(['spiffe://cluster.local/ns/default/sa/sleep']);
  });
  it('refuses garbage PEM', () => {
    expect(() => validateCsr('hello')).toThrow(/not a PEM "CERTIFICATE REQUEST"/);
    expect(() =>
      validateCsr('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'),
    ).toThrow(/cannot be parsed/);
  });
  it('refuses a CSR whose signature does not match', async () => {
    const { csrPem } = await createKeyAndCsr(sleep);
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5]! ^= 0x01;
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(() => validateCsr(tampered)).toThrow(/signature is invalid/);
  });
  it('refuses a weak RSA key', () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => validateCsr(buildCsr(privateKey, ['spiffe://cluster.local/ns/a/sa/b']))).toThrow(
      /RSA-1024, too weak/,
    );
  });
  it('accepts RSA-2048 and P-384', () => {
    for (const kp of [
      generateKeyPairSync('rsa', { modulusLength: 2048 }),
      generateKeyPairSync('ec', { namedCurve: 'secp384r1' }),
    ]) {
      expect(validateCsr(buildCsr(kp.privateKey, ['spiffe://cluster.local/ns/a/sa/b'])).uriSans).toHaveLength(
        1,
      );
    }
  });
});

import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSelfSignedRoot } from './root.js';
import { LocalDirCaStore, readCaDirectory, writeFileAtomic } from './store.js';

const dir = mkdtempSync(join(tmpdir(), 'ca-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('LocalDirCaStore', () => {
  it('round-trips the CA with the key file 0600 and no temp files left', async () => {
    const store = new LocalDirCaStore(join(dir, 's1'));
    expect(await store.load()).toBeUndefined();
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    await store.save(root);
    expect(await store.load()).toEqual(root);
    expect(statSync(join(dir, 's1', 'ca-key.pem')).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, 's1')).sort()).toEqual([
      'ca-cert.pem',
      'ca-key.pem',
      'cert-chain.pem',
      'root-cert.pem',
    ]);
  });

  it('replaces a file atomically with the requested mode', async () => {
    const p = join(dir, 'f.pem');
    writeFileSync(p, 'old', { mode: 0o644 });
    await writeFileAtomic(p, 'new', 0o600);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('reads the kubernetes.io/tls cacerts layout (tls.crt, tls.key, ca.crt)', async () => {
    const { createIntermediateCa } = await import('./root.js');
    const { Signer } = await import('./signer.js');
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const inter = await createIntermediateCa(root);
    const d = join(dir, 'tls-layout');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(d);
    writeFileSync(join(d, 'tls.crt'), inter.certPem);
    writeFileSync(join(d, 'tls.key'), inter.keyPem);
    writeFileSync(join(d, 'ca.crt'), root.certPem);
    const m = await readCaDirectory(d);
    expect(m?.certPem).toBe(inter.certPem);
    expect(m?.rootsPem).toEqual([root.certPem]);
    expect(new Signer(m!).chainTail()).toEqual([inter.certPem, root.certPem]);
  });

  it('names the missing file of a half-written cacerts directory', async () => {
    const d = join(dir, 'half');
    await writeFileAtomic(join(dir, 'placeholder'), '');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(d);
    writeFileSync(join(d, 'ca-cert.pem'), 'x');
    await expect(readCaDirectory(d)).rejects.toThrow(/half\/ca-key\.pem is missing/);
  });
});

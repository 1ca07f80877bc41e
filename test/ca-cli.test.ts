// `ambit ca issue` as an operator runs it: Istio's file names, key 0600, a chain openssl accepts.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { registerCa } from '../cli/ca.js';
import { createSelfSignedRoot } from '../ca/server/root.js';
import { LocalDirCaStore } from '../ca/server/store.js';

const dir = mkdtempSync(join(tmpdir(), 'ca-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function ambit(...args: string[]): Promise<void> {
  const program = new Command().exitOverride();
  registerCa(program);
  await program.parseAsync(['node', 'ambit', ...args]);
}

describe('ambit ca issue', () => {
  it('writes key.pem (0600), cert-chain.pem (leaf first) and root-cert.pem', async () => {
    await new LocalDirCaStore(join(dir, 'ca')).save(
      await createSelfSignedRoot({ trustDomain: 'cluster.local' }),
    );
    const out = join(dir, 'out');
    await ambit(
      'ca',
      'issue',
      '--identity',
      'spiffe://cluster.local/ns/default/sa/sleep',
      '--out',
      out,
      '--ca-dir',
      join(dir, 'ca'),
      '--ttl',
      '2h',
    );
    expect(statSync(join(out, 'key.pem')).mode & 0o777).toBe(0o600);
    const leaf = new X509Certificate(readFileSync(join(out, 'cert-chain.pem')));
    expect(leaf.subjectAltName).toBe('URI:spiffe://cluster.local/ns/default/sa/sleep');
    expect(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()).toBe((7200 + 120) * 1000);
    expect(
      leaf.checkPrivateKey(
        (await import('node:crypto')).createPrivateKey(readFileSync(join(out, 'key.pem'))),
      ),
    ).toBe(true);
    const verified = execFileSync(
      'openssl',
      ['verify', '-CAfile', join(out, 'root-cert.pem'), join(out, 'cert-chain.pem')],
      {
        encoding: 'utf8',
      },
    );
    expect(verified).toMatch(/OK/);
  });

  it('refuses a TTL above 90 days and a missing CA directory, saying which', async () => {
    await expect(
      ambit(
        'ca',
        'issue',
        '--identity',
        'default/sleep',
        '--out',
        join(dir, 'x'),
        '--ca-dir',
        join(dir, 'ca'),
        '--ttl',
        '91d',
      ),
    ).rejects.toThrow(/above the maximum/);
    await expect(
      ambit(
        'ca',
        'issue',
        '--identity',
        'default/sleep',
        '--out',
        join(dir, 'x'),
        '--ca-dir',
        join(dir, 'nope'),
      ),
    ).rejects.toThrow(/--ca-dir .*nope: no ca-cert\.pem/);
  });
});

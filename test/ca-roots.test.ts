// Root lifecycle through a running CA: cacerts hot reload (and refusal of a broken update), and
// same-key self-signed root renewal — checked with openssl as an operator would.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSpiffeId } from '../core/identity/spiffe.js';
import { CaClient } from '../ca/client/ca-client.js';
import { createKeyAndCsr } from '../ca/client/csr.js';
import { CaServer } from '../ca/server/ca-server.js';
import { type CaKeyMaterial, createIntermediateCa, createSelfSignedRoot } from '../ca/server/root.js';
import { Signer, issueWorkloadCertificate } from '../ca/server/signer.js';
import { LocalDirCaStore } from '../ca/server/store.js';

const logger = pino({ level: 'silent' });
const TOKEN = 'sleep-workload-token-0123456789';
const sleep = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
let dir: string;

function writeAtomic(path: string, data: string): void {
  writeFileSync(`${path}.tmp`, data, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

function writeCacerts(cacerts: string, ca: CaKeyMaterial): void {
  writeAtomic(join(cacerts, 'ca-key.pem'), ca.keyPem);
  writeAtomic(join(cacerts, 'cert-chain.pem'), ca.certChainPem.join(''));
  writeAtomic(join(cacerts, 'root-cert.pem'), ca.rootsPem.join(''));
  writeAtomic(join(cacerts, 'ca-cert.pem'), ca.certPem);
}

function tokensFile(): string {
  const p = join(dir, 'tokens.yaml');
  writeFileSync(
    p,
    `tokens:\n  - token: ${TOKEN}\n    identity: spiffe://cluster.local/ns/default/sa/sleep\n`,
  );
  return p;
}

async function issue(server: CaServer): Promise<string[]> {
  const c = new CaClient({ address: server.address, rootsPem: () => server.rootsPem(), token: () => TOKEN });
  try {
    return await c.createCertificate((await createKeyAndCsr(sleep)).csrPem, 600);
  } finally {
    c.close();
  }
}

function opensslVerify(leaf: string, rootsPem: string, untrusted: string[], tag: string): string {
  writeFileSync(join(dir, `${tag}-roots.pem`), rootsPem);
  writeFileSync(join(dir, `${tag}-leaf.pem`), leaf);
  const args = ['verify', '-CAfile', join(dir, `${tag}-roots.pem`)];
  if (untrusted.length) {
    writeFileSync(join(dir, `${tag}-untrusted.pem`), untrusted.join(''));
    args.push('-untrusted', join(dir, `${tag}-untrusted.pem`));
  }
  return execFileSync('openssl', [...args, join(dir, `${tag}-leaf.pem`)], { encoding: 'utf8' });
}

/** Polls `check` every 100 ms until it returns true or `ms` pass. */
async function eventually(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ca-roots-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('plugged-in cacerts', () => {
  it('picks up a cacerts swap without a restart; new leaves chain to the new intermediate', async () => {
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const interA = await createIntermediateCa(root, { commonName: 'Intermediate A' });
    const interB = await createIntermediateCa(root, { commonName: 'Intermediate B' });
    const cacerts = join(dir, 'cacerts');
    mkdirSync(cacerts);
    writeCacerts(cacerts, interA);
    const server = await CaServer.start(
      {
        dir: join(dir, 'ca1'),
        cacertsDir: cacerts,
        tokensFile: tokensFile(),
        listen: '127.0.0.1:0',
        reloadDebounceMs: 100,
      },
      { logger },
    );
    try {
      expect(server.authority.mode).toBe('cacerts');
      const first = await issue(server);
      expect(new X509Certificate(first[0]!).issuer).toBe('CN=Intermediate A');
      expect(opensslVerify(first[0]!, first.at(-1)!, first.slice(1, -1), 'a')).toMatch(/OK/);

      // A partial update (certificate of B with the key of A) is refused; A keeps signing.
      const refused = new Promise<Error>((resolve) => server.authority.once('reloadError', resolve));
      writeAtomic(join(cacerts, 'ca-cert.pem'), interB.certPem);
      expect((await refused).message).toMatch(/CA key does not match the CA certificate/);
      expect(new X509Certificate((await issue(server))[0]!).issuer).toBe('CN=Intermediate A');

      writeCacerts(cacerts, interB);
      await eventually(
        async () => new X509Certificate((await issue(server))[0]!).issuer === 'CN=Intermediate B',
        15_000,
        'leaves signed by intermediate B',
      );
      const second = await issue(server);
      expect(second[1]).toBe(interB.certPem);
      expect(new X509Certificate(second[0]!).checkIssued(new X509Certificate(interB.certPem))).toBe(true);
      expect(opensslVerify(second[0]!, second.at(-1)!, second.slice(1, -1), 'b')).toMatch(/OK/);
      // ...and not to A: verifying with only A as intermediate fails.
      expect(() => opensslVerify(second[0]!, root.certPem, [interA.certPem], 'x')).toThrow();
    } finally {
      await server.close();
    }
  });

  it("signs with an RSA cacerts made by openssl, as Istio's tools/certs Makefile produces them", async () => {
    const c = join(dir, 'openssl-cacerts');
    mkdirSync(c);
    const run = (...args: string[]): string =>
      execFileSync('openssl', args, { cwd: c, encoding: 'utf8', stdio: 'pipe' });
    writeFileSync(
      join(c, 'ca.ext'),
      'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\n',
    );
    run(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'root-key.pem',
      '-out',
      'root-cert.pem',
      '-days',
      '30',
      '-subj',
      '/O=Istio/CN=Root CA',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    );
    run(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca-key.pem',
      '-out',
      'ca.csr',
      '-subj',
      '/O=Istio/CN=Intermediate CA/L=cluster1',
    );
    run(
      'x509',
      '-req',
      '-in',
      'ca.csr',
      '-CA',
      'root-cert.pem',
      '-CAkey',
      'root-key.pem',
      '-CAcreateserial',
      '-out',
      'ca-cert.pem',
      '-days',
      '20',
      '-extfile',
      'ca.ext',
    );
    writeFileSync(
      join(c, 'cert-chain.pem'),
      execFileSync('cat', [join(c, 'ca-cert.pem'), join(c, 'root-cert.pem')]),
    );
    rmSync(join(c, 'root-key.pem'));
    const server = await CaServer.start(
      { dir: join(dir, 'ca-rsa'), cacertsDir: c, tokensFile: tokensFile(), listen: '127.0.0.1:0' },
      { logger },
    );
    try {
      const chain = await issue(server);
      expect(chain).toHaveLength(3); // leaf, intermediate (the root in cert-chain.pem is not repeated), roots
      const text = execFileSync('openssl', ['x509', '-noout', '-text'], {
        input: chain[0],
        encoding: 'utf8',
      });
      expect(text).toMatch(/Signature Algorithm: sha256WithRSAEncryption/);
      expect(opensslVerify(chain[0]!, chain.at(-1)!, chain.slice(1, -1), 'rsa')).toMatch(/OK/);
    } finally {
      await server.close();
    }
  });

  it('refuses to start with a cacerts directory whose certificate does not chain to its roots', async () => {
    const root = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const otherRoot = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const inter = await createIntermediateCa(root);
    const cacerts = join(dir, 'cacerts-bad');
    mkdirSync(cacerts);
    writeCacerts(cacerts, { ...inter, rootsPem: otherRoot.rootsPem, certChainPem: [inter.certPem] });
    await expect(
      CaServer.start({ dir: join(dir, 'ca2'), cacertsDir: cacerts, listen: '127.0.0.1:0' }, { logger }),
    ).rejects.toThrow(/does not chain to any certificate in root-cert\.pem/);
  });
});

describe('self-signed root renewal', () => {
  it('renews a root near its end with the same key; old leaves still verify against the new root', async () => {
    // A root with 30 s left of a 150 s life (NotBefore is 2 min back): within the 20% grace period.
    const oldRoot = await createSelfSignedRoot({ trustDomain: 'cluster.local', ttlDays: 30 / 86400 });
    const store = join(dir, 'ca-renew');
    await new LocalDirCaStore(store).save(oldRoot);
    const oldLeaf = await issueWorkloadCertificate(new Signer(oldRoot), sleep, 600);

    const server = await CaServer.start(
      { dir: store, tokensFile: tokensFile(), listen: '127.0.0.1:0' },
      { logger },
    );
    try {
      const newRootPem = server.authority.signer.ca.certPem;
      const newRoot = new X509Certificate(newRootPem);
      expect(newRoot.serialNumber).not.toBe(new X509Certificate(oldRoot.certPem).serialNumber);
      expect(new Date(newRoot.validTo).getTime()).toBeGreaterThan(Date.now() + 3000 * 86400_000);
      expect(newRoot.publicKey.export({ type: 'spki', format: 'der' })).toEqual(
        new X509Certificate(oldRoot.certPem).publicKey.export({ type: 'spki', format: 'der' }),
      );
      // The leaf issued before the renewal verifies with ONLY the new root as trust anchor.
      expect(opensslVerify(oldLeaf.certChainPem[0]!, newRootPem, [], 'renew')).toMatch(/OK/);
      // The renewed root is persisted, and the bundle carries both roots during the overlap.
      const reloaded = await new LocalDirCaStore(store).load();
      expect(reloaded?.certPem).toBe(newRootPem);
      expect(reloaded?.rootsPem).toHaveLength(2);
      // New leaves are issued and chain to the new root.
      const chain = await issue(server);
      expect(opensslVerify(chain[0]!, newRootPem, [], 'renew2')).toMatch(/OK/);
    } finally {
      await server.close();
    }
  });
});

// A standalone `ambit ca` (the built CLI, as an operator starts it) with the documented `node:` token
// field: the node's ztunnel gets certificates for the pods of its node (ImpersonatedIdentity, through
// the same CaClient + CSR a ztunnel sends) and is refused for a pod of another node; without -m the CA
// refuses impersonation and says what it needs.
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CaClient } from '../ca/client/ca-client.js';
import { createKeyAndCsr } from '../ca/client/csr.js';
import { parseSpiffeId } from '../core/identity/spiffe.js';
import { distPath } from './harness/topology.js';

const dir = mkdtempSync(join(tmpdir(), 'ca-node-token-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const pod = (name: string, node: string, ip: string) => `apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: shop, labels: { app: ${name} } }
spec:
  nodeName: ${node}
  serviceAccountName: ${name}
  containers: [{ name: app, image: example/${name}:1 }]
status: { phase: Running, podIP: ${ip} }
`;
const NODE_A_TOKEN = 'node-a-ztunnel-token-0123456789';

async function startCa(name: string, extra: string[]): Promise<{ address: string; roots: string }> {
  const caDir = join(dir, name);
  const child = spawn(
    process.execPath,
    [
      distPath('cli/ambit.ts'),
      'ca',
      '--dir',
      caDir,
      '--listen',
      '127.0.0.1:0',
      '--tokens',
      join(dir, 'tokens.yaml'),
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  children.push(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  for (let i = 0; i < 200; i++) {
    const m = /serving on (\S+)/.exec(err);
    if (m) return { address: m[1]!, roots: join(caDir, 'istio-ca-root-cert', 'root-cert.pem') };
    if (child.exitCode !== null) throw new Error(`ambit ca exited ${child.exitCode}: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`ambit ca did not start: ${err}`);
}

async function ask(ca: { address: string; roots: string }, identity: string): Promise<string[]> {
  const client = new CaClient({
    address: ca.address,
    rootsPem: () => readFileSync(ca.roots, 'utf8'),
    token: () => NODE_A_TOKEN,
  });
  try {
    const { csrPem } = await createKeyAndCsr(parseSpiffeId(identity));
    return await client.createCertificate(csrPem, 3600, identity);
  } finally {
    client.close();
  }
}

describe('standalone ambit ca: node tokens impersonate that node’s pods', () => {
  const manifests = join(dir, 'manifests');
  it('issues a pod certificate to the node’s ztunnel and refuses a pod of another node', async () => {
    rmSync(manifests, { recursive: true, force: true });
    (await import('node:fs')).mkdirSync(manifests);
    writeFileSync(
      join(manifests, 'ns.yaml'),
      'apiVersion: v1\nkind: Namespace\nmetadata: { name: shop, labels: { istio.io/dataplane-mode: ambient } }\n',
    );
    writeFileSync(join(manifests, 'frontend.yaml'), pod('frontend', 'node-a', '10.244.1.10'));
    writeFileSync(join(manifests, 'reviews.yaml'), pod('reviews', 'node-b', '10.244.2.10'));
    writeFileSync(
      join(dir, 'tokens.yaml'),
      `tokens:\n  - token: ${NODE_A_TOKEN}\n    identity: spiffe://cluster.local/ns/istio-system/sa/ztunnel\n    node: node-a\n`,
    );
    const ca = await startCa('with-m', ['-m', manifests]);
    const chain = await ask(ca, 'spiffe://cluster.local/ns/shop/sa/frontend');
    expect(new X509Certificate(chain[0]!).subjectAltName).toBe(
      'URI:spiffe://cluster.local/ns/shop/sa/frontend',
    );
    await expect(ask(ca, 'spiffe://cluster.local/ns/shop/sa/reviews')).rejects.toThrow(
      /no workload with identity spiffe:\/\/cluster\.local\/ns\/shop\/sa\/reviews runs on node node-a/,
    );
  }, 60_000);

  it('without -m refuses impersonation, naming what it needs', async () => {
    const ca = await startCa('without-m', []);
    await expect(ask(ca, 'spiffe://cluster.local/ns/shop/sa/frontend')).rejects.toThrow(
      /does not know where pods run: start it with -m DIR/,
    );
  }, 60_000);
});

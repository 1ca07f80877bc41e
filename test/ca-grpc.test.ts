// The CA over real gRPC + TLS on loopback: what a ztunnel or an operator would check.
import { execFileSync } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SpiffeId, formatSpiffeId, parseSpiffeId } from '../core/identity/spiffe.js';
import { CaClient } from '../ca/client/ca-client.js';
import { buildCsr, createKeyAndCsr } from '../ca/client/csr.js';
import type { PodLocator } from '../ca/server/auth.js';
import { CaServer } from '../ca/server/ca-server.js';
import { certificatesOf } from '../ca/pem.js';
import { refusal } from './ca-refusal.js';

const logger = pino({ level: 'silent' });
const NODE_A_TOKEN = 'ztunnel-node-a-token-0123456789';
const SLEEP_TOKEN = 'sleep-workload-token-0123456789';
const OTHER_TOKEN = 'other-workload-token-0123456789';

/** A MeshState-free pod locator: which identities have a pod on which node. */
class PodsByNode implements PodLocator {
  constructor(private readonly pods: Array<{ node: string; id: string }>) {}
  hasWorkloadWithIdentityOnNode(identity: SpiffeId, node: string): boolean {
    return this.pods.some((p) => p.node === node && p.id === formatSpiffeId(identity));
  }
}

let dir: string;
let server: CaServer;

function client(token: string | undefined): CaClient {
  return new CaClient({ address: server.address, rootsPem: () => server.rootsPem(), token: () => token });
}

function opensslVerify(chain: string[], where: string): string {
  const roots = chain[chain.length - 1]!;
  writeFileSync(join(where, 'roots.pem'), roots);
  writeFileSync(join(where, 'leaf.pem'), chain[0]!);
  writeFileSync(join(where, 'untrusted.pem'), chain.slice(1, -1).join('') || roots);
  return execFileSync(
    'openssl',
    [
      'verify',
      '-CAfile',
      join(where, 'roots.pem'),
      '-untrusted',
      join(where, 'untrusted.pem'),
      join(where, 'leaf.pem'),
    ],
    { encoding: 'utf8' },
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ca-grpc-'));
  const tokens = join(dir, 'tokens.yaml');
  writeFileSync(
    tokens,
    [
      'tokens:',
      `  - token: ${NODE_A_TOKEN}`,
      '    identity: spiffe://cluster.local/ns/istio-system/sa/ztunnel',
      '    node: node-a',
      `  - token: ${SLEEP_TOKEN}`,
      '    identity: spiffe://cluster.local/ns/default/sa/sleep',
      '    node: node-a',
      `  - token: ${OTHER_TOKEN}`,
      '    identity: spiffe://cluster.local/ns/other/sa/other',
      '',
    ].join('\n'),
  );
  server = await CaServer.start(
    { dir: join(dir, 'ca'), tokensFile: tokens, listen: '127.0.0.1:0' },
    {
      logger,
      podLocator: new PodsByNode([
        { node: 'node-a', id: 'spiffe://cluster.local/ns/default/sa/sleep' },
        { node: 'node-b', id: 'spiffe://cluster.local/ns/default/sa/httpbin' },
      ]),
    },
  );
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('IstioCertificateService over TLS', () => {
  it('issues the caller its own certificate; the chain passes openssl verify', async () => {
    const sleep = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
    const { csrPem } = await createKeyAndCsr(sleep);
    const before = Date.now();
    const chain = await client(SLEEP_TOKEN).createCertificate(csrPem, 3600);
    expect(chain.length).toBeGreaterThanOrEqual(2);
    expect(opensslVerify(chain, dir)).toMatch(/leaf\.pem: OK/);

    const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: chain[0], encoding: 'utf8' });
    expect(text).toMatch(/Subject: *\n/); // empty subject
    expect(text).toMatch(
      /X509v3 Subject Alternative Name: critical\n\s+URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep\n/,
    );
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature, Key Encipherment\n/);
    expect(text).toMatch(
      /X509v3 Extended Key Usage: *\n\s+TLS Web Server Authentication, TLS Web Client Authentication\n/,
    );
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE/);
    const leaf = new X509Certificate(chain[0]!);
    expect(leaf.subjectAltName).toBe('URI:spiffe://cluster.local/ns/default/sa/sleep'); // exactly one SAN
    const back = before - new Date(leaf.validFrom).getTime();
    expect(back).toBeGreaterThan(100_000); // NotBefore is 2 minutes back
    expect(back).toBeLessThan(140_000);
    expect(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()).toBe((3600 + 120) * 1000);
    expect(leaf.serialNumber.replace(/^0+/, '').length).toBeGreaterThan(24); // random 128-bit
  });

  it('uses 24 h when validity_duration is 0', async () => {
    const { csrPem } = await createKeyAndCsr(parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep'));
    const leaf = new X509Certificate((await client(SLEEP_TOKEN).createCertificate(csrPem, 0))[0]!);
    expect(new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()).toBe((86400 + 120) * 1000);
  });

  it('gives a node account the certificate of a workload on its node', async () => {
    const sleep = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
    const { csrPem } = await createKeyAndCsr(sleep);
    const chain = await client(NODE_A_TOKEN).createCertificate(csrPem, 600, formatSpiffeId(sleep));
    expect(new X509Certificate(chain[0]!).subjectAltName).toBe(
      'URI:spiffe://cluster.local/ns/default/sa/sleep',
    );
  });

  it('refuses a node account a workload on another node with PERMISSION_DENIED', async () => {
    const httpbin = parseSpiffeId('spiffe://cluster.local/ns/default/sa/httpbin');
    const { csrPem } = await createKeyAndCsr(httpbin);
    const err = await refusal(client(NODE_A_TOKEN).createCertificate(csrPem, 600, formatSpiffeId(httpbin)));
    expect(err.grpcCode).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.message).toMatch(/no workload with identity .*httpbin runs on node node-a/);
  });

  it('refuses impersonation by an account that is not a trusted node account', async () => {
    const sleep = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
    const { csrPem } = await createKeyAndCsr(sleep);
    const err = await refusal(client(OTHER_TOKEN).createCertificate(csrPem, 600, formatSpiffeId(sleep)));
    expect(err.grpcCode).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.message).toMatch(/not a trusted node account/);
  });

  it('refuses a CSR asking for another identity without impersonation', async () => {
    const { csrPem } = await createKeyAndCsr(parseSpiffeId('spiffe://cluster.local/ns/default/sa/httpbin'));
    const err = await refusal(client(SLEEP_TOKEN).createCertificate(csrPem, 600));
    expect(err.grpcCode).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('answers UNAUTHENTICATED to an unknown or missing token', async () => {
    const { csrPem } = await createKeyAndCsr(parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep'));
    const unknown = await refusal(client('not-a-known-token-at-all-xxxx').createCertificate(csrPem, 600));
    expect(unknown.grpcCode).toBe(grpc.status.UNAUTHENTICATED);
    expect(unknown.message).toMatch(/unknown token/);
    const none = await refusal(client(undefined).createCertificate(csrPem, 600));
    expect(none.grpcCode).toBe(grpc.status.UNAUTHENTICATED);
  });

  describe('refuses bad requests with INVALID_ARGUMENT saying which', () => {
    const sleepUri = 'spiffe://cluster.local/ns/default/sa/sleep';
    const cases: Array<[string, () => Promise<{ csr: string; ttl: number }>, RegExp]> = [
      [
        'a CSR with a bad signature',
        async () => {
          const { csrPem } = await createKeyAndCsr(parseSpiffeId(sleepUri));
          const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
          der[der.length - 3]! ^= 0x40;
          return {
            csr: `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
            ttl: 600,
          };
        },
        /CSR signature is invalid/,
      ],
      [
        'a garbage PEM',
        async () => ({ csr: 'this is not a certificate request', ttl: 600 }),
        /not a PEM "CERTIFICATE REQUEST"/,
      ],
      [
        'an RSA-512 key',
        async () => ({
          csr: buildCsr(generateKeyPairSync('rsa', { modulusLength: 512 }).privateKey, [sleepUri]),
          ttl: 600,
        }),
        /RSA-512, too weak/,
      ],
      [
        'a TTL above the maximum',
        async () => ({ csr: (await createKeyAndCsr(parseSpiffeId(sleepUri))).csrPem, ttl: 91 * 86400 }),
        /TTL 7862400s is above the maximum 7776000s/,
      ],
      [
        'an identity in another trust domain',
        async () => ({
          csr: (await createKeyAndCsr(parseSpiffeId('spiffe://evil.example/ns/default/sa/sleep'))).csrPem,
          ttl: 600,
        }),
        /trust domain "evil\.example"/,
      ],
    ];
    for (const [what, make, message] of cases) {
      it(what, async () => {
        const { csr, ttl } = await make();
        const err = await refusal(client(SLEEP_TOKEN).createCertificate(csr, ttl));
        expect(err.grpcCode).toBe(grpc.status.INVALID_ARGUMENT);
        expect(err.message).toMatch(message);
      });
    }
    it('an impersonated identity in another trust domain', async () => {
      const { csrPem } = await createKeyAndCsr(parseSpiffeId('spiffe://evil.example/ns/default/sa/sleep'));
      const err = await refusal(
        client(NODE_A_TOKEN).createCertificate(csrPem, 600, 'spiffe://evil.example/ns/default/sa/sleep'),
      );
      expect(err.grpcCode).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.message).toMatch(/ImpersonatedIdentity .* trust domain "evil\.example"/);
    });
  });

  it('keeps the root key file private (0600) in the local store', async () => {
    const { statSync } = await import('node:fs');
    expect(statSync(join(dir, 'ca', 'ca-key.pem')).mode & 0o777).toBe(0o600);
    expect(certificatesOf(server.rootsPem())).toHaveLength(1);
  });
});

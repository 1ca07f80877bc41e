// CA throughput: workload certificates issued per second on one core (Node runs the signing on its
// main thread), through the signer alone and through gRPC/TLS end to end (client and server in this
// one process, so that figure is a lower bound), plus the client's key+CSR time. Target ≥ 500 certs/s.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseSpiffeId } from '../core/identity/spiffe.js';
import { CaClient } from '../ca/client/ca-client.js';
import { createKeyAndCsr } from '../ca/client/csr.js';
import { CaServer } from '../ca/server/ca-server.js';
import { createSelfSignedRoot } from '../ca/server/root.js';
import { Signer } from '../ca/server/signer.js';
import type { BenchScenario } from './run.js';

const TARGET_PER_SECOND = 500;
const identity = parseSpiffeId('spiffe://cluster.local/ns/default/sa/bench');

async function timeIt(n: number, fn: (i: number) => Promise<unknown>, concurrency = 1): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await fn(next++);
    }),
  );
  return performance.now() - start;
}

const scenario: BenchScenario = {
  name: 'ca: certificates issued per second (ECDSA P-256)',
  async run() {
    const N = 3000;
    // Client side: key + CSR per identity (what the certificate manager does per request).
    const csrs: string[] = [];
    const keyCsrMs = await timeIt(N, async () => {
      csrs.push((await createKeyAndCsr(identity)).csrPem);
    });

    const signer = new Signer(await createSelfSignedRoot({ trustDomain: 'cluster.local' }));
    for (let i = 0; i < 200; i++) await signer.signCsr(csrs[i]!, { identity, ttlSeconds: 86400 }); // warm up
    const signMs = await timeIt(N, (i) => signer.signCsr(csrs[i]!, { identity, ttlSeconds: 86400 }));
    const signerRate = (N / signMs) * 1000;

    const dir = mkdtempSync(join(tmpdir(), 'ca-bench-'));
    const token = 'bench-token-0123456789abcdef';
    writeFileSync(
      join(dir, 'tokens.yaml'),
      `tokens:\n  - token: ${token}\n    identity: ${'spiffe://cluster.local/ns/default/sa/bench'}\n`,
    );
    const server = await CaServer.start(
      { dir: join(dir, 'ca'), tokensFile: join(dir, 'tokens.yaml'), listen: '127.0.0.1:0' },
      { logger: pino({ level: 'silent' }) },
    );
    const client = new CaClient({
      address: server.address,
      rootsPem: () => server.rootsPem(),
      token: () => token,
    });
    let grpcRate = 0;
    const G = 2000;
    try {
      await timeIt(100, (i) => client.createCertificate(csrs[i]!, 86400));
      const grpcMs = await timeIt(G, (i) => client.createCertificate(csrs[i]!, 86400), 32);
      grpcRate = (G / grpcMs) * 1000;
    } finally {
      client.close();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }

    console.table([
      {
        measure: 'signer: validate CSR + sign leaf',
        count: N,
        'per second': Math.round(signerRate),
        'ms each': (signMs / N).toFixed(3),
      },
      {
        measure: 'gRPC/TLS end to end (32 in flight, client in same process)',
        count: G,
        'per second': Math.round(grpcRate),
        'ms each': (1000 / grpcRate).toFixed(3),
      },
      {
        measure: 'client: P-256 key + CSR',
        count: N,
        'per second': Math.round((N / keyCsrMs) * 1000),
        'ms each': (keyCsrMs / N).toFixed(3),
      },
    ]);
    const verdict = signerRate >= TARGET_PER_SECOND ? 'PASS' : 'FAIL';
    console.log(
      `ca: ${Math.round(signerRate)} certs/s through the signer on one core (target ≥ ${TARGET_PER_SECOND}): ${verdict}`,
    );
    console.log(
      `ca: ${Math.round(grpcRate)} certs/s through gRPC/TLS (target ≥ ${TARGET_PER_SECOND}): ${grpcRate >= TARGET_PER_SECOND ? 'PASS' : 'FAIL'}`,
    );
  },
};

export default scenario;

// Test fixtures for the HBONE suites: a real CA (ca/server) issuing real workload certificates, and
// small stream helpers. Nothing here mocks TLS or HTTP/2.
import type { Duplex } from 'node:stream';
import { createSelfSignedRoot } from '../ca/server/root.js';
import { Signer, issueWorkloadCertificate } from '../ca/server/signer.js';
import type { WorkloadCertificate } from '../ca/client/workload-certificate.js';
import { type SpiffeId, parseSpiffeId } from '../core/identity/spiffe.js';

export const id = (ns: string, sa: string, td = 'cluster.local'): SpiffeId =>
  parseSpiffeId(`spiffe://${td}/ns/${ns}/sa/${sa}`);

export interface TestCa {
  signer: Signer;
  issue(identity: SpiffeId, ttlSeconds?: number): Promise<WorkloadCertificate>;
  /** A signer with the SAME root key but another trust domain: chains verify, the trust domain does not. */
  foreignTrustDomain(td: string): Signer;
}

export async function makeCa(trustDomain = 'cluster.local'): Promise<TestCa> {
  const material = await createSelfSignedRoot({ trustDomain });
  const signer = new Signer(material, { trustDomain });
  return {
    signer,
    issue: (identity, ttl = 3600) => issueWorkloadCertificate(signer, identity, ttl),
    foreignTrustDomain: (td) => new Signer(material, { trustDomain: td }),
  };
}

/** Reads a stream to its end (END_STREAM / FIN), bounded in time. */
export function readAll(stream: Duplex, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => reject(new Error(`stream did not end within ${timeoutMs} ms`)), timeoutMs);
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    stream.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

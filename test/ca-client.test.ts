// The certificate client against a real CA over gRPC/TLS with second-scale lifetimes: rotation at
// 50% of life, backoff while the CA is down (old certificate kept), recovery when it returns, and a
// TLS server that presents the new certificate after rotation without dropping an open connection.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SpiffeId, formatSpiffeId, parseSpiffeId } from '../core/identity/spiffe.js';
import { CaClient } from '../ca/client/ca-client.js';
import { CertificateManager, type WorkloadCertificate } from '../ca/client/cert-manager.js';
import { followRotations } from '../ca/client/tls.js';
import type { PodLocator } from '../ca/server/auth.js';
import { CaServer } from '../ca/server/ca-server.js';

const logger = pino({ level: 'silent' });
const NODE_TOKEN = 'ztunnel-node-a-token-0123456789';
const sleep = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
// NotBefore is 2 min back, so a 126 s certificate lives 246 s and is refreshed at its midpoint,
// 3 s after issue; it stays valid long after that, which lets the test stop the CA meanwhile.
const TTL_SECONDS = 126;

const pods: PodLocator = {
  hasWorkloadWithIdentityOnNode: (id: SpiffeId, node: string) =>
    node === 'node-a' && formatSpiffeId(id) === formatSpiffeId(sleep),
};

let dir: string;
let port = 0;
let server: CaServer | undefined;

async function startCa(): Promise<CaServer> {
  server = await CaServer.start(
    { dir: join(dir, 'ca'), tokensFile: join(dir, 'tokens.yaml'), listen: `127.0.0.1:${port}` },
    { logger, podLocator: pods },
  );
  port = server.port;
  return server;
}

function nextRotation(
  m: CertificateManager,
  deadlineMs: number,
): Promise<[WorkloadCertificate, WorkloadCertificate | undefined, number]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      m.off('rotated', on);
      reject(new Error(`no rotation within ${deadlineMs} ms`));
    }, deadlineMs);
    const on = (c: WorkloadCertificate, prev: WorkloadCertificate | undefined): void => {
      clearTimeout(t);
      m.off('rotated', on);
      resolve([c, prev, Date.now()]);
    };
    m.on('rotated', on);
  });
}

/** Connects and returns the socket with the serial of the certificate the server presented. */
function connect(p: number, roots: string[]): Promise<{ socket: tls.TLSSocket; serial: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: p,
      ca: roots,
      // Workload certificates carry only a SPIFFE URI SAN: check that instead of a hostname.
      checkServerIdentity: (_h, cert) =>
        cert.subjectaltname === `URI:${formatSpiffeId(sleep)}`
          ? undefined
          : new Error(`unexpected SAN ${cert.subjectaltname}`),
    });
    socket.once('secureConnect', () =>
      resolve({ socket, serial: socket.getPeerX509Certificate()!.serialNumber.toLowerCase() }),
    );
    socket.once('error', reject);
  });
}

function echo(socket: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no echo within 5 s')), 5000);
    socket.once('data', (d) => {
      clearTimeout(t);
      resolve(d.toString());
    });
    socket.write(text);
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ca-client-'));
  writeFileSync(
    join(dir, 'tokens.yaml'),
    `tokens:\n  - token: ${NODE_TOKEN}\n    identity: spiffe://cluster.local/ns/istio-system/sa/ztunnel\n    node: node-a\n`,
  );
  await startCa();
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('CertificateManager against a running CA', () => {
  it('rotates at 50%, backs off while the CA is down, keeps the old cert, recovers; TLS follows without dropping', async () => {
    const roots = server!.rootsPem();
    let tokenReads = 0;
    const caClient = new CaClient({
      address: `127.0.0.1:${port}`,
      rootsPem: () => roots,
      token: () => {
        tokenReads++;
        return NODE_TOKEN;
      },
      requestTimeoutMs: 2000,
    });
    const manager = new CertificateManager({
      source: caClient,
      ttlSeconds: TTL_SECONDS,
      initialBackoffMs: 200,
      maxBackoffMs: 1000,
      logger,
    });
    const echoServer = tls.createServer({ minVersion: 'TLSv1.3' }, (s) => s.pipe(s));
    const openSockets: tls.TLSSocket[] = [];
    try {
      const first = await manager.fetch(sleep);
      expect(new X509Certificate(first.certChainPem[0]!).subjectAltName).toBe(`URI:${formatSpiffeId(sleep)}`);
      const stopFollowing = followRotations(echoServer, manager, sleep, { minVersion: 'TLSv1.3' });
      await new Promise<void>((r) => echoServer.listen(0, '127.0.0.1', r));
      const tlsPort = (echoServer.address() as { port: number }).port;
      const c1 = await connect(tlsPort, first.rootsPem);
      openSockets.push(c1.socket);
      expect(c1.serial).toBe(first.serial);

      // 1. Rotation at 50% of life.
      const [second, prev, rotatedAt] = await nextRotation(manager, 20_000);
      expect(prev?.serial).toBe(first.serial);
      const midpoint = first.notBefore.getTime() + (first.notAfter.getTime() - first.notBefore.getTime()) / 2;
      expect(rotatedAt).toBeGreaterThanOrEqual(midpoint - 1000); // not before the midpoint (1 s for second-granular dates)
      expect(rotatedAt).toBeLessThan(first.notAfter.getTime());
      expect(second.serial).not.toBe(first.serial);
      expect(tokenReads).toBeGreaterThanOrEqual(2); // token re-read per request

      // The TLS server now presents the new certificate; the connection opened before still works.
      const c2 = await connect(tlsPort, second.rootsPem);
      openSockets.push(c2.socket);
      expect(c2.serial).toBe(second.serial);
      expect(await echo(c1.socket, 'still-open')).toBe('still-open');

      // 2. CA down: refresh fails, retries back off, the current certificate keeps being served.
      const failures: number[] = [];
      manager.on('fetchFailed', (_id, _err, retryIn) => failures.push(retryIn));
      await server!.close(500);
      server = undefined;
      const deadline = Date.now() + 30_000;
      while (failures.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(failures.length).toBeGreaterThanOrEqual(3);
      expect(failures[1]!).toBeGreaterThan(failures[0]! * 1.4); // exponential (with ±10% jitter)
      expect(manager.current(sleep)?.serial).toBe(second.serial);
      expect(manager.describe()[0]).toMatchObject({ state: 'Available', serial: second.serial });
      expect(manager.describe()[0]?.lastError).toMatch(/UNAVAILABLE/);

      // 3. CA back on the same address (same stored root): the next retry succeeds.
      const recovered = nextRotation(manager, 20_000);
      await startCa();
      const [third] = await recovered;
      expect(third.serial).not.toBe(second.serial);
      expect(manager.describe()[0]).toMatchObject({ state: 'Available', serial: third.serial });
      expect(manager.describe()[0]?.lastError).toBeUndefined();
      const c3 = await connect(tlsPort, third.rootsPem);
      openSockets.push(c3.socket);
      expect(c3.serial).toBe(third.serial);
      expect(await echo(c1.socket, 'survived')).toBe('survived');
      stopFollowing();
    } finally {
      for (const s of openSockets) s.destroy();
      await new Promise((r) => echoServer.close(r));
      manager.close();
      caClient.close();
    }
  }, 90_000);
});

// HBONE over real TLS 1.3 + HTTP/2 on loopback: the client pool against the server, and a hand-written
// raw HBONE client (node:http2 directly) probing the server's refusals (docs/architecture.md §4).
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WorkloadCertificate } from '../ca/client/workload-certificate.js';
import { issueWorkloadCertificate } from '../ca/server/signer.js';
import { createSelfSignedRoot } from '../ca/server/root.js';
import { Signer } from '../ca/server/signer.js';
import { HboneClientPool, type HboneTunnel } from '../core/hbone/client-pool.js';
import { HboneError, PolicyDenied } from '../core/hbone/errors.js';
import { HboneServer, type HboneConnectionInfo, type InboundConnect } from '../core/hbone/server.js';
import { type SpiffeId, formatSpiffeId } from '../core/identity/spiffe.js';
import { type TestCa, id, makeCa, readAll, withTimeout } from './hbone-fixtures.js';

const CLIENT = id('default', 'sleep');
const SERVER = id('default', 'httpbin');
const ECHO_UPPER = 7001; // read to END_STREAM, answer the bytes upper-cased, then END_STREAM
const ECHO = 7002; // pipe back as it comes (a long-lived tunnel)
const DENIED = 7003; // the handler refuses by policy
const SERVER_FIRST = 7004; // the server writes and half-closes first, then reads the client to END_STREAM
const afterServerEnd: string[] = [];

const normSerial = (s: string) => s.toLowerCase().replace(/^0+/, '');

let ca: TestCa;
let serverCert: WorkloadCertificate;
let clientCert: WorkloadCertificate;
let server: HboneServer;
let port: number;
const connects: InboundConnect[] = [];
const secureConnections: HboneConnectionInfo[] = [];
const refused: HboneError[] = [];

beforeAll(async () => {
  ca = await makeCa();
  [serverCert, clientCert] = await Promise.all([ca.issue(SERVER), ca.issue(CLIENT)]);
  server = new HboneServer({
    certificateFor: () => serverCert,
    onConnect: async (_stream, info) => {
      connects.push(info);
      if (info.authority.port === DENIED) throw new PolicyDenied('allow policies exist, but none allowed');
      if (info.authority.port === ECHO_UPPER) {
        const tunnel = info.accept({ 'k8s.namespace.name': 'default', 'service.name': 'httpbin' });
        const body = await readAll(tunnel);
        tunnel.end(body.toString('utf8').toUpperCase());
        return;
      }
      if (info.authority.port === SERVER_FIRST) {
        const tunnel = info.accept();
        tunnel.end('banner');
        afterServerEnd.push((await readAll(tunnel)).toString());
        return;
      }
      if (info.authority.port === ECHO) {
        const tunnel = info.accept();
        tunnel.pipe(tunnel);
        return;
      }
      // Anything else: not handled → the server answers 503 by itself (fail closed).
    },
  });
  server.on('secureConnection', (c: HboneConnectionInfo) => secureConnections.push(c));
  server.on('tlsClientError', (err: HboneError) => refused.push(err));
  port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
});

afterAll(() => {
  server?.destroy();
});

function newPool(certFor?: (identity: SpiffeId) => Promise<WorkloadCertificate>) {
  return new HboneClientPool({ certificateFor: certFor ?? (async () => clientCert) });
}

function tunnelTo(pool: HboneClientPool, targetPort: number, expected: SpiffeId[] = [SERVER]) {
  return pool.connect({
    sourceIdentity: CLIENT,
    expectedIdentities: expected,
    nextHop: { host: '127.0.0.1', port },
    authority: `127.0.0.1:${targetPort}`,
    forwarded: { forIp: '127.0.0.1', forPort: 40000, host: 'httpbin.default.svc.cluster.local' },
    baggage: { 'k8s.namespace.name': 'default', 'k8s.deployment.name': 'sleep' },
  });
}

async function echoOnce(t: HboneTunnel, text: string): Promise<string> {
  return await withTimeout(
    new Promise<string>((resolve, reject) => {
      t.once('data', (d: Buffer) => resolve(d.toString()));
      t.once('error', reject);
      t.write(text);
    }),
    5000,
    'echo',
  );
}

describe('HBONE over TLS 1.3 + HTTP/2 (loopback)', () => {
  it('carries bytes both ways, maps half-close to END_STREAM, and shows the server the client SPIFFE ID', async () => {
    const pool = newPool();
    try {
      const t = await tunnelTo(pool, ECHO_UPPER);
      expect(formatSpiffeId(t.hbone.peerIdentity)).toBe(formatSpiffeId(SERVER));
      expect(t.hbone.responseBaggage['service.name']).toBe('httpbin');
      const payload = 'hello hbone '.repeat(50_000); // 600 KB: several DATA frames and window updates
      t.end(payload); // half-close: the server only answers after it saw END_STREAM
      const answer = await readAll(t);
      expect(answer.toString()).toBe(payload.toUpperCase());
      const seen = connects.at(-1)!;
      expect(formatSpiffeId(seen.peerIdentity)).toBe(formatSpiffeId(CLIENT));
      expect(seen.authorityText).toBe(`127.0.0.1:${ECHO_UPPER}`);
      expect(seen.forwarded).toEqual({
        forIp: '127.0.0.1',
        forPort: 40000,
        host: 'httpbin.default.svc.cluster.local',
      });
      expect(seen.baggage['k8s.deployment.name']).toBe('sleep');
      expect(seen.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      expect(seen.remoteAddress).toBe('127.0.0.1');
      expect(normSerial(seen.peerSerial)).toBe(normSerial(clientCert.serial));
    } finally {
      pool.destroy();
    }
  });

  it('keeps the other direction open after the server half-closes', async () => {
    const pool = newPool();
    try {
      const t = await tunnelTo(pool, SERVER_FIRST);
      const fromServer = await readAll(t); // the server's END_STREAM arrives as 'end'
      expect(fromServer.toString()).toBe('banner');
      t.end('client data after the server closed its side');
      for (let i = 0; i < 200 && afterServerEnd.length === 0; i++)
        await new Promise((r) => setTimeout(r, 10));
      expect(afterServerEnd).toEqual(['client data after the server closed its side']);
    } finally {
      pool.destroy();
    }
  });

  it('negotiates TLS 1.3, an AES-GCM suite and ALPN h2', async () => {
    const pool = newPool();
    try {
      const t = await tunnelTo(pool, ECHO);
      const sock = (t.session as http2.ClientHttp2Session).socket as tls.TLSSocket;
      expect(sock.getProtocol()).toBe('TLSv1.3');
      expect(sock.getCipher().name).toMatch(/^TLS_AES_(128|256)_GCM_SHA(256|384)$/);
      expect(sock.alpnProtocol).toBe('h2');
      // Istio's HTTP/2 settings, as the server advertised them and as our side applied them.
      const session = t.session as http2.ClientHttp2Session;
      expect(session.remoteSettings).toMatchObject({
        initialWindowSize: 4 * 1024 * 1024,
        maxFrameSize: 1024 * 1024,
        maxConcurrentStreams: 200,
        enablePush: false,
      });
      expect(session.localSettings).toMatchObject({
        initialWindowSize: 4 * 1024 * 1024,
        maxFrameSize: 1024 * 1024,
      });
      expect(session.state.effectiveLocalWindowSize).toBe(16 * 1024 * 1024);
      t.end();
      await readAll(t);
    } finally {
      pool.destroy();
    }
  });

  it('refuses a server that presents none of the expected identities', async () => {
    const pool = newPool();
    try {
      const err = await tunnelTo(pool, ECHO, [id('default', 'someone-else')]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HboneError);
      expect((err as HboneError).code).toBe('HBONE_IDENTITY_MISMATCH');
      expect((err as HboneError).responseFlags).toBe('IDENTITY_ERROR');
      expect((err as Error).message).toContain(formatSpiffeId(SERVER));
    } finally {
      pool.destroy();
    }
  });

  it('reports a policy denial as status 401 with flag DENY', async () => {
    const pool = newPool();
    try {
      const err = await tunnelTo(pool, DENIED).catch((e: unknown) => e);
      expect((err as HboneError).code).toBe('HBONE_STATUS');
      expect((err as HboneError).status).toBe(401);
      expect((err as HboneError).responseFlags).toBe('DENY');
    } finally {
      pool.destroy();
    }
  });

  it('puts 150 concurrent streams on exactly 2 connections (100 per connection)', async () => {
    const pool = newPool();
    const before = secureConnections.length;
    const tunnels: HboneTunnel[] = [];
    try {
      tunnels.push(...(await Promise.all(Array.from({ length: 150 }, () => tunnelTo(pool, ECHO)))));
      const echoes = await Promise.all(tunnels.map((t, i) => echoOnce(t, `n${i}`)));
      expect(echoes).toEqual(tunnels.map((_, i) => `n${i}`));
      expect(secureConnections.length - before).toBe(2);
      expect(pool.handshakes).toBe(2);
      const perConnection = new Map<number, number>();
      for (const t of tunnels)
        perConnection.set(t.hbone.localPort, (perConnection.get(t.hbone.localPort) ?? 0) + 1);
      expect([...perConnection.values()].sort((a, b) => a - b)).toEqual([50, 100]);
    } finally {
      for (const t of tunnels) t.destroy();
      pool.destroy();
    }
  });

  it('makes concurrent first users wait for one handshake', async () => {
    const pool = newPool();
    const before = secureConnections.length;
    try {
      const tunnels = await Promise.all(Array.from({ length: 20 }, () => tunnelTo(pool, ECHO)));
      expect(secureConnections.length - before).toBe(1);
      expect(pool.handshakes).toBe(1);
      for (const t of tunnels) t.destroy();
    } finally {
      pool.destroy();
    }
  });

  it('keys the pool by identity: another source identity gets its own connection', async () => {
    const other = id('default', 'curl');
    const otherCert = await ca.issue(other);
    const pool = new HboneClientPool({
      certificateFor: async (who) => (formatSpiffeId(who) === formatSpiffeId(other) ? otherCert : clientCert),
    });
    try {
      const a = await tunnelTo(pool, ECHO);
      const b = await pool.connect({
        sourceIdentity: other,
        expectedIdentities: [SERVER],
        nextHop: { host: '127.0.0.1', port },
        authority: `127.0.0.1:${ECHO}`,
      });
      expect(pool.handshakes).toBe(2);
      expect(formatSpiffeId(connects.at(-1)!.peerIdentity)).toBe(formatSpiffeId(other));
      a.destroy();
      b.destroy();
    } finally {
      pool.destroy();
    }
  });

  it('releases an idle pooled connection after the idle timeout', async () => {
    const pool = new HboneClientPool({
      certificateFor: async () => clientCert,
      settings: { idleReleaseMs: 50 },
    });
    try {
      const t = await tunnelTo(pool, ECHO);
      expect(pool.connectionCount).toBe(1);
      t.end();
      await readAll(t);
      // Bounded wait for the release (not a timing assertion: we only need it to happen).
      for (let i = 0; i < 100 && pool.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(pool.connectionCount).toBe(0);
    } finally {
      pool.destroy();
    }
  });

  it('picks up rotated certificates for new connections while an open tunnel keeps working', async () => {
    const poolA = newPool();
    let rotatedClient: WorkloadCertificate | undefined;
    const poolB = newPool(async () => {
      rotatedClient ??= await ca.issue(CLIENT);
      return rotatedClient;
    });
    const oldServerCert = serverCert;
    try {
      const live = await tunnelTo(poolA, ECHO);
      expect(normSerial(live.hbone.peerSerial)).toBe(normSerial(oldServerCert.serial));
      serverCert = await ca.issue(SERVER); // rotate the server's certificate
      const fresh = await tunnelTo(poolB, ECHO);
      expect(normSerial(fresh.hbone.peerSerial)).toBe(normSerial(serverCert.serial));
      expect(normSerial(fresh.hbone.peerSerial)).not.toBe(normSerial(oldServerCert.serial));
      expect(normSerial(connects.at(-1)!.peerSerial)).toBe(normSerial(rotatedClient!.serial));
      // The tunnel opened before the rotation still moves bytes.
      expect(await echoOnce(live, 'still here')).toBe('still here');
      live.destroy();
      fresh.destroy();
    } finally {
      poolA.destroy();
      poolB.destroy();
    }
  });
});

describe('a hand-written HBONE client (raw node:http2)', () => {
  function rawSession(
    cert: WorkloadCertificate,
    trustRoots = serverCert.rootsPem,
  ): Promise<http2.ClientHttp2Session> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`https://127.0.0.1:${port}`, {
        createConnection: () =>
          tls.connect({
            host: '127.0.0.1',
            port,
            key: cert.keyPem,
            cert: cert.certChainPem.join('\n'),
            ca: trustRoots,
            ALPNProtocols: ['h2'],
            minVersion: 'TLSv1.3',
            checkServerIdentity: () => undefined,
          }),
      });
      const timer = setTimeout(() => {
        session.destroy();
        reject(new Error('no SETTINGS from server'));
      }, 5000);
      session.once('remoteSettings', () => {
        clearTimeout(timer);
        resolve(session);
      });
      session.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      session.once('close', () => {
        clearTimeout(timer);
        reject(new Error('connection closed before HTTP/2 settings'));
      });
    });
  }

  function statusOf(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<number> {
    return withTimeout(
      new Promise<number>((resolve, reject) => {
        const req = session.request(headers, { endStream: false });
        req.once('response', (h) => {
          resolve(Number(h[':status']));
          req.close();
        });
        req.once('error', reject);
      }),
      5000,
      'response',
    );
  }

  it('fails the handshake for a client of another trust domain signed by the same root', async () => {
    const evil = await issueWorkloadCertificate(
      ca.foreignTrustDomain('evil.local'),
      id('default', 'sleep', 'evil.local'),
      600,
    );
    const before = refused.length;
    await expect(rawSession(evil)).rejects.toThrow();
    for (let i = 0; i < 100 && refused.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(refused.at(-1)?.code).toBe('HBONE_PEER_NOT_TRUSTED');
    expect(refused.at(-1)?.message).toContain('not in trust domain cluster.local');
  });

  it('fails the handshake for a client whose chain does not verify against the mesh roots', async () => {
    const otherRoot = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const stranger = await issueWorkloadCertificate(new Signer(otherRoot), CLIENT, 600);
    const before = refused.length;
    await expect(rawSession(stranger)).rejects.toThrow();
    for (let i = 0; i < 100 && refused.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(refused.at(-1)?.code).toBe('HBONE_PEER_NOT_TRUSTED');
    expect(refused.at(-1)?.message).toContain('not verified');
  });

  it('refuses TLS 1.2 and clients that do not negotiate h2', async () => {
    const attempt = (opts: tls.ConnectionOptions) =>
      withTimeout(
        new Promise<string>((resolve) => {
          const sock = tls.connect({
            host: '127.0.0.1',
            port,
            key: clientCert.keyPem,
            cert: clientCert.certChainPem.join('\n'),
            ca: serverCert.rootsPem,
            checkServerIdentity: () => undefined,
            ...opts,
          });
          sock.on('error', (err) => resolve(`error ${err.message}`));
          sock.on('close', () => resolve('closed'));
        }),
        5000,
        'refusal',
      );
    expect(await attempt({ maxVersion: 'TLSv1.2' })).toMatch(/error .*(version|alert)/i);
    const before = refused.length;
    await attempt({ minVersion: 'TLSv1.3' }); // no ALPN offered at all
    for (let i = 0; i < 100 && refused.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(refused.at(-1)?.message).toMatch(/ALPN h2/);
  });

  it('answers 400 to a non-CONNECT method, 400 to a bad or foreign authority, 503 to a loop port', async () => {
    const session = await rawSession(clientCert);
    try {
      expect(
        await statusOf(session, { ':method': 'GET', ':path': '/', ':authority': `127.0.0.1:${ECHO}` }),
      ).toBe(400);
      // (Authorities with spaces never reach us: nghttp2 resets such a stream as a protocol error.)
      expect(await statusOf(session, { ':method': 'CONNECT', ':authority': 'host:port' })).toBe(400);
      expect(await statusOf(session, { ':method': 'CONNECT', ':authority': '300.1.2.3:80' })).toBe(400);
      expect(await statusOf(session, { ':method': 'CONNECT', ':authority': '127.0.0.1' })).toBe(400);
      expect(await statusOf(session, { ':method': 'CONNECT', ':authority': '10.1.2.3:8080' })).toBe(400);
      expect(await statusOf(session, { ':method': 'CONNECT', ':authority': '127.0.0.1:15008' })).toBe(503);
      expect(await statusOf(session, { ':method': 'CONNECT', ':authority': '127.0.0.1:9' })).toBe(503);
      // The same connection still serves a good CONNECT after all those refusals.
      expect(await statusOf(session, { ':method': 'CONNECT', ':authority': `127.0.0.1:${ECHO}` })).toBe(200);
    } finally {
      session.destroy();
    }
  });

  it('keeps serving everyone else after the bad clients', async () => {
    const pool = newPool();
    try {
      const t = await tunnelTo(pool, ECHO_UPPER);
      t.end('still serving');
      expect((await readAll(t)).toString()).toBe('STILL SERVING');
    } finally {
      pool.destroy();
    }
  });
});

describe('HBONE connection limits and liveness', () => {
  it("respects the server's SETTINGS_MAX_CONCURRENT_STREAMS below 100", async () => {
    const small = new HboneServer({
      certificateFor: () => serverCert,
      settings: { serverMaxConcurrentStreams: 10 },
      onConnect: (_s, info) => {
        const t = info.accept();
        t.pipe(t);
      },
    });
    let connections = 0;
    small.on('secureConnection', () => connections++);
    const smallPort = (await small.listen({ host: '127.0.0.1', port: 0 })).port;
    const pool = newPool();
    try {
      const tunnels = await Promise.all(
        Array.from({ length: 15 }, () =>
          pool.connect({
            sourceIdentity: CLIENT,
            expectedIdentities: [SERVER],
            nextHop: { host: '127.0.0.1', port: smallPort },
            authority: `127.0.0.1:${ECHO}`,
          }),
        ),
      );
      expect(connections).toBe(2);
      for (const t of tunnels) t.destroy();
    } finally {
      pool.destroy();
      small.destroy();
    }
  });

  it('drops a connection whose PINGs go unanswered (peer gone silent)', async () => {
    // A relay that forwards normally until told to black-hole server → client bytes.
    let blackhole = false;
    const relay = net.createServer((client) => {
      const upstream = net.connect(port, '127.0.0.1');
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d) => {
        if (!blackhole) client.write(d);
      });
      const kill = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', kill);
      upstream.on('error', kill);
      client.on('close', kill);
      upstream.on('close', kill);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const relayPort = (relay.address() as net.AddressInfo).port;
    const pool = new HboneClientPool({
      certificateFor: async () => clientCert,
      settings: { pingIntervalMs: 50, pingTimeoutMs: 200 },
    });
    try {
      const t = await pool.connect({
        sourceIdentity: CLIENT,
        expectedIdentities: [SERVER],
        nextHop: { host: '127.0.0.1', port: relayPort },
        authority: `127.0.0.1:${ECHO}`,
      });
      expect(await echoOnce(t, 'alive')).toBe('alive');
      blackhole = true;
      const closed = await withTimeout(
        new Promise<boolean>((resolve) => {
          t.once('close', () => resolve(true));
          t.on('error', () => undefined);
        }),
        5000,
        'tunnel close after missed PING',
      );
      expect(closed).toBe(true);
      // The dead connection leaves the pool (its session 'close' follows the stream's).
      for (let i = 0; i < 100 && pool.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(pool.connectionCount).toBe(0);
    } finally {
      pool.destroy();
      relay.close();
    }
  });
});

describe('HBONE server certificate lookup', () => {
  it('waits for an asynchronous certificate lookup without losing the ClientHello', async () => {
    const slow = new HboneServer({
      certificateFor: async () => {
        await new Promise((r) => setTimeout(r, 100)); // e.g. fetching the pod's certificate from the CA
        return serverCert;
      },
      onConnect: (_s, info) => {
        info.accept().end('ok');
      },
    });
    const slowPort = (await slow.listen({ host: '127.0.0.1', port: 0 })).port;
    const pool = newPool();
    try {
      const t = await pool.connect({
        sourceIdentity: CLIENT,
        expectedIdentities: [SERVER],
        nextHop: { host: '127.0.0.1', port: slowPort },
        authority: `127.0.0.1:${ECHO}`,
      });
      t.end();
      expect((await readAll(t)).toString()).toBe('ok');
    } finally {
      pool.destroy();
      slow.destroy();
    }
  });

  it('gives up on a certificate lookup that never answers, within the handshake deadline', async () => {
    const stuck = new HboneServer({
      certificateFor: () => new Promise<undefined>(() => undefined),
      onConnect: () => undefined,
      settings: { handshakeTimeoutMs: 200 },
    });
    const errors: HboneError[] = [];
    stuck.on('tlsClientError', (e: HboneError) => errors.push(e));
    const stuckPort = (await stuck.listen({ host: '127.0.0.1', port: 0 })).port;
    const pool = newPool();
    try {
      const err = await pool
        .connect({
          sourceIdentity: CLIENT,
          expectedIdentities: [SERVER],
          nextHop: { host: '127.0.0.1', port: stuckPort },
          authority: `127.0.0.1:${ECHO}`,
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HboneError);
      expect(errors[0]?.message).toMatch(/certificate lookup for 127.0.0.1 timed out/);
    } finally {
      pool.destroy();
      stuck.destroy();
    }
  });

  it('closes a connection to an address it holds no certificate for', async () => {
    const none = new HboneServer({ certificateFor: () => undefined, onConnect: () => undefined });
    const errors: HboneError[] = [];
    none.on('tlsClientError', (e: HboneError) => errors.push(e));
    const nonePort = (await none.listen({ host: '127.0.0.1', port: 0 })).port;
    const pool = newPool();
    try {
      const err = await pool
        .connect({
          sourceIdentity: CLIENT,
          expectedIdentities: [SERVER],
          nextHop: { host: '127.0.0.1', port: nonePort },
          authority: `127.0.0.1:${ECHO}`,
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HboneError);
      expect(errors.map((e) => e.code)).toEqual(['HBONE_UNKNOWN_DESTINATION']);
    } finally {
      pool.destroy();
      none.destroy();
    }
  });
});

describe('HBONE trust bundle rotation', () => {
  it('trusts clients of a new root once the trust bundle gains it, without a new server leaf', async () => {
    const ca2 = await makeCa();
    const newRootClient = await ca2.issue(CLIENT);
    let current: WorkloadCertificate = serverCert;
    const rotating = new HboneServer({
      certificateFor: () => current,
      onConnect: (_s, i) => void i.accept().end('ok'),
    });
    const rotPort = (await rotating.listen({ host: '127.0.0.1', port: 0 })).port;
    const attempt = async () => {
      // The client trusts both roots; only the server's bundle changes.
      const pool = new HboneClientPool({
        certificateFor: async () => ({
          ...newRootClient,
          rootsPem: [...newRootClient.rootsPem, ...serverCert.rootsPem],
        }),
      });
      try {
        const t = await pool.connect({
          sourceIdentity: CLIENT,
          expectedIdentities: [SERVER],
          nextHop: { host: '127.0.0.1', port: rotPort },
          authority: `127.0.0.1:${ECHO}`,
        });
        t.end();
        return (await readAll(t)).toString();
      } catch (err) {
        return `refused: ${(err as Error).message}`;
      } finally {
        pool.destroy();
      }
    };
    try {
      expect(await attempt()).toMatch(/^refused/);
      current = { ...serverCert, rootsPem: [...serverCert.rootsPem, ...newRootClient.rootsPem] };
      expect(await attempt()).toBe('ok');
    } finally {
      rotating.destroy();
    }
  });
});

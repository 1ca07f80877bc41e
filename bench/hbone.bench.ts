// HBONE transport alone (core/hbone), loopback, client pool and server in ONE process (so one event
// loop carries both ends: figures are a floor for the transport, not ztunnel's). Each figure is shown
// next to plain TCP through the same process, as a ratio. The ztunnel pair benchmark against the C
// mTLS reference lives with ztunnel; this one isolates the TLS + HTTP/2 + CONNECT layer.
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { createSelfSignedRoot } from '../ca/server/root.js';
import { Signer, issueWorkloadCertificate } from '../ca/server/signer.js';
import { HboneClientPool } from '../core/hbone/client-pool.js';
import { HboneServer } from '../core/hbone/server.js';
import { parseSpiffeId } from '../core/identity/spiffe.js';
import type { BenchScenario } from './run.js';

const CLIENT = parseSpiffeId('spiffe://cluster.local/ns/default/sa/bench-client');
const SERVER = parseSpiffeId('spiffe://cluster.local/ns/default/sa/bench-server');
const SINK = 7001; // server drains and answers the byte count at END_STREAM
const ECHO = 7002; // server echoes
const BULK_BYTES = 256 * 1024 * 1024;
const RR_ROUNDS = 2000;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function bulk(sock: Duplex): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const t0 = performance.now();
  const done = new Promise<void>((resolve, reject) => {
    sock.once('data', () => resolve());
    sock.once('error', reject);
  });
  for (let sent = 0; sent < BULK_BYTES; sent += chunk.length) {
    if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  }
  sock.end();
  await done;
  return (BULK_BYTES * 8) / ((performance.now() - t0) / 1000) / 1e9;
}

async function requestResponse(sock: Duplex): Promise<{ p50: number; p99: number }> {
  const req = Buffer.alloc(1024, 0x62);
  const times: number[] = [];
  for (let i = 0; i < RR_ROUNDS; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      const onData = (d: Buffer) => {
        got += d.length;
        if (got >= req.length) {
          sock.off('data', onData);
          resolve();
        }
      };
      sock.on('data', onData);
      sock.write(req);
    });
    times.push((performance.now() - t0) * 1000);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

function serveSinkOrEcho(s: Duplex, mode: 'sink' | 'echo'): void {
  if (mode === 'echo') {
    s.pipe(s);
    return;
  }
  let n = 0;
  s.on('data', (d: Buffer) => {
    n += d.length;
  });
  s.on('end', () => s.end(String(n)));
}

const scenario: BenchScenario = {
  name: 'hbone transport (loopback, one process)',
  async run() {
    const material = await createSelfSignedRoot({ trustDomain: 'cluster.local' });
    const signer = new Signer(material);
    const [serverCert, clientCert] = await Promise.all([
      issueWorkloadCertificate(signer, SERVER, 3600),
      issueWorkloadCertificate(signer, CLIENT, 3600),
    ]);
    const server = new HboneServer({
      certificateFor: () => serverCert,
      onConnect: (_s, info) => serveSinkOrEcho(info.accept(), info.authority.port === SINK ? 'sink' : 'echo'),
    });
    const port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
    const plainSink = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) =>
      serveSinkOrEcho(s, 'sink'),
    );
    const plainEcho = net.createServer({ noDelay: true }, (s) => serveSinkOrEcho(s, 'echo'));
    await Promise.all([
      new Promise<void>((r) => plainSink.listen(0, '127.0.0.1', r)),
      new Promise<void>((r) => plainEcho.listen(0, '127.0.0.1', r)),
    ]);
    const plainPort = (s: net.Server) => (s.address() as net.AddressInfo).port;
    const connectPlain = (p: number) =>
      new Promise<net.Socket>((resolve) => {
        const s = net.connect({ port: p, host: '127.0.0.1', noDelay: true, allowHalfOpen: true }, () =>
          resolve(s),
        );
      });
    const pool = new HboneClientPool({ certificateFor: async () => clientCert });
    const tunnel = (target: number) =>
      pool.connect({
        sourceIdentity: CLIENT,
        expectedIdentities: [SERVER],
        nextHop: { host: '127.0.0.1', port },
        authority: `127.0.0.1:${target}`,
      });
    try {
      const rows: [string, string, string, string][] = [];
      const tcpBulk = await bulk(await connectPlain(plainPort(plainSink)));
      const hbBulk = await bulk(await tunnel(SINK));
      rows.push([
        'bulk, one connection (Gbit/s)',
        tcpBulk.toFixed(2),
        hbBulk.toFixed(2),
        (hbBulk / tcpBulk).toFixed(2),
      ]);

      const tcpSock = await connectPlain(plainPort(plainEcho));
      const tcpRr = await requestResponse(tcpSock);
      tcpSock.destroy();
      const t = await tunnel(ECHO);
      const hbRr = await requestResponse(t);
      t.destroy();
      rows.push([
        '1 KiB rr p50 (µs)',
        tcpRr.p50.toFixed(0),
        hbRr.p50.toFixed(0),
        (hbRr.p50 / tcpRr.p50).toFixed(2),
      ]);
      rows.push([
        '1 KiB rr p99 (µs)',
        tcpRr.p99.toFixed(0),
        hbRr.p99.toFixed(0),
        (hbRr.p99 / tcpRr.p99).toFixed(2),
      ]);

      // New tunnels on a warm pooled connection (one CONNECT round trip each), sequential.
      const N = 500;
      let t0 = performance.now();
      for (let i = 0; i < N; i++) (await tunnel(ECHO)).destroy();
      const streamsPerSec = N / ((performance.now() - t0) / 1000);
      t0 = performance.now();
      for (let i = 0; i < N; i++) (await connectPlain(plainPort(plainEcho))).destroy();
      const tcpPerSec = N / ((performance.now() - t0) / 1000);
      rows.push([
        'new tunnels/s, pooled (seq)',
        tcpPerSec.toFixed(0),
        streamsPerSec.toFixed(0),
        (streamsPerSec / tcpPerSec).toFixed(2),
      ]);

      // New HBONE connections (TCP + TLS 1.3 handshake + SETTINGS), sequential, fresh pool each.
      const M = 100;
      t0 = performance.now();
      for (let i = 0; i < M; i++) {
        const p = new HboneClientPool({ certificateFor: async () => clientCert });
        (
          await p.connect({
            sourceIdentity: CLIENT,
            expectedIdentities: [SERVER],
            nextHop: { host: '127.0.0.1', port },
            authority: `127.0.0.1:${ECHO}`,
          })
        ).destroy();
        p.destroy();
      }
      const handshakesPerSec = M / ((performance.now() - t0) / 1000);
      rows.push([
        'new mTLS connections/s (seq)',
        tcpPerSec.toFixed(0),
        handshakesPerSec.toFixed(0),
        (handshakesPerSec / tcpPerSec).toFixed(2),
      ]);

      console.log(['figure', 'plain TCP', 'HBONE', 'HBONE/TCP'].join('\t'));
      for (const r of rows) console.log(r.join('\t'));
    } finally {
      pool.destroy();
      server.destroy();
      plainSink.close();
      plainEcho.close();
    }
  },
};

export default scenario;

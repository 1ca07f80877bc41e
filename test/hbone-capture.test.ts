// The transparent capture listener and source-IP-preserving HBONE, on real network namespaces:
//
//   pod netns (10.251.0.2) ──veth── node A netns ──veth── node B netns (10.252.0.2)
//                                   nft TPROXY: pod SYNs → :15001        HboneServer :15008
//                                   (transparent listener)
//
// Node A steers the pod's connections to its transparent 15001 listener with nftables TPROXY (the
// fallback capture; tc sk_assign delivers into the same listener), and the outbound handler opens
// HBONE to node B from a transparent socket bound to the POD's IP, so node B sees the pod as the TCP
// peer (docs/capture.md §3). Replies to the pod's IP reach node A's socket through the
// `socket transparent 1` mark + `ip rule fwmark → local` route (docs/capture.md §2).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTransparentSocket,
  nativeAvailable,
  transparentSocketFactory,
} from '../ztunnel/native/index.js';
import { HboneClientPool } from '../core/hbone/client-pool.js';
import { HboneServer, type InboundConnect } from '../core/hbone/server.js';
import { trustedSourceAddress } from '../core/hbone/source-address.js';
import { type SpiffeId, formatSpiffeId } from '../core/identity/spiffe.js';
import type { CaptureContext, CaptureRejection } from '../ztunnel/capture.js';
import { TransparentListener } from '../ztunnel/transparent-listener.js';
import { id, makeCa, readAll } from './hbone-fixtures.js';

const root = process.getuid?.() === 0;
const canRun = root && nativeAvailable();

const r = randomBytes(3).toString('hex');
const NS = { a: `ah-${r}-a`, b: `ah-${r}-b`, pod: `ah-${r}-p` };
const path = (ns: string) => `/run/netns/${ns}`;
const POD_IP = '10.251.0.2';
const NODE_B_IP = '10.252.0.2';
// Two pods on node B (addresses only: inbound HBONE terminates in node B's ztunnel).
const POD_B1 = { ip: '10.253.0.2', identity: id('default', 'httpbin') };
const POD_B2 = { ip: '10.253.0.3', identity: id('shop', 'cart') };
const VIP = '10.96.0.10';
const CLIENT = id('default', 'sleep');
const SERVER = id('default', 'httpbin');

function sh(args: string[], input?: string): string {
  return execFileSync(args[0]!, args.slice(1), { stdio: 'pipe', input, timeout: 10_000 }).toString();
}
const ipn = (ns: string, ...args: string[]) => sh(['ip', '-n', ns, ...args]);

function buildTopology(): void {
  for (const ns of Object.values(NS)) sh(['ip', 'netns', 'add', ns]);
  sh([
    'ip',
    'link',
    'add',
    `ah${r}pa`,
    'netns',
    NS.a,
    'type',
    'veth',
    'peer',
    'name',
    `ah${r}pp`,
    'netns',
    NS.pod,
  ]);
  sh([
    'ip',
    'link',
    'add',
    `ah${r}la`,
    'netns',
    NS.a,
    'type',
    'veth',
    'peer',
    'name',
    `ah${r}lb`,
    'netns',
    NS.b,
  ]);
  for (const ns of Object.values(NS)) {
    ipn(ns, 'link', 'set', 'lo', 'up');
    // docs/capture.md §4: test with early demux off, so it cannot mask a missing steering rule.
    sh(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_early_demux=0']);
  }
  ipn(NS.pod, 'addr', 'add', `${POD_IP}/24`, 'dev', `ah${r}pp`);
  ipn(NS.pod, 'link', 'set', `ah${r}pp`, 'up');
  ipn(NS.pod, 'route', 'add', 'default', 'via', '10.251.0.1');
  ipn(NS.a, 'addr', 'add', '10.251.0.1/24', 'dev', `ah${r}pa`);
  ipn(NS.a, 'addr', 'add', '10.252.0.1/24', 'dev', `ah${r}la`);
  ipn(NS.a, 'link', 'set', `ah${r}pa`, 'up');
  ipn(NS.a, 'link', 'set', `ah${r}la`, 'up');
  ipn(NS.b, 'addr', 'add', `${NODE_B_IP}/24`, 'dev', `ah${r}lb`);
  ipn(NS.b, 'link', 'set', `ah${r}lb`, 'up');
  ipn(NS.b, 'route', 'add', '10.251.0.0/24', 'via', '10.252.0.1');
  ipn(NS.a, 'route', 'add', '10.253.0.0/24', 'via', NODE_B_IP);
  // Node B: HBONE to its pods (10.253.0.0/24, port 15008) is captured into the transparent 15008
  // listener, as bpf-redirect's inbound steering does.
  ipn(NS.b, 'rule', 'add', 'fwmark', '0x400/0x400', 'lookup', '133', 'pref', '100');
  ipn(NS.b, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '133');
  sh(
    ['ip', 'netns', 'exec', NS.b, 'nft', '-f', '-'],
    `table ip ah_capture {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 0x400 accept
    iifname "ah${r}lb" ip daddr 10.253.0.0/24 tcp dport 15008 tcp flags & (syn|ack) == syn tproxy to :15008 meta mark set 0x400 accept
  }
}
`,
  );
  // Marked packets are delivered locally: TPROXY'd SYNs and every packet of a transparent socket.
  ipn(NS.a, 'rule', 'add', 'fwmark', '0x400/0x400', 'lookup', '133', 'pref', '100');
  ipn(NS.a, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '133');
  sh(
    ['ip', 'netns', 'exec', NS.a, 'nft', '-f', '-'],
    `table ip ah_capture {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    meta l4proto tcp socket transparent 1 meta mark set 0x400 accept
    iifname "ah${r}pa" meta l4proto tcp tcp flags & (syn|ack) == syn tproxy to :15001 meta mark set 0x400 accept
  }
}
`,
  );
}

function teardown(): void {
  for (const ns of Object.values(NS)) {
    try {
      sh(['ip', 'netns', 'del', ns]);
    } catch {
      // not created
    }
  }
}

/** A client inside the pod netns: connect, optionally send, read to the end (bounded). */
function podConnect(host: string, port: number, send?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const fd = createTransparentSocket(POD_IP, 0, path(NS.pod));
    const s = new net.Socket({ fd, readable: true, writable: true });
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`pod connection to ${host}:${port} timed out`));
    }, 10_000);
    s.on('data', (d) => {
      buf += d;
    });
    s.on('end', () => {
      clearTimeout(timer);
      resolve(buf);
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.connect(port, host, () => {
      if (send !== undefined) s.end(send);
    });
  });
}

describe.skipIf(!canRun)('transparent capture listener and source-IP HBONE (netns)', () => {
  let listener: TransparentListener;
  let hboneServer: HboneServer;
  let inboundListener: TransparentListener;
  let pool: HboneClientPool;
  let onCaptured: (socket: net.Socket, ctx: CaptureContext) => void = (s) => s.destroy();
  const rejections: CaptureRejection[] = [];
  const inbound: InboundConnect[] = [];

  beforeAll(async () => {
    teardown();
    buildTopology();
    const ca = await makeCa();
    const [serverCert, clientCert, b1Cert, b2Cert] = await Promise.all([
      ca.issue(SERVER),
      ca.issue(CLIENT),
      ca.issue(POD_B1.identity),
      ca.issue(POD_B2.identity),
    ]);
    // No SNI in HBONE: the certificate is chosen by the destination the connection reached.
    const certs = new Map([
      [NODE_B_IP, serverCert],
      [POD_B1.ip, b1Cert],
      [POD_B2.ip, b2Cert],
    ]);

    listener = new TransparentListener({ kind: 'outbound', netnsPath: path(NS.a) });
    listener.on('connection', (s, ctx) => onCaptured(s, ctx));
    listener.on('rejected', (rej) => rejections.push(rej));
    await listener.start();

    hboneServer = new HboneServer({
      certificateFor: (local) => certs.get(local.address),
      onConnect: (_stream, info) => {
        inbound.push(info);
        const tunnel = info.accept();
        tunnel.end(
          `peer ${info.remoteAddress} identity ${formatSpiffeId(info.peerIdentity)} server ${formatSpiffeId(info.serverIdentity)}`,
        );
        tunnel.resume();
      },
    });
    // Node B's 15008 is itself a transparent capture listener feeding the HBONE server.
    inboundListener = new TransparentListener({ kind: 'inbound-hbone', netnsPath: path(NS.b) });
    inboundListener.on('connection', (socket) => hboneServer.serve(socket));
    await inboundListener.start();

    pool = new HboneClientPool({
      certificateFor: async () => clientCert,
      createSocket: transparentSocketFactory({ netnsPath: path(NS.a) }),
    });
  });

  afterAll(async () => {
    pool?.destroy();
    hboneServer?.destroy();
    await listener?.close();
    await inboundListener?.close();
    teardown();
  });

  it('hands over a connection to a non-local address with localAddress = the original destination', async () => {
    let seen: CaptureContext | undefined;
    let seenLocal = '';
    onCaptured = (s, ctx) => {
      seen = ctx;
      seenLocal = `${s.localAddress}:${s.localPort}`;
      s.end(`captured ${ctx.originalDst.address}:${ctx.originalDst.port}`);
    };
    const reply = await podConnect(VIP, 80);
    expect(reply).toBe(`captured ${VIP}:80`);
    expect(seenLocal).toBe(`${VIP}:80`);
    expect(seen?.kind).toBe('outbound');
    expect(seen?.originalDst).toEqual({ address: VIP, port: 80, family: 4 });
    expect(seen?.source.address).toBe(POD_IP);
  });

  it('resets connections whose original destination is a ztunnel port (loop guard)', async () => {
    let handed = 0;
    onCaptured = (s) => {
      handed++;
      s.destroy();
    };
    const before = rejections.length;
    await expect(podConnect(VIP, 15006)).rejects.toThrow(/ECONNRESET|closed|reset/i);
    expect(handed).toBe(0);
    expect(rejections.length).toBe(before + 1);
    expect(rejections.at(-1)).toMatchObject({ reason: 'loop', originalDst: { address: VIP, port: 15006 } });
  });

  it("tunnels over HBONE from the pod's IP: the destination node sees the pod as the TCP peer", async () => {
    onCaptured = (socket, ctx) => {
      socket.pause();
      pool
        .connect({
          sourceIdentity: CLIENT,
          expectedIdentities: [SERVER],
          nextHop: { host: NODE_B_IP, port: 15008 },
          sourceIp: ctx.source.address,
          authority: `${NODE_B_IP}:9000`,
          forwarded: { forIp: ctx.source.address, forPort: ctx.source.port },
        })
        .then(
          (tunnel) => {
            socket.pipe(tunnel);
            tunnel.pipe(socket);
            socket.resume();
            tunnel.on('error', () => socket.destroy());
            socket.on('error', () => tunnel.destroy());
          },
          () => socket.resetAndDestroy(),
        );
    };
    const reply = await podConnect(VIP, 80, 'hello');
    expect(reply).toBe(`peer ${POD_IP} identity ${formatSpiffeId(CLIENT)} server ${formatSpiffeId(SERVER)}`);
    const info = inbound.at(-1)!;
    expect(info.remoteAddress).toBe(POD_IP);
    expect(info.localAddress).toBe(NODE_B_IP);
    expect(info.forwarded?.forIp).toBe(POD_IP);
    // The forwarded address names the TCP peer itself: consistent, nothing new claimed.
    const decision = trustedSourceAddress(
      {
        peerIdentity: info.peerIdentity,
        tcpPeer: info.remoteAddress,
        ...(info.forwarded ? { forwarded: info.forwarded } : {}),
      },
      { workloadByIp: () => undefined, nodeOfProxyIp: () => undefined },
    );
    expect(decision.address).toBe(POD_IP);
  });

  it("answers HBONE captured for a pod with that pod's certificate (chosen by destination, no SNI)", async () => {
    const tunnelToPod = (podIp: string, expected: SpiffeId, authorityIp = podIp) =>
      pool.connect({
        sourceIdentity: CLIENT,
        expectedIdentities: [expected],
        nextHop: { host: podIp, port: 15008 },
        sourceIp: POD_IP,
        authority: `${authorityIp}:8080`,
      });
    for (const pod of [POD_B1, POD_B2]) {
      const t = await tunnelToPod(pod.ip, pod.identity);
      expect(formatSpiffeId(t.hbone.peerIdentity)).toBe(formatSpiffeId(pod.identity));
      t.end();
      expect((await readAll(t)).toString()).toBe(
        `peer ${POD_IP} identity ${formatSpiffeId(CLIENT)} server ${formatSpiffeId(pod.identity)}`,
      );
      expect(inbound.at(-1)?.localAddress).toBe(pod.ip);
    }
    // B2's address presents B2's certificate, so a client expecting B1 there refuses it.
    await expect(tunnelToPod(POD_B2.ip, POD_B1.identity)).rejects.toMatchObject({
      code: 'HBONE_IDENTITY_MISMATCH',
    });
    // An authority naming another pod than the one reached: 400 (istio "ip mismatch").
    await expect(tunnelToPod(POD_B2.ip, POD_B2.identity, POD_B1.ip)).rejects.toMatchObject({ status: 400 });
  });
});

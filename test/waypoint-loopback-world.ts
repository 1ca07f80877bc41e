// A waypoint world on loopback addresses only (no root needed): the real WaypointProxy with a
// certificate from a real CA, real HBONE servers standing for the destination ztunnels (they accept the
// waypoint's tunnels, record the peer identity and pipe to the app on podIP:targetPort), real HTTP and
// gRPC apps, and a client-side relay doing what the client's ztunnel does: each TCP connection becomes
// an HBONE tunnel to the waypoint with the CLIENT's certificate and `:authority` = service VIP:port.
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { HboneClientPool } from '../core/hbone/client-pool.js';
import { HboneServer } from '../core/hbone/server.js';
import { type SpiffeId, formatSpiffeId } from '../core/identity/spiffe.js';
import { ManifestSource } from '../core/sources/manifests.js';
import { WaypointProxy } from '../waypoint/waypoint.js';
import { type TestCa, id, makeCa } from './hbone-fixtures.js';
import { loadProductService } from './waypoint-proto.js';

export { loadProductService };

export const VIP_USERS = '10.96.0.20';
export const VIP_PRODUCTS = '10.96.0.21';
export const VIP_OTHER = '10.96.0.22';
export const VIP_TCP = '10.96.0.24';
export const CLIENT = id('demo', 'client');
export const OTHER_CLIENT = id('demo', 'other');
export const WAYPOINT = id('demo', 'waypoint');

/** What an app received: every request head it parsed, and raw bytes that reached an upgrade socket. */
export interface AppSaw {
  app: string;
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  upgrade: boolean;
  raw?: string;
}

export interface LoopbackWorldOptions {
  /** WaypointProxy config fields (e.g. pathNormalization). */
  waypoint?: Record<string, unknown>;
  /** Watch the manifest directory (as a running component does) instead of syncing on apply(). */
  watch?: boolean;
}

/** What each destination HBONE server saw: the peer identity of every tunnel it accepted. */
export interface DestinationLog {
  peers: string[];
}

export class LoopbackWorld {
  readonly dir: string;
  readonly base: string;
  source!: ManifestSource;
  waypoint!: WaypointProxy;
  ca!: TestCa;
  readonly destinations = new Map<string, DestinationLog>();
  private readonly servers: { close(): unknown }[] = [];
  private readonly hboneServers: HboneServer[] = [];
  private readonly pools: HboneClientPool[] = [];
  hbonePort = 0;
  /** Slow-backend delay (ms) and 503 injection counter for the users app, set by tests. */
  usersDelayMs = 0;
  failNext = 0;
  /** Everything the HTTP apps received, in order (tests assert what a refused request never became). */
  readonly appSaw: AppSaw[] = [];

  constructor(private readonly options: LoopbackWorldOptions = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'awp-loop-'));
    // Loopback /8: a random 127.x.y.0/24 per run so parallel suites never collide on app ports.
    this.base = `127.${randomInt(1, 250)}.${randomInt(1, 250)}`;
  }

  ip(n: number): string {
    return `${this.base}.${n}`;
  }

  write(name: string, yaml: string): void {
    writeFileSync(join(this.dir, name), yaml);
  }

  async apply(name: string, yaml: string): Promise<void> {
    this.write(name, yaml);
    await this.source.sync();
  }

  async remove(name: string): Promise<void> {
    rmSync(join(this.dir, name), { force: true });
    await this.source.sync();
  }

  private pod(name: string, ip: string, sa: string, labels: Record<string, string>): string {
    return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: demo
  labels: ${JSON.stringify(labels)}
spec:
  nodeName: node-b
  serviceAccountName: ${sa}
  containers: [{ name: app, image: example/app:1 }]
status:
  phase: Running
  podIP: ${ip}
`;
  }

  private cluster(): string {
    const svc = (name: string, vip: string, port: number, target: number, selector: Record<string, string>) =>
      `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: demo
  labels: { istio.io/use-waypoint: waypoint }
spec:
  clusterIP: ${vip}
  selector: ${JSON.stringify(selector)}
  ports: [{ name: http, port: ${port}, targetPort: ${target} }]
`;
    return [
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n',
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n  labels: { istio.io/dataplane-mode: ambient }\n',
      `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: waypoint
  namespace: demo
  labels: { istio.io/waypoint-for: all }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
`,
      this.pod('users-v1', this.ip(11), 'users', { app: 'users', version: 'v1' }),
      this.pod('users-v2', this.ip(12), 'users', { app: 'users-v2', version: 'v2' }),
      this.pod('products-1', this.ip(13), 'products', { app: 'products' }),
      this.pod('tcp-1', this.ip(14), 'tcp', { app: 'tcp-echo' }),
      // Addressed by pod IP, bound to the waypoint by its own label (waypoint-for: all covers workloads).
      this.pod('direct-1', this.ip(15), 'users', { app: 'direct', 'istio.io/use-waypoint': 'waypoint' }),
      svc('users', VIP_USERS, 80, 8080, { app: 'users' }),
      svc('users-v2', '10.96.0.23', 80, 8080, { app: 'users-v2' }),
      svc('products', VIP_PRODUCTS, 9000, 9090, { app: 'products' }),
      svc('tcp-echo', VIP_TCP, 7000, 7000, { app: 'tcp-echo' }),
      // A service NOT bound to the waypoint: tunnels for it must be refused with 400.
      `apiVersion: v1\nkind: Service\nmetadata:\n  name: other\n  namespace: demo\n  labels: { istio.io/use-waypoint: none }\nspec:\n  clusterIP: ${VIP_OTHER}\n  selector: { app: users }\n  ports: [{ name: http, port: 80, targetPort: 8080 }]\n`,
    ].join('---\n');
  }

  static async create(options: LoopbackWorldOptions = {}): Promise<LoopbackWorld> {
    const w = new LoopbackWorld(options);
    try {
      await w.build();
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  private async build(): Promise<void> {
    this.ca = await makeCa();
    this.write('cluster.yaml', this.cluster());
    this.source = new ManifestSource(this.dir, {
      watch: this.options.watch ?? false,
      logger: pino({ level: 'silent' }),
    });
    await this.source.start();
    // Apps on podIP:targetPort.
    for (const [n, version] of [
      [11, 'v1'],
      [12, 'v2'],
      [15, 'direct'],
    ] as const) {
      const app = http.createServer((req, res) => {
        this.appSaw.push({
          app: version,
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          upgrade: false,
        });
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const reply = (): void => {
            if (this.failNext > 0) {
              this.failNext--;
              res.writeHead(503, { 'content-type': 'text/plain' });
              res.end('injected failure');
              return;
            }
            res.writeHead(200, { 'content-type': 'application/json', 'x-app-version': version });
            res.end(
              JSON.stringify({
                version,
                method: req.method,
                path: req.url,
                headers: req.headers,
                body: Buffer.concat(chunks).toString(),
              }),
            );
          };
          if (this.usersDelayMs > 0) setTimeout(reply, this.usersDelayMs);
          else reply();
        });
      });
      // An upgrade (WebSocket-like) endpoint: 101, then echo.
      app.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
        const saw: AppSaw = {
          app: version,
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          upgrade: true,
          raw: head.toString('latin1'),
        };
        this.appSaw.push(saw);
        if (req.url?.startsWith('/no-upgrade')) {
          // Refuses the upgrade, and records whatever else arrives on the socket for a while.
          socket.on('data', (c: Buffer) => {
            saw.raw += c.toString('latin1');
          });
          socket.write(
            'HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 8\r\n\r\nno such\n',
          );
          setTimeout(() => socket.end(), 300);
          return;
        }
        socket.write(
          `HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: Upgrade\r\nx-app-version: ${version}\r\n\r\n`,
        );
        socket.pipe(socket);
      });
      await new Promise<void>((r) => app.listen(8080, this.ip(n), r));
      this.servers.push({
        close: () => {
          app.closeAllConnections();
          app.close();
        },
      });
    }
    const ProductService = loadProductService();
    const g = new grpc.Server();
    g.addService(ProductService.service, {
      getProduct: (call: grpc.ServerUnaryCall<{ id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
        cb(null, { id: call.request.id, name: `product ${call.request.id}`, servedBy: 'products-1' }),
      deleteProduct: (call: grpc.ServerUnaryCall<{ id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
        cb(null, { id: call.request.id, name: 'deleted', servedBy: 'products-1' }),
    });
    await new Promise<void>((resolve, reject) =>
      g.bindAsync(`${this.ip(13)}:9090`, grpc.ServerCredentials.createInsecure(), (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    this.servers.push({ close: () => g.forceShutdown() });
    // Destination "ztunnels": real HBONE servers on each pod IP, same port, piping to podIP:targetPort.
    // An opaque TCP app (a line echo that speaks first: not HTTP).
    const echo = net.createServer((sock) => {
      sock.write('echo ready\n');
      sock.pipe(sock);
    });
    await new Promise<void>((r) => echo.listen(7000, this.ip(14), r));
    this.servers.push({ close: () => echo.close() });
    for (const n of [11, 12, 13, 14, 15]) {
      const ip = this.ip(n);
      const log: DestinationLog = { peers: [] };
      this.destinations.set(ip, log);
      const sa = n === 13 ? 'products' : n === 14 ? 'tcp' : 'users';
      const cert = await this.ca.issue(id('demo', sa));
      const server = new HboneServer({
        certificateFor: () => cert,
        onConnect: async (_stream, info) => {
          log.peers.push(formatSpiffeId(info.peerIdentity));
          if (info.authority.kind !== 'ip') throw new Error('ip authority expected');
          const upstream = net.connect({ host: info.authority.ip, port: info.authority.port });
          await new Promise<void>((resolve, reject) => {
            upstream.once('connect', resolve);
            upstream.once('error', reject);
          });
          const tunnel = info.accept();
          void Promise.allSettled([pipeline(tunnel, upstream), pipeline(upstream, tunnel)]);
        },
      });
      const a = await server.listen({ host: ip, port: this.hbonePort });
      this.hbonePort = a.port;
      this.hboneServers.push(server);
    }
    const wpPool = new HboneClientPool({ certificateFor: (i) => this.ca.issue(i) });
    this.pools.push(wpPool);
    const wpCert = await this.ca.issue(WAYPOINT);
    this.waypoint = new WaypointProxy(
      {
        name: 'waypoint',
        namespace: 'demo',
        listenAddress: this.ip(20),
        listenPort: 0,
        upstreamHbonePort: this.hbonePort,
        statsAddress: this.ip(20),
        statsPort: 0,
        logLevel: (process.env.AWP_LOG_LEVEL as 'debug' | undefined) ?? 'silent',
        maxBufferedBodyBytes: 64 * 1024,
        limits: { headersTimeoutMs: 1000, maxResetsPerWindow: 50 },
        ...this.options.waypoint,
      },
      { state: this.source.state, certificates: { fetch: async () => wpCert }, hbone: wpPool },
    );
    await this.waypoint.start();
  }

  /**
   * What the client's ztunnel does: a local TCP port whose connections are tunnelled over HBONE to the
   * waypoint, as `identity`, with `:authority` = `authority`. Returns host:port for real clients.
   */
  async clientRelay(authority: string, identity: SpiffeId = CLIENT): Promise<{ host: string; port: number }> {
    const pool = new HboneClientPool({ certificateFor: (i) => this.ca.issue(i) });
    this.pools.push(pool);
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      pool
        .connect({
          sourceIdentity: identity,
          expectedIdentities: [WAYPOINT],
          nextHop: { host: this.ip(20), port: this.waypoint.ports.hbone },
          authority,
        })
        .then(
          (tunnel) => void Promise.allSettled([pipeline(socket, tunnel), pipeline(tunnel, socket)]),
          () => socket.destroy(),
        );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    this.servers.push({ close: () => server.close() });
    return { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
  }

  /** A raw HBONE tunnel to the waypoint (for status checks and hand-written abuse). */
  async tunnel(authority: string, identity: SpiffeId = CLIENT) {
    const pool = new HboneClientPool({ certificateFor: (i) => this.ca.issue(i) });
    this.pools.push(pool);
    return pool.connect({
      sourceIdentity: identity,
      expectedIdentities: [WAYPOINT],
      nextHop: { host: this.ip(20), port: this.waypoint.ports.hbone },
      authority,
    });
  }

  async metrics(): Promise<string> {
    const r = await fetch(`http://${this.ip(20)}:${this.waypoint.ports.stats}/metrics`);
    return r.text();
  }

  async close(): Promise<void> {
    await this.waypoint?.close().catch(() => undefined);
    for (const p of this.pools) p.destroy();
    for (const s of this.hboneServers) s.destroy();
    for (const s of this.servers) s.close();
    await this.source?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

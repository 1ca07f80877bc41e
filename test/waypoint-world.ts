// The world the waypoint end-to-end tests run in (issue 6 "Done when"): two node netns, the CA in node a,
// the bpf-redirect agent capturing into a real `ambit ztunnel` per node, and a real `ambit waypoint` in its
// own pod netns on node b — all reading one manifest directory. Client pods a1 (sa client) and a2 (sa
// other) on node a; users v1 (b1), users-v2 (b2) and products (b3, gRPC) on node b, their Services bound
// to the waypoint with istio.io/use-waypoint. Kernel objects are named `awp` + random through the
// harness and removed in teardown(); every wait is bounded.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningAgent } from './harness/capture.js';
import {
  keepLogs,
  startMeshAgents,
  startMeshCa,
  teardownMeshAgents,
  waypointArgs,
  writeMeshTokens,
  ztunnelStateArgs,
} from './harness/mesh.js';
import { waitReady } from './harness/processes.js';
import { HarnessError, type Topology } from './harness/topology.js';
import { createWorld } from './harness/world.js';

export const VIP_USERS = '10.96.0.20';
export const VIP_USERS_V2 = '10.96.0.23';
export const VIP_PRODUCTS = '10.96.0.21';
const WAYPOINT_TOKEN = 'waypoint-demo-token-0123456789abcdef';

interface Proc {
  child: ChildProcess;
  logs(): string;
}

/** A pod's real clients (test/waypoint-client.ts) driven over IPC. */
export class PodClients {
  private next = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  constructor(private readonly child: ChildProcess) {
    child.on('message', (m: { id?: number; result?: unknown; error?: string }) => {
      if (m.id === undefined) return;
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.error !== undefined) w?.reject(new Error(m.error));
      else w?.resolve(m.result);
    });
  }

  run<T>(op: Record<string, unknown>, timeoutMs = 60_000): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(
          new HarnessError('CLIENT_TIMEOUT', `client op ${String(op.op)} gave no answer in ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ id, ...op });
    });
  }

  http(
    url: string,
    opts: { method?: string; headers?: Record<string, string>; count?: number; concurrency?: number } = {},
  ) {
    return this.run<{
      statuses: Record<string, number>;
      versions: Record<string, number>;
      first?: { status: number; body: string; headers: Record<string, string> };
    }>({ op: 'http', url, ...opts });
  }

  grpc(target: string, rpc: 'getProduct' | 'deleteProduct', productId: string) {
    return this.run<{
      ok: boolean;
      res?: { id: string; name: string; servedBy: string };
      code?: number;
      details?: string;
    }>({ op: 'grpc', target, rpc, productId });
  }

  raw(host: string, port: number, data: string, waitMs = 3000) {
    return this.run<{ text: string; closed: boolean }>({ op: 'raw', host, port, data, waitMs });
  }

  h2abuse(url: string, streams: number, resets: number, maxMs = 15_000) {
    return this.run<{ maxStreams?: number; refused: number; ok: number; goaway?: number; closed: boolean }>(
      { op: 'h2abuse', url, streams, resets, maxMs },
      maxMs + 5000,
    );
  }

  slowloris(host: string, port: number, intervalMs: number, maxMs: number) {
    return this.run<{ text: string; closed: boolean; elapsedMs: number }>({
      op: 'slowloris',
      host,
      port,
      intervalMs,
      maxMs,
    });
  }
}

export class WaypointWorld {
  readonly dir: string;
  readonly manifests: string;
  readonly procs = new Map<string, Proc>();
  agents = new Map<string, RunningAgent>();
  readonly clients = new Map<string, PodClients>();

  private constructor(
    readonly topo: Topology,
    readonly mode: 'nftables' | 'ebpf',
    /** Extra `ambit waypoint` flags, or a function of the topology (addresses are known only then). */
    private readonly waypointExtra: (t: Topology) => string[] = () => [],
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `${topo.prefix}-`));
    this.manifests = join(this.dir, 'cluster');
    mkdirSync(this.manifests);
  }

  static async create(
    mode: 'nftables' | 'ebpf' = 'ebpf',
    waypointExtra?: (t: Topology) => string[],
  ): Promise<WaypointWorld> {
    return createWorld(
      'awp',
      (topo) => new WaypointWorld(topo, mode, waypointExtra),
      (w) => w.build(),
    );
  }

  ip(pod: string): string {
    return this.topo.pod(pod).ip;
  }

  apply(name: string, yaml: string): void {
    const tmp = join(this.manifests, `.${name}.tmp`);
    writeFileSync(tmp, yaml);
    renameSync(tmp, join(this.manifests, name));
  }

  remove(name: string): void {
    rmSync(join(this.manifests, name), { force: true });
  }

  private clusterYaml(): string {
    const pod = (name: string, node: string, sa: string, labels: Record<string, string>) =>
      `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n  namespace: demo\n  labels: ${JSON.stringify(labels)}\nspec:\n  nodeName: ${node}\n  serviceAccountName: ${sa}\n  containers: [{ name: app, image: example/app:1 }]\nstatus:\n  phase: Running\n  podIP: ${this.ip(name)}\n`;
    const svc = (name: string, vip: string, port: number, target: number, app: string) =>
      `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: demo\n  labels: { istio.io/use-waypoint: waypoint }\nspec:\n  clusterIP: ${vip}\n  selector: { app: ${app} }\n  ports: [{ name: http, port: ${port}, targetPort: ${target} }]\n`;
    return [
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n',
      'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n  labels:\n    istio.io/dataplane-mode: ambient\n',
      'apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: waypoint\n  namespace: demo\n  labels: { istio.io/waypoint-for: service }\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]\n',
      pod('a1', 'a', 'client', { app: 'client' }),
      pod('a2', 'a', 'other', { app: 'other' }),
      pod('b1', 'b', 'users', { app: 'users', version: 'v1' }),
      pod('b2', 'b', 'users', { app: 'users-v2', version: 'v2' }),
      pod('b3', 'b', 'products', { app: 'products' }),
      // The waypoint's pod: Istio labels it with the Gateway name, and the mesh never captures its own pods.
      pod('wp', 'b', 'waypoint', {
        'gateway.networking.k8s.io/gateway-name': 'waypoint',
        'istio.io/dataplane-mode': 'none',
      }),
      svc('users', VIP_USERS, 80, 8080, 'users'),
      svc('users-v2', VIP_USERS_V2, 80, 8080, 'users-v2'),
      svc('products', VIP_PRODUCTS, 9000, 9090, 'products'),
    ].join('---\n');
  }

  private keep(name: string, child: ChildProcess): Proc {
    const p = { child, logs: keepLogs(child) };
    this.procs.set(name, p);
    return p;
  }

  private async start(name: string, child: ChildProcess, timeoutMs = 20_000): Promise<Proc> {
    const p = this.keep(name, child);
    await waitReady(child, name, timeoutMs).catch((err: unknown) => {
      throw new HarnessError('START', `${(err as Error).message}\n${p.logs().slice(-3000)}`);
    });
    return p;
  }

  private async build(): Promise<void> {
    const t = this.topo;
    await t.addNode('a');
    await t.addNode('b');
    for (const p of ['a1', 'a2']) await t.addPod('a', p);
    for (const p of ['b1', 'b2', 'b3', 'wp']) await t.addPod('b', p);
    this.apply('cluster.yaml', this.clusterYaml());
    writeMeshTokens(
      this.dir,
      ['a', 'b'],
      [{ token: WAYPOINT_TOKEN, identity: 'spiffe://cluster.local/ns/demo/sa/waypoint' }],
    );
    writeFileSync(join(this.dir, 'token-waypoint'), `${WAYPOINT_TOKEN}\n`, { mode: 0o600 });
    const caAddr = `${t.node('a').ip}:15012`;
    this.keep('ca', await startMeshCa(t, this.dir, this.manifests));
    const caRoot = join(this.dir, 'ca', 'root-cert.pem');
    this.agents = await startMeshAgents(t, this.dir, ['a', 'b'], {
      pinTag: 'wp',
      manifests: this.manifests,
      mode: this.mode,
    });
    for (const n of ['a', 'b']) {
      await this.start(
        `ztunnel-${n}`,
        t.spawnNode(t.node(n).ns, 'cli/ambit.ts', [
          'ztunnel',
          '--node',
          n,
          ...ztunnelStateArgs(this.manifests, caAddr),
          '--ca',
          caAddr,
          '--ca-root',
          caRoot,
          '--token',
          join(this.dir, `token-${n}`),
          '--log-level',
          'info',
        ]),
      );
    }
    await this.start(
      'waypoint',
      t.spawnNode(
        t.pod('wp').ns,
        'cli/ambit.ts',
        waypointArgs(this.dir, this.manifests, caAddr, [
          '--log-level',
          'info',
          // Short head timeout so the slowloris case is quick; the default (10 s) is what production gets.
          '--headers-timeout',
          '2000',
          ...this.waypointExtra(t),
        ]),
      ),
    );
    await this.start('app-b1', t.spawnNode(t.pod('b1').ns, 'test/waypoint-apps.ts', ['http', '8080', 'v1']));
    await this.start('app-b2', t.spawnNode(t.pod('b2').ns, 'test/waypoint-apps.ts', ['http', '8080', 'v2']));
    await this.start('app-b3', t.spawnNode(t.pod('b3').ns, 'test/waypoint-apps.ts', ['grpc', '9090', 'b3']));
    for (const p of ['a1', 'a2']) {
      const proc = await this.start(`client-${p}`, t.spawnNode(t.pod(p).ns, 'test/waypoint-client.ts'));
      this.clients.set(p, new PodClients(proc.child));
    }
  }

  client(pod: string): PodClients {
    const c = this.clients.get(pod);
    if (!c) throw new HarnessError('NO_CLIENT', `no client in pod ${pod}`);
    return c;
  }

  logs(name: string): string {
    return this.procs.get(name)?.logs() ?? '';
  }

  /** `curl` inside a netns (metrics ports listen there). */
  async curl(ns: string, url: string): Promise<string> {
    const r = await this.topo.exec(ns, 'curl', ['-sS', '--max-time', '5', url]);
    return r.stdout;
  }

  waypointMetrics(): Promise<string> {
    return this.curl(this.topo.pod('wp').ns, 'http://127.0.0.1:15020/metrics');
  }

  ztunnelMetrics(node: string): Promise<string> {
    return this.curl(this.topo.node(node).ns, 'http://127.0.0.1:15020/metrics');
  }

  /** Waits (bounded) until a log of process `name` contains `text`. */
  async waitLog(name: string, text: string, timeoutMs = 10_000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if (this.logs(name).includes(text)) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  async teardown(): Promise<void> {
    for (const p of this.procs.values()) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    }
    await teardownMeshAgents(this.topo, this.dir, this.agents, 'wp');
    await this.topo.teardown();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// The world the ztunnel end-to-end tests run in (issue 4 "Done when"): two node netns linked through
// the harness fabric, two pods per node, the CA running in node a, the bpf-redirect node agent
// capturing (nftables TPROXY or eBPF) into a real `ambit ztunnel` per node, all reading one manifest
// directory. Every kernel object is named with an `azt` + random prefix through the harness and
// removed in teardown(); every wait is bounded.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningAgent } from './harness/capture.js';
import {
  type DemoPod,
  NODE_TOKEN,
  demoClusterYaml,
  startMeshAgents,
  startMeshCa,
  teardownMeshAgents,
  writeMeshTokens,
  ztunnelStateArgs,
} from './harness/mesh.js';
import { PodClient, startEchoServer } from './harness/processes.js';
import { HarnessError, type PodWiring, type Topology as TopologyT } from './harness/topology.js';
import { createWorld } from './harness/world.js';
import { ZtunnelNodes, type ZtunnelProc } from './harness/ztunnel-nodes.js';
export type { ZtunnelProc };

export const VIP = '10.96.0.10';
export const APP_PORT = 8080;
export const NODE_PORT = 9090;
export { NODE_TOKEN };
export const CLIENT_ID = 'spiffe://cluster.local/ns/demo/sa/client';
export const SERVER_ID = 'spiffe://cluster.local/ns/demo/sa/server';

/** Pods: a1 (sa client) and a2 (sa other) on node a; b1 (sa server, behind Service echo) and b2 (not in the mesh) on node b. */
export class ZtunnelWorld extends ZtunnelNodes {
  readonly manifests: string;
  agents = new Map<string, RunningAgent>();
  ca: ChildProcess | undefined;

  private constructor(
    topo: TopologyT,
    readonly mode: 'nftables' | 'ebpf',
  ) {
    super(topo, mkdtempSync(join(tmpdir(), `${topo.prefix}-`)));
    this.manifests = join(this.dir, 'cluster');
    mkdirSync(this.manifests);
  }

  /** `cni`: pods wired by the real bridge / ptp CNI plugins instead of hand-made routed veths. */
  static async create(mode: 'nftables' | 'ebpf' = 'nftables', cni?: PodWiring): Promise<ZtunnelWorld> {
    return createWorld(
      'azt',
      (topo) => new ZtunnelWorld(topo, mode),
      (w) => w.build(),
      cni ? { cni } : {},
    );
  }

  node(name: string) {
    return this.topo.node(name);
  }

  private writeFile(name: string, text: string): void {
    const tmp = join(this.manifests, `.${name}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(this.manifests, name));
  }

  /** Writes (or replaces) one manifest file; the ztunnels and the agents pick it up by watching. */
  apply(name: string, yaml: string): void {
    this.writeFile(name, yaml);
  }

  remove(name: string): void {
    rmSync(join(this.manifests, name), { force: true });
  }

  /** Pods labelled istio.io/dataplane-mode=none (taken out of the mesh). */
  readonly optedOut = new Set<string>(['b2']);

  /** Takes a pod out of the mesh (or back in) by its label, as an operator would. */
  setEnrolled(pod: string, enrolled: boolean): void {
    if (enrolled) this.optedOut.delete(pod);
    else this.optedOut.add(pod);
    this.writeFile('cluster.yaml', this.clusterYaml());
  }

  private clusterYaml(): string {
    const pod = (name: string, node: string, serviceAccount: string, app: string): DemoPod => ({
      name,
      node,
      serviceAccount,
      // Opted out of the mesh by its own label: plain TCP destination and plaintext client.
      labels: this.optedOut.has(name) ? { app, 'istio.io/dataplane-mode': 'none' } : { app },
      ip: this.ip(name),
    });
    return demoClusterYaml(
      [
        pod('a1', 'a', 'client', 'client'),
        pod('a2', 'a', 'other', 'other'),
        pod('b1', 'b', 'server', 'echo'),
        pod('b2', 'b', 'plain', 'plain'),
      ],
      VIP,
      APP_PORT,
    );
  }

  private async build(): Promise<void> {
    const t = this.topo;
    await t.addNode('a');
    await t.addNode('b');
    await t.addPod('a', 'a1');
    await t.addPod('a', 'a2');
    await t.addPod('b', 'b1');
    await t.addPod('b', 'b2');
    this.writeFile('cluster.yaml', this.clusterYaml());
    writeMeshTokens(this.dir, ['a', 'b']);
    this.ca = await startMeshCa(t, this.dir, this.manifests);
    this.agents = await startMeshAgents(t, this.dir, ['a', 'b'], {
      pinTag: 'zt',
      manifests: this.manifests,
      mode: this.mode,
    });
    for (const n of ['a', 'b']) await this.startZtunnel(n);
    await startEchoServer(t, t.pod('b1').ns, [APP_PORT]);
    await startEchoServer(t, t.pod('b2').ns, [APP_PORT]);
    await startEchoServer(t, t.pod('a2').ns, [APP_PORT]);
    await startEchoServer(t, t.node('b').ns, [NODE_PORT]);
    for (const p of ['a1', 'a2', 'b2']) this.clients.set(p, await PodClient.start(t, t.pod(p).ns));
  }

  /** Kills the CA + discovery process (istiod's role) at once, as a crash would. */
  async killDiscovery(): Promise<void> {
    const ca = this.ca;
    this.ca = undefined;
    if (!ca || ca.exitCode !== null || ca.signalCode !== null) return;
    const exited = new Promise((r) => ca.once('exit', r));
    ca.kill('SIGKILL');
    await exited;
  }

  /** Starts the CA + discovery again on the same port, with the same root and manifests. */
  async restartDiscovery(): Promise<void> {
    await this.killDiscovery();
    this.ca = await startMeshCa(this.topo, this.dir, this.manifests);
  }

  get caRoot(): string {
    return join(this.dir, 'ca', 'root-cert.pem');
  }

  get caAddress(): string {
    return `${this.topo.node('a').ip}:15012`;
  }

  startZtunnel(node: string, extra: string[] = []): Promise<ZtunnelProc> {
    // Profiling hook for benchmarks: AZT_ZTUNNEL_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p".
    const nodeArgs = (process.env.AZT_ZTUNNEL_NODE_ARGS ?? '').split(' ').filter(Boolean);
    return this.spawnZtunnel(node, ztunnelStateArgs(this.manifests, this.caAddress), { extra, nodeArgs });
  }

  metrics(node: string): Promise<string> {
    return this.curl(node, 'http://127.0.0.1:15020/metrics');
  }

  async teardown(): Promise<void> {
    this.killZtunnels();
    await teardownMeshAgents(this.topo, this.dir, this.agents, 'zt');
    this.ca?.kill('SIGKILL');
    await this.topo.teardown();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Lines of a Prometheus text body for one metric whose labels include every `want` pair. */
export function series(
  text: string,
  metric: string,
  want: Record<string, string>,
): { labels: string; value: number }[] {
  const out: { labels: string; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const close = line.lastIndexOf('}');
    const labels = line.slice(metric.length + 1, close);
    if (Object.entries(want).every(([k, v]) => labels.includes(`${k}="${v}"`))) {
      out.push({ labels, value: Number(line.slice(close + 1).trim()) });
    }
  }
  return out;
}

/**
 * The closed-connection series both ztunnels report for a client → server connection counted as mutual
 * TLS between the two SPIFFE identities (reporter=source on node a, destination on node b). Metrics are
 * recorded at close: polls briefly (bounded) until both sides have one.
 */
export async function mtlsClosedSeries(
  metrics: (node: string) => Promise<string>,
): Promise<{ src: { value: number }[]; dst: { value: number }[] }> {
  const want = {
    source_principal: CLIENT_ID,
    destination_principal: SERVER_ID,
    connection_security_policy: 'mutual_tls',
  };
  let src: { value: number }[] = [];
  let dst: { value: number }[] = [];
  for (let i = 0; i < 50 && (src.length === 0 || dst.length === 0); i++) {
    src = series(await metrics('a'), 'istio_tcp_connections_closed_total', { reporter: 'source', ...want });
    dst = series(await metrics('b'), 'istio_tcp_connections_closed_total', {
      reporter: 'destination',
      ...want,
    });
    if (src.length === 0 || dst.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  return { src, dst };
}

/** A leaf for `identity` signed by the running CA's own root (read from its store), for hand-written clients. */
export async function signProbeCertificate(
  caDir: string,
  identity: string,
): Promise<{ keyPem: string; chainPem: string[]; rootsPem: string[] }> {
  const { generateKeyPairSync } = await import('node:crypto');
  const { readCaDirectory } = await import('../ca/server/store.js');
  const { Signer } = await import('../ca/server/signer.js');
  const { parseSpiffeId } = await import('../core/identity/spiffe.js');
  const material = await readCaDirectory(caDir);
  if (!material) throw new HarnessError('NO_CA', `no CA material in ${caDir}`);
  const id = parseSpiffeId(identity);
  // A signer for the identity's trust domain: with a foreign one this makes exactly the "same root,
  // wrong trust domain" certificate the HBONE server must refuse.
  const signer = new Signer(material, { trustDomain: id.trustDomain });
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const chain = signer.signSpki(publicKey.export({ type: 'spki', format: 'der' }), {
    identity: id,
    ttlSeconds: 3600,
  });
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    chainPem: chain.slice(0, -1),
    rootsPem: signer.rootsPem(),
  };
}

export interface ProbeResult {
  /** The HTTP/2 response status, when one came. */
  status?: number;
  /** Why no status came (handshake refused, reset, timeout). */
  error?: string;
  /** With `send`: the first line the destination answered through the tunnel after the 200. */
  line?: string;
}

/**
 * A hand-written HBONE client: TCP from inside pod `fromPod`'s netns (a socket created there by the
 * native addon) to `target`, TLS 1.3 with `cert`, ALPN h2, one request with `headers`.
 */
export async function hboneProbe(
  w: ZtunnelWorld,
  fromPod: string,
  target: { ip: string; port: number },
  cert: { keyPem: string; chainPem: string[]; rootsPem: string[] },
  headers: Record<string, string>,
  timeoutMs = 5000,
  send?: string,
): Promise<ProbeResult> {
  const net = await import('node:net');
  const tls = await import('node:tls');
  const http2 = await import('node:http2');
  const { createTransparentSocket } = await import('../ztunnel/native/index.js');
  const { nsPath } = await import('./harness/topology.js');
  const fd = createTransparentSocket(w.ip(fromPod), 0, nsPath(w.topo.pod(fromPod).ns));
  const raw = new net.Socket({ fd, readable: true, writable: true });
  raw.connect({ host: target.ip, port: target.port });
  const tlsSocket = tls.connect({
    socket: raw,
    key: cert.keyPem,
    cert: cert.chainPem.join(''),
    ca: cert.rootsPem,
    ALPNProtocols: ['h2'],
    minVersion: 'TLSv1.3',
    // Workload certificates carry only a SPIFFE URI SAN; this probe checks statuses, not the peer name.
    checkServerIdentity: () => undefined,
  });
  return await new Promise<ProbeResult>((resolve) => {
    let session: import('node:http2').ClientHttp2Session | undefined;
    const done = (r: ProbeResult): void => {
      clearTimeout(timer);
      session?.destroy();
      tlsSocket.destroy();
      raw.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    tlsSocket.once('error', (err) => done({ error: err.message }));
    tlsSocket.once('close', () => done({ error: 'connection closed' }));
    tlsSocket.once('secureConnect', () => {
      session = http2.connect(`https://${target.ip}:${target.port}`, { createConnection: () => tlsSocket });
      session.on('error', (err) => done({ error: err.message }));
      const req = session.request(headers, { endStream: headers[':method'] !== 'CONNECT' });
      req.on('response', (h) => {
        const status = Number(h[':status']);
        if (send === undefined || status !== 200) {
          done({ status });
          return;
        }
        // A tunnelled line to the echo server; its answer proves the bytes reached the pod.
        let got = '';
        req.on('data', (d: Buffer) => {
          got += d.toString();
          const nl = got.indexOf('\n');
          if (nl >= 0) done({ status, line: got.slice(0, nl) });
        });
        req.write(`${send}\n`);
      });
      req.on('error', (err) => done({ error: err.message }));
    });
  });
}

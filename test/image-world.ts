// The world the image test boots the built image in: two node netns and one pod on each (the harness
// topology), the capture agents as on a node, and the mesh's own parts from the IMAGE, run by podman
// the way the charts run them:
//   - the CA (`ambit demo ca-server`: the local-mode CA with node tokens and impersonation checked
//     against the manifests) as uid 1337 with no capability at all, in node a's network namespace;
//   - one ztunnel per node in that node's network namespace (the chart's hostNetwork: a simulated
//     node's "host" network is its netns), as root with only NET_ADMIN and NET_RAW, read-only root
//     filesystem, /tmp a tmpfs — charts/ambit-ztunnel/templates/daemonset.yaml's securityContext.
// Every container is named `<prefix>-…` and removed in teardown (also after a failed start).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningAgent } from './harness/capture.js';
import {
  demoClusterYaml,
  keepLogs,
  startMeshAgents,
  teardownMeshAgents,
  writeMeshTokens,
} from './harness/mesh.js';
import { PodClient, startEchoServer } from './harness/processes.js';
import { HarnessError, type Topology, nsPath } from './harness/topology.js';
import { createWorld } from './harness/world.js';
import { ztunnelArgs } from './harness/ztunnel-nodes.js';

export const VIP = '10.96.0.10';
export const APP_PORT = 8080;
export const CLIENT_ID = 'spiffe://cluster.local/ns/demo/sa/client';
export const SERVER_ID = 'spiffe://cluster.local/ns/demo/sa/server';
/** Istio's proxy uid; the image's default user. */
export const MESH_UID = 1337;

/** Hard limit `name` of this process (/proc/self/limits), capped. */
function hardLimit(name: string, cap: number): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(name));
  const hard = line?.slice(26).trim().split(/\s+/)[1];
  return hard === undefined || hard === 'unlimited' ? cap : Math.min(Number(hard), cap);
}

/** `podman <these> run …`: the OCI runtime image/oci-args.sh gives `buildah bud` (it says why). */
export function podmanArgs(): string[] {
  return ['--runtime', 'runc'];
}

/** `podman run <these>`: the limits image/oci-args.sh gives `buildah bud` (it says why). */
export function podmanRunLimits(): string[] {
  const nofile = hardLimit('Max open files', 1_048_576);
  const nproc = hardLimit('Max processes', 32_768);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

export interface Container {
  name: string;
  child: ChildProcess;
  logs(): string;
  /** ms from `podman run` to ready. */
  startMs: number;
}

export class ImageWorld {
  readonly dir: string;
  readonly manifests: string;
  readonly containers = new Map<string, Container>();
  agents = new Map<string, RunningAgent>();
  client: PodClient | undefined;

  private constructor(
    readonly topo: Topology,
    readonly image: string,
    readonly mode: 'nftables' | 'ebpf',
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `${topo.prefix}-`));
    // The CA runs as uid 1337: it must reach the manifests and own its state directory.
    chmodSync(this.dir, 0o755);
    this.manifests = join(this.dir, 'cluster');
    mkdirSync(this.manifests, { mode: 0o755 });
  }

  static create(image: string, mode: 'nftables' | 'ebpf' = 'ebpf'): Promise<ImageWorld> {
    return createWorld(
      'aim',
      (topo) => new ImageWorld(topo, image, mode),
      (w) => w.build(),
    );
  }

  ip(pod: string): string {
    return this.topo.pod(pod).ip;
  }

  private clusterYaml(): string {
    const pod = (name: string, node: string, serviceAccount: string, app: string) => ({
      name,
      node,
      serviceAccount,
      labels: { app },
      ip: this.ip(name),
    });
    return demoClusterYaml(
      [pod('a1', 'a', 'client', 'client'), pod('b1', 'b', 'server', 'echo')],
      VIP,
      APP_PORT,
    );
  }

  private async build(): Promise<void> {
    const t = this.topo;
    await t.addNode('a');
    await t.addNode('b');
    await t.addPod('a', 'a1');
    await t.addPod('b', 'b1');
    writeFileSync(join(this.manifests, 'cluster.yaml'), this.clusterYaml(), { mode: 0o644 });
    writeMeshTokens(this.dir, ['a', 'b']);
    chownSync(join(this.dir, 'tokens.yaml'), MESH_UID, MESH_UID);
    // Readable by the ztunnels (root, but without CAP_DAC_OVERRIDE) for root-cert.pem, as the chart's
    // istio-ca-root-cert ConfigMap is; the CA writes its key 0600 itself.
    mkdirSync(join(this.dir, 'ca'), { mode: 0o755 });
    chownSync(join(this.dir, 'ca'), MESH_UID, MESH_UID);

    await this.startCa();
    this.agents = await startMeshAgents(t, this.dir, ['a', 'b'], {
      pinTag: 'im',
      manifests: this.manifests,
      mode: this.mode,
    });
    for (const n of ['a', 'b']) await this.startZtunnel(n);
    await startEchoServer(t, t.pod('b1').ns, [APP_PORT]);
    this.client = await PodClient.start(t, t.pod('a1').ns);
  }

  get caAddress(): string {
    return `${this.topo.node('a').ip}:15012`;
  }

  /** `podman run` in the foreground (its output is the container's), network = netns `ns`. */
  private run(role: string, ns: string, runArgs: string[], ambitArgs: string[]): Container {
    const name = `${this.topo.prefix}-${role}`;
    const child = spawn(
      'podman',
      [
        ...podmanArgs(),
        'run',
        ...podmanRunLimits(),
        '--rm',
        '--name',
        name,
        '--network',
        `ns:${nsPath(ns)}`,
        '--security-opt',
        'no-new-privileges',
        '--read-only',
        '--tmpfs',
        '/tmp',
        ...runArgs,
        this.image,
        ...ambitArgs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const c = { name, child, logs: keepLogs(child, 100_000), startMs: 0 };
    this.containers.set(role, c);
    return c;
  }

  /** Polls `check` (bounded) until it holds; fails with the container's logs. */
  private async until(c: Container, what: string, check: () => Promise<boolean>, timeoutMs = 30_000) {
    const t0 = Date.now();
    while (Date.now() - t0 < timeoutMs) {
      if (c.child.exitCode !== null) break;
      if (await check().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new HarnessError(
      'CONTAINER_START',
      `${what} (${c.name}) not ready after ${Date.now() - t0} ms (exit ${c.child.exitCode}):\n${c.logs().slice(-3000)}`,
    );
  }

  private async startCa(): Promise<void> {
    const t0 = Date.now();
    const c = this.run(
      'ca',
      this.topo.node('a').ns,
      ['--user', `${MESH_UID}:${MESH_UID}`, '--cap-drop', 'ALL', '-v', `${this.dir}:${this.dir}`],
      [
        'demo',
        'ca-server',
        '--dir',
        join(this.dir, 'ca'),
        '--tokens',
        join(this.dir, 'tokens.yaml'),
        '--listen',
        this.caAddress,
        '-m',
        this.manifests,
      ],
    );
    await this.until(c, 'the CA', async () => {
      if (!existsSync(this.caRoot)) return false;
      const r = await this.topo.exec(this.topo.node('a').ns, 'ss', ['-Hltn', 'sport = :15012']);
      return r.stdout.trim().length > 0;
    });
    c.startMs = Date.now() - t0;
  }

  get caRoot(): string {
    return join(this.dir, 'ca', 'root-cert.pem');
  }

  private async startZtunnel(node: string): Promise<void> {
    const t0 = Date.now();
    const c = this.run(
      `zt-${node}`,
      this.topo.node(node).ns,
      [
        '--user',
        '0:0',
        '--cap-drop',
        'ALL',
        '--cap-add',
        'NET_ADMIN',
        '--cap-add',
        'NET_RAW',
        '-v',
        `${this.dir}:${this.dir}:ro`,
      ],
      ztunnelArgs(node, ['-m', this.manifests], this),
    );
    await this.until(c, `ztunnel on ${node}`, async () => {
      const r = await this.curl(node, 'http://127.0.0.1:15021/healthz/ready', [
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
      ]);
      return r === '200';
    });
    c.startMs = Date.now() - t0;
  }

  /** `curl` inside node's netns (ztunnel's admin, metrics and health ports listen there). */
  async curl(node: string, url: string, extra: string[] = []): Promise<string> {
    const r = await this.topo.exec(this.topo.node(node).ns, 'curl', [
      '-sS',
      '--max-time',
      '5',
      ...extra,
      url,
    ]);
    return r.stdout;
  }

  /** The host pid of a container's main process (podman inspect). */
  pid(role: string): number {
    const c = this.containers.get(role);
    if (!c) throw new HarnessError('NO_CONTAINER', `no container ${role}`);
    return Number(
      execFileSync('podman', ['inspect', '--format', '{{.State.Pid}}', c.name], {
        encoding: 'utf8',
        timeout: 10_000,
      }).trim(),
    );
  }

  async teardown(): Promise<void> {
    this.client?.child.kill('SIGKILL');
    for (const c of this.containers.values()) {
      try {
        execFileSync('podman', ['rm', '--force', '--time', '0', c.name], {
          stdio: 'ignore',
          timeout: 30_000,
        });
      } catch {
        // Already gone (--rm after exit).
      }
      c.child.kill('SIGKILL');
    }
    await teardownMeshAgents(this.topo, this.dir, this.agents, 'im');
    await this.topo.teardown();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

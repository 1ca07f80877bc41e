// The world of the Kubernetes integration test (issue 7 "Done when"): the test API server (a test
// double for the apiserver) runs inside node a's netns; the CA (`ambit ca --kubernetes`), a bpf-redirect
// agent per node (`ambit bpf-agent --kubernetes`) and a ztunnel per node (`ambit ztunnel --kubernetes`)
// all read it through a kubeconfig, exactly as in a cluster. Pods: a1 (sa client) and a2 (sa other) on
// node a; b1 (sa server, behind Service echo) and b2 (opted out) on node b. Every kernel object is
// named with an `ak8` + random prefix through the harness and removed in teardown(); waits are bounded.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStatus, stopAgent, teardownAgent, type RunningAgent } from './harness/capture.js';
import { keepLogs } from './harness/mesh.js';
import { PodClient, startEchoServer, waitReady } from './harness/processes.js';
import { distPath, HarnessError, type Topology as TopologyT } from './harness/topology.js';
import { createWorld } from './harness/world.js';
import { ZtunnelNodes, pollUntil } from './harness/ztunnel-nodes.js';

export const VIP = '10.96.0.10';
export const APP_PORT = 8080;
export const API_PORT = 6443;
export const NODE_TOKEN = (node: string) => `k8s-ztunnel-${node}-token-0123456789`;

/** Talks to the API server child over IPC (its HTTP side is what the components use). */
export class ApiControl {
  private nextId = 1;
  private readonly pending = new Map<
    number,
    (m: { ok: boolean; result?: unknown; error?: string }) => void
  >();
  constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id?: number; ok: boolean; result?: unknown; error?: string }) => {
      if (m.id === undefined) return;
      this.pending.get(m.id)?.(m);
      this.pending.delete(m.id);
    });
  }

  call<T = unknown>(req: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        this.pending.delete(id);
        reject(new HarnessError('API_TIMEOUT', `test API server did not answer ${String(req.op)}`));
      }, 5000);
      this.pending.set(id, (m) => {
        clearTimeout(t);
        if (m.ok) resolve(m.result as T);
        else reject(new HarnessError('API_ERROR', `${String(req.op)}: ${m.error}`));
      });
      this.child.send({ ...req, id });
    });
  }

  create(apiVersion: string, kind: string, namespace: string | undefined, body: Record<string, unknown>) {
    return this.call({ op: 'create', apiVersion, kind, namespace, body });
  }
  patch(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
    patch: Record<string, unknown>,
  ) {
    return this.call({ op: 'patch', apiVersion, kind, namespace, name, patch });
  }
  delete(apiVersion: string, kind: string, namespace: string | undefined, name: string) {
    return this.call({ op: 'delete', apiVersion, kind, namespace, name });
  }
  get<T = Record<string, unknown>>(
    apiVersion: string,
    kind: string,
    namespace: string | undefined,
    name: string,
  ) {
    return this.call<T | null>({ op: 'get', apiVersion, kind, namespace, name });
  }
  list<T = Record<string, unknown>>(apiVersion: string, kind: string, namespace?: string) {
    return this.call<T[]>({ op: 'list', apiVersion, kind, namespace });
  }
  dropWatches() {
    return this.call<number>({ op: 'dropWatches' });
  }
  compact() {
    return this.call<string>({ op: 'compact' });
  }
}

export interface Proc {
  child: ChildProcess;
  logs(): string;
}

export class K8sWorld extends ZtunnelNodes {
  readonly kubeconfig: string;
  api!: ApiControl;
  apiChild: ChildProcess | undefined;
  ca: Proc | undefined;
  readonly agents = new Map<string, RunningAgent>();

  private constructor(
    topo: TopologyT,
    readonly mode: 'ebpf' | 'nftables',
  ) {
    super(topo, mkdtempSync(join(tmpdir(), `${topo.prefix}-`)));
    this.kubeconfig = join(this.dir, 'kubeconfig');
  }

  static async create(mode: 'ebpf' | 'nftables' = 'ebpf'): Promise<K8sWorld> {
    return createWorld(
      'ak8',
      (topo) => new K8sWorld(topo, mode),
      (w) => w.build(),
    );
  }

  get apiAddress(): string {
    return `${this.topo.node('a').ip}:${API_PORT}`;
  }

  get caAddress(): string {
    return `${this.topo.node('a').ip}:15012`;
  }

  get caRoot(): string {
    return join(this.dir, 'root-cert.pem');
  }

  statusFile(node: string): string {
    return join(this.dir, `agent-${node}.json`);
  }

  private spawnLogged(ns: string, args: string[], ipc = false): Proc {
    const child = this.topo.spawnIn(ns, process.execPath, args, {
      stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    });
    return { child, logs: keepLogs(child) };
  }

  private async build(): Promise<void> {
    const t = this.topo;
    await t.addNode('a');
    await t.addNode('b');
    for (const [node, pod] of [
      ['a', 'a1'],
      ['a', 'a2'],
      ['b', 'b1'],
      ['b', 'b2'],
    ] as const)
      await t.addPod(node, pod);

    // The API server, in node a's netns (reachable from node b over the fabric).
    const apiChild = t.spawnNode(t.node('a').ns, 'test/k8s-api-server/main.ts', [this.apiAddress]);
    await waitReady(apiChild, 'test API server', 15_000);
    this.apiChild = apiChild;
    this.api = new ApiControl(apiChild);
    writeFileSync(
      this.kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        `  - name: test\n    cluster:\n      server: http://${this.apiAddress}\n      insecure-skip-tls-verify: true`,
        'users:',
        '  - name: test\n    user:\n      token: test-admin-token',
        'contexts:',
        '  - name: test\n    context:\n      cluster: test\n      user: test',
        'current-context: test',
        '',
      ].join('\n'),
    );
    await this.seedCluster();

    // The CA: TokenReview auth, root in Secret istio-ca-secret, istio-ca-root-cert published.
    this.ca = this.spawnLogged(t.node('a').ns, [
      distPath('cli/ambit.ts'),
      'ca',
      '--kubernetes',
      '--kubeconfig',
      this.kubeconfig,
      '--listen',
      this.caAddress,
    ]);
    const roots = await this.waitFor(
      'istio-ca-root-cert in istio-system',
      async () => {
        const cm = await this.api.get<{ data?: Record<string, string> }>(
          'v1',
          'ConfigMap',
          'istio-system',
          'istio-ca-root-cert',
        );
        return cm?.data?.['root-cert.pem'];
      },
      30_000,
      () => this.ca?.logs() ?? '',
    );
    // The ztunnel chart mounts this ConfigMap; here it is a file with the same content.
    writeFileSync(this.caRoot, roots);

    for (const n of ['a', 'b']) {
      await this.api.call({
        op: 'addToken',
        token: {
          token: NODE_TOKEN(n),
          namespace: 'istio-system',
          serviceAccount: 'ztunnel',
          node: n,
          audiences: ['istio-ca'],
        },
      });
      writeFileSync(join(this.dir, `token-${n}`), `${NODE_TOKEN(n)}\n`, { mode: 0o600 });
    }
    for (const n of ['a', 'b']) await this.startAgent(n);
    for (const n of ['a', 'b']) await this.startZtunnel(n);
    await startEchoServer(t, t.pod('b1').ns, [APP_PORT]);
    await startEchoServer(t, t.pod('b2').ns, [APP_PORT]);
    await startEchoServer(t, t.pod('a2').ns, [APP_PORT]);
    for (const p of ['a1', 'a2', 'b2']) this.clients.set(p, await PodClient.start(t, t.pod(p).ns));
  }

  private async seedCluster(): Promise<void> {
    const api = this.api;
    await api.create('v1', 'Namespace', undefined, { metadata: { name: 'istio-system' } });
    await api.create('v1', 'Namespace', undefined, {
      metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } },
    });
    const pod = async (name: string, node: string, sa: string, labels: Record<string, string>) => {
      await api.create('v1', 'Pod', 'demo', {
        metadata: { name, labels },
        spec: {
          nodeName: node,
          serviceAccountName: sa,
          containers: [{ name: 'app', image: 'example/app:1' }],
        },
      });
      await api.call({
        op: 'updateStatus',
        apiVersion: 'v1',
        kind: 'Pod',
        namespace: 'demo',
        name,
        status: {
          phase: 'Running',
          podIP: this.ip(name),
          podIPs: [{ ip: this.ip(name) }],
          conditions: [{ type: 'Ready', status: 'True' }],
        },
      });
    };
    await pod('a1', 'a', 'client', { app: 'client' });
    await pod('a2', 'a', 'other', { app: 'other' });
    await pod('b1', 'b', 'server', { app: 'echo' });
    await pod('b2', 'b', 'plain', { app: 'plain', 'istio.io/dataplane-mode': 'none' });
    await api.create('v1', 'Service', 'demo', {
      metadata: { name: 'echo' },
      spec: {
        clusterIP: VIP,
        selector: { app: 'echo' },
        ports: [{ name: 'tcp', port: 80, targetPort: APP_PORT }],
      },
    });
  }

  async startAgent(node: string): Promise<void> {
    const t = this.topo;
    const p = this.spawnLogged(t.node(node).ns, [
      distPath('cli/ambit.ts'),
      'bpf-agent',
      '--kubernetes',
      '--kubeconfig',
      this.kubeconfig,
      '--node',
      node,
      '--status-file',
      this.statusFile(node),
      '--pin-dir',
      t.pinDir(`k8-${node}`),
      '--mode',
      this.mode,
      '--drain-grace-ms',
      '5000',
      '--uplink',
      t.node(node).uplink,
    ]);
    this.agents.set(node, p);
    await this.waitFor(
      `bpf-agent on ${node}`,
      async () => readStatus(this.statusFile(node))?.pid === p.child.pid || undefined,
      30_000,
      p.logs,
    );
    const status = readStatus(this.statusFile(node));
    if (status?.mode !== this.mode)
      throw new HarnessError(
        'CAPTURE_MODE',
        `agent on ${node} runs ${status?.mode} (${status?.fallbackReason ?? ''}), not ${this.mode}`,
      );
  }

  async startZtunnel(node: string): Promise<void> {
    await this.spawnZtunnel(node, ['--kubernetes', '--kubeconfig', this.kubeconfig], { timeoutMs: 30_000 });
  }

  /** Polls `get` until it returns a value (bounded), naming what it waited for on failure. */
  waitFor<T>(
    what: string,
    get: () => Promise<T | undefined>,
    timeoutMs = 10_000,
    logs?: () => string,
  ): Promise<T> {
    return pollUntil(what, get, timeoutMs, logs);
  }

  async teardown(): Promise<void> {
    this.killZtunnels();
    for (const [n, a] of this.agents) {
      await stopAgent(a, 'SIGTERM').catch(() => undefined);
      await teardownAgent(this.topo, n, {
        statusFile: this.statusFile(n),
        pinDir: this.topo.pinDir(`k8-${n}`),
      }).catch(() => undefined);
    }
    this.ca?.child.kill('SIGKILL');
    this.apiChild?.kill('SIGKILL');
    await this.topo.teardown();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

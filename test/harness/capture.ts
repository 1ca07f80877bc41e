// Capture helpers for network tests: run the node agent (`ambit bpf-agent`) and a transparent relay
// standing in for ztunnel inside a node netns, feed the agent a pod list, and wait for its status.
// The real ztunnel plugs into the same listeners (15001/15006/15008) in place of the relay.
import type { ChildProcess } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitReady } from './processes.js';
import { distPath, HarnessError, run, type Topology } from './topology.js';

export interface PodSpec {
  name: string;
  namespace: string;
  ip: string;
  node: string;
  enrolled: boolean;
}

/**
 * Atomically (re)write a manifest directory describing the topology's pods: one Namespace per entry of
 * `namespaces` (labelled istio.io/dataplane-mode=ambient when true) and one Pod per spec, scheduled on
 * its node with its IP — the local cluster `ambit bpf-agent -m DIR` watches.
 */
export interface ServiceSpec {
  name: string;
  namespace: string;
  clusterIP: string;
  port: number;
  targetPort: number;
  /** Pods labelled app=<this> (writeManifests labels each pod app=<pod name>). */
  app: string;
}

export function writeManifests(
  dir: string,
  namespaces: Record<string, boolean>,
  pods: Omit<PodSpec, 'enrolled'>[],
  services: ServiceSpec[] = [],
): void {
  const docs: string[] = [];
  for (const s of services) {
    docs.push(
      `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${s.name}\n  namespace: ${s.namespace}\n` +
        `spec:\n  clusterIP: ${s.clusterIP}\n  selector:\n    app: ${s.app}\n` +
        `  ports:\n    - { name: tcp, port: ${s.port}, targetPort: ${s.targetPort} }\n`,
    );
  }
  for (const [name, ambient] of Object.entries(namespaces)) {
    docs.push(
      `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n` +
        (ambient ? '  labels:\n    istio.io/dataplane-mode: ambient\n' : ''),
    );
  }
  for (const p of pods) {
    docs.push(
      `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${p.name}\n  namespace: ${p.namespace}\n  labels:\n    app: ${p.name}\n` +
        `spec:\n  nodeName: ${p.node}\n  containers: [{ name: app, image: example/app:1 }]\n` +
        `status:\n  phase: Running\n  podIP: ${p.ip}\n`,
    );
  }
  const file = join(dir, 'cluster.yaml');
  writeFileSync(`${dir}/.cluster.yaml.tmp`, docs.join('---\n'));
  renameSync(`${dir}/.cluster.yaml.tmp`, file);
}

/** Atomically rewrite the pods file every agent of the topology watches. */
export function writePods(file: string, pods: PodSpec[]): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(pods));
  renameSync(`${file}.tmp`, file);
}

export interface AgentStatusView {
  mode: string;
  failOpen: boolean;
  pid: number;
  generation: number;
  fallbackReason?: string;
  pods: {
    name: string;
    ip: string;
    state: string;
    dev?: string;
    bridge?: string;
    pending?: string;
    uncapturable?: string;
  }[];
  devices: string[];
  /** Pod veths whose pod the state does not know yet (their SYNs are held). */
  unknownPodVeths?: { ip: string; dev: string }[];
  serviceLb?: { cgroups: string[]; services: number };
  counters: Record<string, number>;
}

export function readStatus(file: string): AgentStatusView | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as AgentStatusView;
  } catch {
    return undefined;
  }
}

/** Poll a status file until `pred` holds (bounded: timeoutMs, 50 ms steps). */
export async function waitStatus(
  file: string,
  pred: (s: AgentStatusView) => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<AgentStatusView> {
  const until = Date.now() + timeoutMs;
  let last: AgentStatusView | undefined;
  while (Date.now() < until) {
    last = readStatus(file);
    if (last && pred(last)) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new HarnessError(
    'STATUS_TIMEOUT',
    `agent status never showed ${what}; last: ${JSON.stringify(last)?.slice(0, 600)}`,
  );
}

/** The agent's view of the cluster: a manifest directory (the real local mode) or a pods file. */
export interface AgentOptions {
  manifests?: string;
  podsFile?: string;
  statusFile: string;
  pinDir: string;
  mode?: 'auto' | 'ebpf' | 'nftables';
  failOpen?: boolean;
  drainGraceMs?: number;
  uplinks?: string[];
  objDir?: string;
  /** cgroup v2 dirs given socket-level ClusterIP load balancing (--service-lb-cgroup). */
  serviceLbCgroups?: string[];
  /** --uncapturable-after-ms (agent default 10 s). */
  uncapturableAfterMs?: number;
}

export interface RunningAgent {
  child: ChildProcess;
  /** The agent's stderr (pino JSON lines), for failure messages. */
  logs(): string;
}

/** Start `ambit bpf-agent` inside the node's netns and wait for its first status. */
export async function startAgent(topo: Topology, nodeName: string, o: AgentOptions): Promise<RunningAgent> {
  const node = topo.node(nodeName);
  const args = [
    distPath('cli/ambit.ts'),
    'bpf-agent',
    '--node',
    nodeName,
    ...(o.manifests ? ['-m', o.manifests] : []),
    ...(o.podsFile ? ['--pods-file', o.podsFile] : []),
    '--status-file',
    o.statusFile,
    '--pin-dir',
    o.pinDir,
    '--mode',
    o.mode ?? 'auto',
    '--drain-grace-ms',
    String(o.drainGraceMs ?? 5000),
    ...(o.uplinks ?? [node.uplink]).flatMap((u) => ['--uplink', u]),
    ...(o.failOpen ? ['--fail-open'] : []),
    ...(o.objDir ? ['--obj-dir', o.objDir] : []),
    ...(o.serviceLbCgroups ?? []).flatMap((c) => ['--service-lb-cgroup', c]),
    ...(o.uncapturableAfterMs !== undefined
      ? ['--uncapturable-after-ms', String(o.uncapturableAfterMs)]
      : []),
  ];
  const child = topo.spawnIn(node.ns, process.execPath, args);
  let logs = '';
  child.stderr?.on('data', (d: Buffer) => {
    logs = (logs + d.toString()).slice(-20_000);
  });
  let exited: string | undefined;
  child.once('exit', (code, sig) => {
    exited = `exited ${code ?? sig}`;
  });
  // Loading the program and hooking every interface takes a few hundred tc/bpftool calls' worth of
  // time on a loaded 2-core machine.
  const until = Date.now() + 40_000;
  for (;;) {
    if (exited)
      throw new HarnessError('AGENT_EXITED', `bpf-agent on ${nodeName} ${exited}: ${logs.slice(-2000)}`);
    // nsenter execs the agent in place (no --fork), so the status pid is the child's pid.
    if (readStatus(o.statusFile)?.pid === child.pid) break;
    if (Date.now() > until) {
      throw new HarnessError(
        'AGENT_START_TIMEOUT',
        `bpf-agent on ${nodeName} wrote no status in 40 s: ${logs.slice(-2000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, logs: () => logs };
}

/** Stop an agent as an operator would (SIGTERM: kernel objects stay) or kill it (SIGKILL). */
export async function stopAgent(
  agent: RunningAgent,
  signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM',
): Promise<void> {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 5000);
    agent.child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    agent.child.kill(signal);
  });
}

/** Run `ambit bpf-agent --teardown` in the node netns for an agent started with these options. */
export async function teardownAgent(topo: Topology, nodeName: string, o: AgentOptions): Promise<void> {
  await topo.exec(
    topo.node(nodeName).ns,
    process.execPath,
    [
      distPath('cli/ambit.ts'),
      'bpf-agent',
      '--teardown',
      '--node',
      nodeName,
      '--status-file',
      o.statusFile,
      '--pin-dir',
      o.pinDir,
    ],
    { timeoutMs: 60_000 },
  );
}

export interface RelayEvent {
  port: number;
  src: string;
  dst: string;
}

/** The transparent relay standing in for ztunnel's listeners in a node netns. */
export class Relay {
  readonly events: RelayEvent[] = [];
  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: { accepted?: RelayEvent }) => {
      if (m.accepted) this.events.push(m.accepted);
    });
  }

  static async start(
    topo: Topology,
    nodeName: string,
    ports: number[] = [15001, 15006, 15008],
  ): Promise<Relay> {
    const child = topo.spawnNode(
      topo.node(nodeName).ns,
      'test/harness/transparent-relay.ts',
      ports.map(String),
    );
    const relay = new Relay(child);
    await waitReady(child, `relay on ${nodeName}`);
    return relay;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.child.kill('SIGKILL');
        resolve();
      }, 3000);
      this.child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      this.child.send({ op: 'stop' });
    });
  }

  /** Connections this relay accepted for a destination (ip:port). */
  acceptedFor(dst: string): RelayEvent[] {
    return this.events.filter((e) => e.dst === dst);
  }
}

/**
 * Delete a pod as Kubernetes does: its processes are killed (pass them), its netns goes, and with the
 * last reference the host veth and its /32 route disappear (waited for, bounded).
 */
export async function deletePod(topo: Topology, podName: string, processes: ChildProcess[]): Promise<void> {
  const pod = topo.pod(podName);
  await Promise.all(
    processes.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const t = setTimeout(resolve, 3000);
          child.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          child.kill('SIGKILL');
        }),
    ),
  );
  // The runtime's part: CNI DEL (for CNI-wired pods), then the sandbox netns goes.
  await topo.removePod(podName);
  const node = topo.node(pod.node);
  for (let i = 0; i < 100; i++) {
    const gone = await topo.exec(node.ns, 'ip', ['-o', 'link', 'show', 'dev', pod.hostVeth]).then(
      () => false,
      () => true,
    );
    if (gone) break;
    await new Promise((r) => setTimeout(r, 50));
  }
}

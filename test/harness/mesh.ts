// The mesh parts the manifest-driven end-to-end worlds (ztunnel-world, waypoint-world) start the same
// way: node tokens for the test CA, the CA in node a, one capture agent per node (checked to run the
// mode asked for), a child's output kept for failure messages, and the agents' teardown.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RunningAgent, readStatus, startAgent, stopAgent, teardownAgent } from './capture.js';
import { waitReady } from './processes.js';
import { HarnessError, type Topology } from './topology.js';

/** The token node `node`'s ztunnel presents to the test CA (identity istio-system/ztunnel on that node). */
export const NODE_TOKEN = (node: string) => `ztunnel-${node}-token-0123456789abcdef`;

/** Keeps the last `max` characters of a child's stdout and stderr. */
export function keepLogs(child: ChildProcess, max = 400_000): () => string {
  let logs = '';
  const add = (d: Buffer) => {
    logs = (logs + d.toString()).slice(-max);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => logs;
}

/**
 * `dir/tokens.yaml` for the test CA — each node's ztunnel token, plus `extra` tokens — and each
 * node's token file `dir/token-<node>` (0600), as the ztunnel chart mounts it.
 */
export function writeMeshTokens(
  dir: string,
  nodes: readonly string[],
  extra: readonly { token: string; identity: string }[] = [],
): void {
  const entries = [
    ...nodes.map(
      (n) =>
        `  - token: ${NODE_TOKEN(n)}\n    identity: spiffe://cluster.local/ns/istio-system/sa/ztunnel\n    node: ${n}\n`,
    ),
    ...extra.map((e) => `  - token: ${e.token}\n    identity: ${e.identity}\n`),
  ];
  writeFileSync(join(dir, 'tokens.yaml'), `tokens:\n${entries.join('')}`);
  for (const n of nodes) writeFileSync(join(dir, `token-${n}`), `${NODE_TOKEN(n)}\n`, { mode: 0o600 });
}

/**
 * Where the worlds' ztunnels get their state: from the discovery tier beside the test CA over Istio's
 * WDS (the production path, the default), or straight from the manifest directory with
 * AMBIT_TEST_STATE=manifests.
 */
export const MESH_STATE_MODE: 'discovery' | 'manifests' =
  process.env.AMBIT_TEST_STATE === 'manifests' ? 'manifests' : 'discovery';

/** The `ambit ztunnel` arguments that say where its state comes from (MESH_STATE_MODE). */
export function ztunnelStateArgs(manifests: string, discoveryAddress: string): string[] {
  return MESH_STATE_MODE === 'discovery' ? ['--discovery', discoveryAddress] : ['-m', manifests];
}

/** The test CA (test/ztunnel-ca.ts) and discovery tier in node a's netns on :15012, its state in `dir/ca`. */
export async function startMeshCa(topo: Topology, dir: string, manifests: string): Promise<ChildProcess> {
  const nodeA = topo.node('a');
  const child = topo.spawnNode(nodeA.ns, 'test/ztunnel-ca.ts', [
    join(dir, 'ca'),
    join(dir, 'tokens.yaml'),
    `${nodeA.ip}:15012`,
    manifests,
  ]);
  const logs = keepLogs(child, 20_000);
  await waitReady(child, 'CA', 20_000).catch((err: unknown) => {
    throw new HarnessError('CA_START', `${(err as Error).message}\n${logs().slice(-3000)}`);
  });
  return child;
}

export interface MeshAgents {
  /** Per-world tag in the BPF pin directory name, e.g. `zt` → pins `<prefix>…/zt-a`. */
  pinTag: string;
  manifests: string;
  mode: 'nftables' | 'ebpf';
}

const statusFile = (dir: string, node: string) => join(dir, `agent-${node}.json`);

/** One capture agent per node; each must really run `mode` (the agent may fall back from eBPF). */
export async function startMeshAgents(
  topo: Topology,
  dir: string,
  nodes: readonly string[],
  o: MeshAgents,
): Promise<Map<string, RunningAgent>> {
  const agents = new Map<string, RunningAgent>();
  for (const n of nodes) {
    agents.set(
      n,
      await startAgent(topo, n, {
        manifests: o.manifests,
        statusFile: statusFile(dir, n),
        pinDir: topo.pinDir(`${o.pinTag}-${n}`),
        mode: o.mode,
      }),
    );
  }
  for (const n of nodes) {
    const status = readStatus(statusFile(dir, n));
    if (status?.mode !== o.mode) {
      throw new HarnessError(
        'CAPTURE_MODE',
        `agent on ${n} runs ${status?.mode} (${status?.fallbackReason ?? ''}), not ${o.mode}`,
      );
    }
  }
  return agents;
}

/** Stops each agent and removes what it put in the kernel (tc filters, pins, nft tables). */
export async function teardownMeshAgents(
  topo: Topology,
  dir: string,
  agents: ReadonlyMap<string, RunningAgent>,
  pinTag: string,
): Promise<void> {
  for (const [n, a] of agents) {
    await stopAgent(a, 'SIGTERM').catch(() => undefined);
    await teardownAgent(topo, n, {
      statusFile: statusFile(dir, n),
      pinDir: topo.pinDir(`${pinTag}-${n}`),
    }).catch(() => undefined);
  }
}

/** `ambit waypoint` for the Gateway `demo/waypoint` on the test CA, its token in `dir/token-waypoint`. */
export function waypointArgs(
  dir: string,
  manifests: string,
  caAddress: string,
  extra: string[] = [],
): string[] {
  return [
    'waypoint',
    '--name',
    'waypoint',
    '-n',
    'demo',
    '-m',
    manifests,
    '--ca',
    caAddress,
    '--ca-root',
    join(dir, 'ca', 'root-cert.pem'),
    '--token',
    join(dir, 'token-waypoint'),
    ...extra,
  ];
}

export interface DemoPod {
  name: string;
  node: string;
  serviceAccount: string;
  labels: Record<string, string>;
  ip: string;
}

/**
 * The manifests of the end-to-end worlds: namespaces istio-system and demo (ambient), the Running
 * `pods`, and Service `echo` at `vip` port 80 → `appPort` selecting app=echo.
 */
export function demoClusterYaml(pods: DemoPod[], vip: string, appPort: number): string {
  const pod = (p: DemoPod) =>
    `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${p.name}\n  namespace: demo\n  labels:\n` +
    Object.entries(p.labels)
      .map(([k, v]) => `    ${k}: ${v}\n`)
      .join('') +
    `spec:\n  nodeName: ${p.node}\n  serviceAccountName: ${p.serviceAccount}\n  containers: [{ name: app, image: example/app:1 }]\n` +
    `status:\n  phase: Running\n  podIP: ${p.ip}\n`;
  return [
    'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n',
    'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n  labels:\n    istio.io/dataplane-mode: ambient\n',
    ...pods.map(pod),
    `apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\n  namespace: demo\nspec:\n  clusterIP: ${vip}\n  selector:\n    app: echo\n  ports:\n    - { name: tcp, port: 80, targetPort: ${appPort} }\n`,
  ].join('---\n');
}

// What the end-to-end worlds that run `ambit ztunnel` on each node share (ztunnel-world from a manifest
// directory or the discovery tier, k8s-world from the test API server, image-world's containers for the
// arguments): the ztunnel command line, its start in the node's netns with its output kept for failure
// messages, reads of its admin port, bounded waits on its policies and logs, and the pod clients.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { keepLogs } from './mesh.js';
import { type PodClient, waitReady } from './processes.js';
import { HarnessError, type Topology, distPath } from './topology.js';

export interface ZtunnelProc {
  child: ChildProcess;
  logs(): string;
  exit: Promise<number | null>;
}

/** Everything a ztunnel reads besides its state source: node, CA, CA root, node token, drain deadline. */
export function ztunnelArgs(
  node: string,
  source: string[],
  o: { caAddress: string; caRoot: string; dir: string },
): string[] {
  return [
    'ztunnel',
    '--node',
    node,
    ...source,
    '--ca',
    o.caAddress,
    '--ca-root',
    o.caRoot,
    '--token',
    join(o.dir, `token-${node}`),
    '--drain-deadline',
    '3000',
  ];
}

/** Polls `get` (every 50 ms, bounded in time and count) until it returns a value, naming what it waited for. */
export async function pollUntil<T>(
  what: string,
  get: () => Promise<T | undefined>,
  timeoutMs = 10_000,
  logs?: () => string,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000 && Date.now() < until; i++) {
    const v = await get().catch(() => undefined);
    if (v !== undefined && v !== null && v !== false) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new HarnessError(
    'WAIT_TIMEOUT',
    `timed out waiting for ${what}${logs ? `\n${logs().slice(-3000)}` : ''}`,
  );
}

export abstract class ZtunnelNodes {
  readonly ztunnels = new Map<string, ZtunnelProc>();
  readonly clients = new Map<string, PodClient>();

  constructor(
    readonly topo: Topology,
    readonly dir: string,
  ) {}

  abstract get caAddress(): string;
  abstract get caRoot(): string;

  ip(pod: string): string {
    return this.topo.pod(pod).ip;
  }

  /** Starts `ambit ztunnel` for `node` in its netns, reading state from `source`, and waits until ready. */
  protected async spawnZtunnel(
    node: string,
    source: string[],
    o: { extra?: string[]; nodeArgs?: string[]; timeoutMs?: number } = {},
  ): Promise<ZtunnelProc> {
    const t = this.topo;
    const child = t.spawnIn(
      t.node(node).ns,
      process.execPath,
      [
        ...(o.nodeArgs ?? []),
        distPath('cli/ambit.ts'),
        ...ztunnelArgs(node, source, this),
        ...(o.extra ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] },
    );
    const logs = keepLogs(child);
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waitReady(child, `ztunnel on ${node}`, o.timeoutMs ?? 20_000).catch((err: unknown) => {
      throw new HarnessError('ZTUNNEL_START', `${(err as Error).message}\n${logs().slice(-3000)}`);
    });
    const proc = { child, logs, exit };
    this.ztunnels.set(node, proc);
    return proc;
  }

  /** `curl` inside the node netns (ztunnel's admin and metrics ports listen there). */
  async curl(node: string, url: string): Promise<string> {
    const r = await this.topo.exec(this.topo.node(node).ns, 'curl', ['-sS', '--max-time', '5', url]);
    return r.stdout;
  }

  async configDump(node: string): Promise<{
    policies: { name: string; namespace: string }[];
    workloads: { name: string; namespace: string }[];
  }> {
    return JSON.parse(await this.curl(node, 'http://127.0.0.1:15000/config_dump'));
  }

  /** Waits (bounded) until node's ztunnel has / no longer has policy `ns/name`. */
  async waitPolicy(node: string, key: string, present: boolean, timeoutMs = 10_000): Promise<void> {
    await pollUntil(
      `ztunnel on ${node} ${present ? 'getting' : 'dropping'} policy ${key}`,
      async () => {
        const d = await this.configDump(node);
        return d.policies.some((p) => `${p.namespace}/${p.name}` === key) === present || undefined;
      },
      timeoutMs,
    );
  }

  /** Waits (bounded) until node's ztunnel has logged `text` (logs arrive through a pipe, after the fact). */
  async waitLog(node: string, text: string, timeoutMs = 5000): Promise<boolean> {
    return pollUntil(
      `ztunnel ${node} log "${text}"`,
      async () => this.ztunnels.get(node)?.logs().includes(text) || undefined,
      timeoutMs,
    )
      .then(() => true)
      .catch(() => false);
  }

  client(pod: string): PodClient {
    const c = this.clients.get(pod);
    if (!c) throw new HarnessError('NO_CLIENT', `no client in pod ${pod}`);
    return c;
  }

  protected killZtunnels(): void {
    for (const z of this.ztunnels.values())
      if (z.child.exitCode === null && z.child.signalCode === null) z.child.kill('SIGKILL');
  }
}

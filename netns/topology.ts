// The shared network-namespace topology for the network tests and `ambit demo`: "node" netns linked by a bridge in
// a "fabric" netns, and "pod" netns attached to their node by a veth (host side in the node netns,
// /32 pod routes, default route via the node) — the shape a routed CNI such as Calico builds. With
// `cni: 'bridge' | 'ptp'` the pods are wired instead by the real CNI plugins, invoked as a container
// runtime does (netns/cni.ts): a flannel/k3s-style bridge, or kindnet-style routed veths.
// Everything runs through child processes (`ip`, `nsenter`, `sysctl`) with timeouts, every kernel
// object carries a per-run prefix so parallel test files never collide, and teardown() removes all of
// it, idempotently, also from a process 'exit' hook.
//
// Why nsenter and not `ip netns exec`: the latter remounts /sys for the new netns and so hides the
// bpffs at /sys/fs/bpf (ip-netns(8)); nsenter --net switches only the netns.
import { type ChildProcess, execFile, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CniKind, cniAvailable, cniConfig, cniEnv, cniPath, parseCniResult } from './cni.js';

/** Addresses only ever exist inside namespaces this harness creates, so every topology may reuse them. */
export const FABRIC_CIDR = '10.200.0.0/24';
/** Node i (0-based) gets pod CIDR 10.244.<i+1>.0/24; .1 is the node's gateway address for its pods. */
export const POD_CIDR_BASE = '10.244';

const NETNS_DIR = '/var/run/netns';
const BPFFS = '/sys/fs/bpf';
const CMD_TIMEOUT_MS = 15_000;

export class HarnessError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'HarnessError';
    this.code = code;
  }
}

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** Run a command (no shell) with a timeout; rejects with the command line and its stderr. */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {},
) {
  return new Promise<ExecResult>((resolvePromise, reject) => {
    const child = execFile(
      cmd,
      args,
      {
        timeout: opts.timeoutMs ?? CMD_TIMEOUT_MS,
        maxBuffer: 64 * 1024 * 1024,
        ...(opts.env ? { env: opts.env } : {}),
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(
            new HarnessError(
              'COMMAND_FAILED',
              // CNI plugins report errors as JSON on stdout.
              `${cmd} ${args.join(' ')}: ${String(stderr).trim() || String(stdout).trim() || err.message}`.slice(
                0,
                2000,
              ),
            ),
          );
          return;
        }
        resolvePromise({ stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** `amb` + 4 random hex characters: short enough to leave room in 15-character interface names. */
export function randomPrefix(): string {
  return `amb${randomBytes(2).toString('hex')}`;
}

export function nsPath(ns: string): string {
  // An unnamed pod netns is referred to by a holder process's /proc/<pid>/ns/net.
  return ns.startsWith('/') ? ns : join(NETNS_DIR, ns);
}

/** Arguments that run `cmd args` inside netns `ns` without hiding /sys/fs/bpf. */
export function nsenterArgs(ns: string, cmd: string, args: string[]): string[] {
  return [`--net=${nsPath(ns)}`, cmd, ...args];
}

/** Run a command inside a netns (through nsenter, see the header). */
export function execIn(
  ns: string,
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; input?: string } = {},
) {
  return run('nsenter', nsenterArgs(ns, cmd, args), opts);
}

/** Mount bpffs at /sys/fs/bpf when missing (it is not mounted by default on this machine). Never unmounted:
 *  other test files and agents share it. */
export async function ensureBpffs(): Promise<void> {
  const mounts = await run('findmnt', ['-n', '-t', 'bpf', BPFFS]).catch(() => undefined);
  if (mounts?.stdout.trim()) return;
  await run('mount', ['-t', 'bpf', 'bpf', BPFFS]).catch(async (err: unknown) => {
    // A parallel test file may have mounted it between our check and our mount.
    const again = await run('findmnt', ['-n', '-t', 'bpf', BPFFS]).catch(() => undefined);
    if (!again?.stdout.trim()) throw err;
  });
}

/** The repository root: the nearest directory above this module holding package.json (source or dist/ run). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = resolve(dir, '..');
  }
  throw new HarnessError('NO_ROOT', `no package.json above ${fileURLToPath(import.meta.url)}`);
}

/** Compiled JavaScript for a TypeScript file of this repo (child processes run `dist/`). */
export function distPath(repoRelativeTs: string): string {
  const root = repoRoot();
  const js = join(root, 'dist', repoRelativeTs.replace(/\.ts$/, '.js'));
  if (!existsSync(js)) {
    throw new HarnessError(
      'NOT_BUILT',
      `${js} is missing: run \`npm run build\` (or npx tsc -p tsconfig.json) first`,
    );
  }
  return js;
}

export interface NodeNs {
  name: string;
  index: number;
  ns: string;
  /** The node's address on the fabric (its "node IP"). */
  ip: string;
  /** Interface in the node netns facing the fabric ("the uplink"). */
  uplink: string;
  podCidr: string;
  /** Address on the node's lo that pods use as their default gateway. */
  gateway: string;
}

export interface PodNs {
  name: string;
  node: string;
  ns: string;
  ip: string;
  /** Host side of the pod's veth, in the node netns. */
  hostVeth: string;
  /** Set when the pod was wired by a CNI plugin: what DEL needs. */
  cni?: { containerId: string; ifname: string };
}

/** How pods are wired: hand-made routed veths (default), or the real `bridge` / `ptp` CNI plugins. */
export type PodWiring = 'routed' | CniKind;

export interface TopologyOptions {
  /** Defaults to randomPrefix(). */
  prefix?: string;
  /** Default 'routed', or AMBIT_TEST_CNI when set (so a whole suite can be run on a CNI). */
  cni?: PodWiring;
}

type Cleanup = { kind: 'netns' | 'pin' | 'child' | 'dir'; name: string; child?: ChildProcess };

const live = new Set<Topology>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const t of live) t.teardownSync();
  });
}

/**
 * A topology of node and pod namespaces. Create with Topology.create(), add nodes then pods,
 * always `await teardown()` (afterAll / finally).
 */
export class Topology {
  readonly prefix: string;
  readonly fabricNs: string;
  readonly nodes = new Map<string, NodeNs>();
  readonly pods = new Map<string, PodNs>();
  readonly cni: PodWiring;
  private cniDataDir: string | undefined;
  private readonly cleanups: Cleanup[] = [];
  private podCounter = new Map<string, number>();
  private torn = false;

  private constructor(prefix: string, cni: PodWiring) {
    this.prefix = prefix;
    this.fabricNs = `${prefix}-fabric`;
    this.cni = cni;
  }

  static async create(opts: TopologyOptions = {}): Promise<Topology> {
    if (process.getuid?.() !== 0)
      throw new HarnessError('NOT_ROOT', 'network tests need root (netns, veth, BPF)');
    const cni = opts.cni ?? (process.env.AMBIT_TEST_CNI as PodWiring | undefined) ?? 'routed';
    if (!['routed', 'bridge', 'ptp'].includes(cni))
      throw new HarnessError('BAD_CNI', `cni "${cni}" must be routed, bridge or ptp`);
    if (cni !== 'routed' && !cniAvailable(cni)) {
      throw new HarnessError(
        'NO_CNI_PLUGINS',
        `${join(cniPath(), cni)} or host-local missing: apt-get install containernetworking-plugins`,
      );
    }
    const t = new Topology(opts.prefix ?? randomPrefix(), cni);
    if (!/^[a-z][a-z0-9]{2,7}$/.test(t.prefix)) {
      throw new HarnessError('BAD_PREFIX', `prefix "${t.prefix}" must be 3-8 lowercase letters/digits`);
    }
    live.add(t);
    installExitHook();
    await ensureBpffs();
    await t.addNetns(t.fabricNs);
    await t.exec(t.fabricNs, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
    await t.exec(t.fabricNs, 'ip', ['link', 'set', 'br0', 'up']);
    return t;
  }

  /** Run a command inside one of this topology's namespaces. */
  exec(ns: string, cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}) {
    return execIn(ns, cmd, args, opts);
  }

  /** Add a node netns, link it to the fabric and route every existing node's pod CIDR both ways. */
  async addNode(name: string): Promise<NodeNs> {
    this.checkName(name, 'node');
    if (this.nodes.has(name)) throw new HarnessError('DUPLICATE', `node ${name} exists`);
    const index = this.nodes.size;
    if (index >= 200) throw new HarnessError('TOO_MANY', 'at most 200 nodes');
    const ns = `${this.prefix}-n-${name}`;
    const node: NodeNs = {
      name,
      index,
      ns,
      ip: `10.200.0.${index + 1}`,
      uplink: 'eth0',
      podCidr: `${POD_CIDR_BASE}.${index + 1}.0/24`,
      gateway: `${POD_CIDR_BASE}.${index + 1}.1`,
    };
    await this.addNetns(ns);
    await this.sysctls(ns, true);
    const fabricSide = `n${index}`;
    await this.exec(this.fabricNs, 'ip', [
      'link',
      'add',
      fabricSide,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    ]);
    await this.exec(this.fabricNs, 'ip', ['link', 'set', fabricSide, 'master', 'br0', 'up']);
    await this.exec(ns, 'ip', ['addr', 'add', `${node.ip}/24`, 'dev', 'eth0']);
    await this.exec(ns, 'ip', ['link', 'set', 'eth0', 'up']);
    // Routed wiring puts the pods' gateway on lo; the CNI plugins put it on the bridge / host veths.
    if (this.cni === 'routed') await this.exec(ns, 'ip', ['addr', 'add', `${node.gateway}/32`, 'dev', 'lo']);
    for (const other of this.nodes.values()) {
      await this.exec(ns, 'ip', ['route', 'add', other.podCidr, 'via', other.ip]);
      await this.exec(other.ns, 'ip', ['route', 'add', node.podCidr, 'via', node.ip]);
    }
    this.nodes.set(name, node);
    return node;
  }

  /** Add a pod netns on `nodeName` with the next free IP of its node's CIDR (or `ip`). */
  /**
   * `unnamed`: the pod's netns is not pinned under /var/run/netns (as with runtimes that hand the CNI
   * /proc/<pid>/ns/net), so no agent can follow its veth into it — an uncapturable pod on purpose.
   */
  async addPod(
    nodeName: string,
    name: string,
    opts: { ip?: string; unnamed?: boolean } = {},
  ): Promise<PodNs> {
    this.checkName(name, 'pod');
    if (name.length > 12)
      throw new HarnessError('BAD_NAME', `pod name "${name}" is longer than 12 characters`);
    const node = this.nodes.get(nodeName);
    if (!node) throw new HarnessError('UNKNOWN_NODE', `no node ${nodeName} in topology ${this.prefix}`);
    if (this.pods.has(name)) throw new HarnessError('DUPLICATE', `pod ${name} exists`);
    const k = (this.podCounter.get(nodeName) ?? 0) + 1;
    if (k > 250) throw new HarnessError('TOO_MANY', `node ${nodeName} has no free pod IP`);
    this.podCounter.set(nodeName, k);
    const named = `${this.prefix}-p-${name}`;
    const ns = opts.unnamed ? await this.addUnnamedNetns(named) : named;
    if (this.cni !== 'routed') return this.addCniPod(node, name, ns, opts.ip, !opts.unnamed);
    const ip = opts.ip ?? `${POD_CIDR_BASE}.${node.index + 1}.${k + 1}`;
    const hostVeth = `h-${name}`;
    if (!opts.unnamed) await this.addNetns(ns);
    await this.sysctls(ns, false);
    await this.exec(node.ns, 'ip', [
      'link',
      'add',
      hostVeth,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns.startsWith('/proc/') ? (ns.split('/')[2] ?? ns) : ns,
    ]);
    await this.exec(node.ns, 'ip', ['link', 'set', hostVeth, 'up']);
    await this.exec(node.ns, 'ip', ['route', 'add', `${ip}/32`, 'dev', hostVeth]);
    await this.exec(ns, 'ip', ['addr', 'add', `${ip}/32`, 'dev', 'eth0']);
    await this.exec(ns, 'ip', ['link', 'set', 'eth0', 'up']);
    await this.exec(ns, 'ip', ['route', 'add', node.gateway, 'dev', 'eth0', 'scope', 'link']);
    await this.exec(ns, 'ip', ['route', 'add', 'default', 'via', node.gateway, 'dev', 'eth0']);
    const pod: PodNs = { name, node: nodeName, ns, ip, hostVeth };
    this.pods.set(name, pod);
    return pod;
  }

  /** ADD through the CNI plugin, as a runtime does once the pod sandbox's netns exists. */
  private async addCniPod(
    node: NodeNs,
    name: string,
    ns: string,
    ip?: string,
    create = true,
  ): Promise<PodNs> {
    const kind = this.cni as CniKind;
    this.cniDataDir ??= this.tmpDir('cni');
    if (create) await this.addNetns(ns);
    await this.sysctls(ns, false);
    const containerId = `${this.prefix}${name}`;
    const ifname = 'eth0';
    const { stdout } = await this.cniCall(node, 'ADD', containerId, ns, ifname, ip);
    const res = parseCniResult(kind, stdout);
    const pod: PodNs = {
      name,
      node: node.name,
      ns,
      ip: res.ip,
      hostVeth: res.hostIf,
      cni: { containerId, ifname },
    };
    this.pods.set(name, pod);
    return pod;
  }

  private cniCall(
    node: NodeNs,
    command: 'ADD' | 'DEL',
    containerId: string,
    ns: string,
    ifname: string,
    ip?: string,
  ) {
    const kind = this.cni as CniKind;
    const config = cniConfig({
      kind,
      name: `${this.prefix}-${node.name}`,
      subnet: node.podCidr,
      gateway: node.gateway,
      dataDir: this.cniDataDir ?? this.tmpDir('cni'),
    });
    return run('nsenter', [`--net=${nsPath(node.ns)}`, join(cniPath(), kind)], {
      input: config,
      env: cniEnv({ command, containerId, netnsPath: nsPath(ns), ifname, ...(ip ? { ip } : {}) }),
      timeoutMs: 30_000,
    });
  }

  /**
   * Delete a pod as Kubernetes does: the runtime calls the CNI DEL (the plugin removes the veth and
   * releases the address), then removes the sandbox netns.
   */
  async removePod(name: string): Promise<void> {
    const pod = this.pod(name);
    if (pod.cni) await this.cniCall(this.node(pod.node), 'DEL', pod.cni.containerId, pod.ns, pod.cni.ifname);
    if (pod.ns.startsWith('/proc/')) {
      // An unnamed netns lives as long as its holder process.
      const pid = Number(pod.ns.split('/')[2]);
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } else await run('ip', ['netns', 'del', pod.ns]);
    this.pods.delete(name);
  }

  private tmpDir(what: string): string {
    const dir = mkdtempSync(join(tmpdir(), `${this.prefix}-${what}-`));
    this.cleanups.push({ kind: 'dir', name: dir });
    return dir;
  }

  node(name: string): NodeNs {
    const n = this.nodes.get(name);
    if (!n) throw new HarnessError('UNKNOWN_NODE', `no node ${name} in topology ${this.prefix}`);
    return n;
  }

  pod(name: string): PodNs {
    const p = this.pods.get(name);
    if (!p) throw new HarnessError('UNKNOWN_POD', `no pod ${name} in topology ${this.prefix}`);
    return p;
  }

  /** A bpffs directory named with this run's prefix, removed at teardown. */
  pinDir(name: string): string {
    const dir = join(BPFFS, `${this.prefix}-${name}`);
    this.cleanups.push({ kind: 'pin', name: dir });
    return dir;
  }

  /**
   * Spawn a process inside netns `ns` (nsenter --net), killed at teardown. For a Node script, pass
   * process.execPath as cmd (see spawnNode).
   */
  spawnIn(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('nsenter', nsenterArgs(ns, cmd, args), {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...opts,
    });
    this.cleanups.push({ kind: 'child', name: `${ns}:${cmd}`, child });
    return child;
  }

  /** Spawn `node <dist js of repoRelativeTs> args` inside netns `ns`, with an IPC channel. */
  spawnNode(ns: string, repoRelativeTs: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
    return this.spawnIn(ns, process.execPath, [distPath(repoRelativeTs), ...args], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      ...opts,
    });
  }

  /** Remove everything this topology created; safe to call more than once. */
  async teardown(): Promise<void> {
    this.teardownSync();
  }

  /** Synchronous teardown (also run from the process 'exit' hook). Kills children first so their
   *  sockets do not keep deleted namespaces alive (docs/capture.md §7). */
  teardownSync(): void {
    if (this.torn) return;
    this.torn = true;
    live.delete(this);
    for (const c of [...this.cleanups].reverse()) {
      try {
        if (c.kind === 'child' && c.child && c.child.exitCode === null && c.child.signalCode === null) {
          c.child.kill('SIGKILL');
        } else if (c.kind === 'netns') {
          execFileSync('ip', ['netns', 'del', c.name], { timeout: CMD_TIMEOUT_MS, stdio: 'ignore' });
        } else if (c.kind === 'pin' || c.kind === 'dir') {
          rmSync(c.name, { recursive: true, force: true });
        }
      } catch {
        // Already gone (idempotent teardown); assertNoResidue reports anything real.
      }
    }
    // Pins created by code under test (e.g. the agent) with our prefix.
    for (const entry of safeReaddir(BPFFS)) {
      if (entry.startsWith(`${this.prefix}-`)) rmSync(join(BPFFS, entry), { recursive: true, force: true });
    }
  }

  /** A netns kept alive by a holder process only (its /var/run/netns name removed before any wiring). */
  private async addUnnamedNetns(name: string): Promise<string> {
    await this.addNetns(name);
    const holder = this.spawnIn(name, 'sleep', ['100000'], { stdio: 'ignore' });
    const pid = holder.pid;
    if (!pid) throw new HarnessError('NETNS', `could not start a holder for ${name}`);

    const inode = (await run('stat', ['-L', '-c', '%i', nsPath(name)])).stdout.trim();
    for (let i = 0; i < 100; i++) {
      const cur = await run('stat', ['-L', '-c', '%i', `/proc/${pid}/ns/net`]).catch(() => ({ stdout: '' }));
      if (cur.stdout.trim() === inode) break;
      await new Promise((r) => setTimeout(r, 20));
    }

    await run('ip', ['netns', 'del', name]);
    return `/proc/${pid}/ns/net`;
  }

  private async addNetns(ns: string): Promise<void> {
    await run('ip', ['netns', 'add', ns]);
    this.cleanups.push({ kind: 'netns', name: ns });
    await this.exec(ns, 'ip', ['link', 'set', 'lo', 'up']);
  }

  /** ip_early_demux=0 so early demux cannot hide a missing steer (docs/capture.md §4); nodes forward. */
  private async sysctls(ns: string, isNode: boolean): Promise<void> {
    const keys = [
      'net.ipv4.ip_early_demux=0',
      'net.ipv4.conf.all.rp_filter=0',
      'net.ipv4.conf.default.rp_filter=0',
    ];
    if (isNode) keys.push('net.ipv4.ip_forward=1');
    // A Kubernetes node on a bridge CNI runs bridged IPv4 through netfilter (br_netfilter; kubeadm's
    // preflight requires bridge-nf-call-iptables=1 for kube-proxy): the capture must work under it.
    if (isNode && this.cni === 'bridge' && existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables'))
      keys.push('net.bridge.bridge-nf-call-iptables=1');
    await this.exec(ns, 'sysctl', ['-q', '-w', ...keys]);
  }

  private checkName(name: string, what: string): void {
    if (!/^[a-z][a-z0-9]{0,11}$/.test(name)) {
      throw new HarnessError('BAD_NAME', `${what} name "${name}" must be 1-12 lowercase letters/digits`);
    }
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Throw (naming each leftover) if anything with `prefix` is still present in the root netns: netns
 * names, bpffs pins, root-netns links, nft tables, ip rules.
 */
export async function assertNoResidue(prefix: string): Promise<void> {
  const left: string[] = [];
  for (const ns of safeReaddir(NETNS_DIR)) if (ns.startsWith(prefix)) left.push(`netns ${ns}`);
  for (const pin of safeReaddir(BPFFS)) if (pin.startsWith(prefix)) left.push(`pin ${join(BPFFS, pin)}`);
  const links = await run('ip', ['-j', 'link', 'show']).catch(() => ({ stdout: '[]' }));
  for (const l of JSON.parse(links.stdout || '[]') as { ifname: string }[]) {
    if (l.ifname.startsWith(prefix)) left.push(`link ${l.ifname}`);
  }
  const tables = await run('nft', ['-j', 'list', 'tables']).catch(() => ({ stdout: '{"nftables":[]}' }));
  const parsed = JSON.parse(tables.stdout || '{"nftables":[]}') as {
    nftables: { table?: { name: string } }[];
  };
  for (const t of parsed.nftables)
    if (t.table?.name.startsWith(prefix)) left.push(`nft table ${t.table.name}`);
  const rules = await run('ip', ['rule', 'show']).catch(() => ({ stdout: '' }));
  for (const line of rules.stdout.split('\n')) if (line.includes(prefix)) left.push(`ip rule ${line.trim()}`);
  if (left.length > 0) throw new HarnessError('RESIDUE', `left behind by ${prefix}: ${left.join('; ')}`);
}

// The node agent's configuration: one typed object, defaults documented next to each field,
// validated at start (a bad value fails with the option's name).
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfAgentError } from './errors.js';

export type CaptureMode = 'auto' | 'ebpf' | 'nftables';

export interface BpfAgentConfig {
  /** Node name: only workloads whose `node` equals it are managed. */
  node: string;
  /** auto (default): eBPF, falling back to nftables TPROXY if the programs cannot load. */
  mode: CaptureMode;
  /** bpffs directory owned by this agent: maps/ and progs/<generation>/. Default /sys/fs/bpf/ambit. */
  pinDir: string;
  /** Directory holding steer_tc.bpf.o (built by `npm run build:bpf`). Default bpf-redirect/build. */
  objDir: string;
  /** ztunnel's listeners (istio/ztunnel: 15001 outbound, 15006 inbound plaintext, 15008 HBONE). */
  outboundPort: number;
  inboundPort: number;
  hbonePort: number;
  /** Mark for packets handed to the proxy. 0x400 stays clear of kube-proxy's 0x4000/0x8000 and of
   *  Calico's/Cilium's default masks; configurable for CNIs that use it. */
  mark: number;
  /** Policy-routing table holding `local 0.0.0.0/0 dev lo` for marked packets, and the rule's pref. */
  routeTable: number;
  rulePref: number;
  /** tc filter pref/handle we own on every clsact ingress; other tools' filters are never touched. */
  tcPref: number;
  tcHandle: number;
  /** Uplink devices (inbound capture). Default: the devices of the default route, else of every
   *  gateway route. */
  uplinks: string[];
  /** Let SYNs of enrolled pods go direct when the proxy is down (Istio has no such switch: off). */
  failOpen: boolean;
  /** Hold (drop) SYNs from a pod veth (a /32 route to a veth) whose pod the mesh state does not know
   *  yet, until it does: no bypass even if an app starts before the agent learns of its pod
   *  (istio/istio#48286). Costs a non-enrolled pod's very first connections up to a SYN retry (1 s)
   *  in that window. Default true. */
  holdUnknownPods: boolean;
  /** How long a DRAINing pod keeps its proxied flows steered before the entry goes (default 30 s);
   *  earlier if the node netns holds no socket of that pod any more. */
  drainGraceMs: number;
  /** Full resync period (new veths, drain timers), default 2 s. Changes are applied on events at once. */
  resyncMs: number;
  /** cgroup v2 directories whose processes get socket-level ClusterIP load balancing from the
   *  service map (svc_connect4). Only for pods outside the mesh. Default none (off). */
  serviceLbCgroups: string[];
  /** An enrolled pod whose interface the agent cannot find for this long (ms) is declared
   *  uncapturable: its traffic is refused (fail closed) and it is reported (log, status, metric,
   *  pod annotation and Event). Default 10 s — a CNI normally wires a pod well within that. */
  uncapturableAfterMs: number;
  /** Prometheus endpoint port (0 = off). Default 15014, istio-cni's monitoring port. */
  metricsPort: number;
  /** Prefix of the nftables tables this agent owns (`<prefix>_raw`, `<prefix>_tproxy`). */
  nftPrefix: string;
  /** Status JSON (mode, pods, counters), rewritten after every reconcile. */
  statusFile: string;
}

const repoRoot = (): string => {
  const here = dirname(fileURLToPath(import.meta.url));
  // bpf-redirect/agent (source) or dist/bpf-redirect/agent (compiled)
  return here.includes('/dist/') ? resolve(here, '../../..') : resolve(here, '../..');
};

export function defaultConfig(node: string): BpfAgentConfig {
  return {
    node,
    mode: 'auto',
    pinDir: '/sys/fs/bpf/ambit',
    objDir: resolve(repoRoot(), 'bpf-redirect/build'),
    outboundPort: 15001,
    inboundPort: 15006,
    hbonePort: 15008,
    mark: 0x400,
    routeTable: 133,
    rulePref: 133,
    tcPref: 49_200,
    tcHandle: 1,
    uplinks: [],
    failOpen: false,
    holdUnknownPods: true,
    drainGraceMs: 30_000,
    resyncMs: 2_000,
    uncapturableAfterMs: 10_000,
    metricsPort: 15014,
    nftPrefix: 'ambit',
    serviceLbCgroups: [],
    statusFile: `/run/ambit/bpf-agent-${node}.json`,
  };
}

const port = (name: string, v: number): void => {
  if (!Number.isInteger(v) || v < 1 || v > 65535) {
    throw new BpfAgentError('BAD_CONFIG', `bpf-agent: ${name} must be a TCP port 1-65535, got ${v}`);
  }
};

export function validateConfig(c: BpfAgentConfig): BpfAgentConfig {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(c.node)) {
    throw new BpfAgentError(
      'BAD_CONFIG',
      `bpf-agent: --node "${c.node}" is not a valid Kubernetes node name`,
    );
  }
  if (!['auto', 'ebpf', 'nftables'].includes(c.mode)) {
    throw new BpfAgentError(
      'BAD_CONFIG',
      `bpf-agent: --mode must be auto, ebpf or nftables, got "${c.mode}"`,
    );
  }
  port('outboundPort', c.outboundPort);
  port('inboundPort', c.inboundPort);
  port('hbonePort', c.hbonePort);
  if (!Number.isInteger(c.mark) || c.mark <= 0 || c.mark > 0xffffffff) {
    throw new BpfAgentError('BAD_CONFIG', `bpf-agent: --mark must be a non-zero 32-bit value, got ${c.mark}`);
  }
  if (!c.pinDir.startsWith('/sys/fs/bpf/')) {
    throw new BpfAgentError(
      'BAD_CONFIG',
      `bpf-agent: --pin-dir must be under /sys/fs/bpf/, got "${c.pinDir}"`,
    );
  }
  for (const [name, v, max] of [
    ['routeTable', c.routeTable, 0xfffffffe],
    ['rulePref', c.rulePref, 32765],
    ['tcPref', c.tcPref, 65535],
    ['tcHandle', c.tcHandle, 0xffffffff],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > max) {
      throw new BpfAgentError('BAD_CONFIG', `bpf-agent: ${name} must be an integer 1-${max}, got ${v}`);
    }
  }
  if (!/^[a-z][a-z0-9_]{0,20}$/.test(c.nftPrefix)) {
    throw new BpfAgentError('BAD_CONFIG', `bpf-agent: --nft-prefix "${c.nftPrefix}" must be [a-z][a-z0-9_]*`);
  }
  for (const u of c.uplinks) {
    if (!/^[A-Za-z0-9_.@-]{1,15}$/.test(u))
      throw new BpfAgentError('BAD_CONFIG', `bpf-agent: bad --uplink "${u}"`);
  }
  return c;
}

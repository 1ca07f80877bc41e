// Fallback capture where eBPF cannot load (old kernel, no BPF privileges, no BTF): nftables TPROXY
// into the same transparent listeners, so ztunnel's code is identical in both modes (docs/capture.md §2).
// TPROXY fails OPEN silently when no transparent listener exists (the statement just does not match,
// docs/capture.md §2), so a forward-hook chain explicitly rejects, with a TCP reset, any SYN of an enrolled pod
// that TPROXY did not take — fail closed, and faster than a drop. `--fail-open` leaves that chain out.
// The whole table (family inet, so it also sees IPv6) is rendered from the desired state and replaced
// atomically in one `nft -f`.
// Bridge CNIs (flannel, k3s, kubenet): the IP stack sees a bridged pod's packets on the bridge, not on
// its veth, and frames between pods of one bridge are switched at L2 and never reach the IP hooks at
// all. An enrolled pod's own IPv4 frames are redirected from its veth to the bridge device's ingress
// before the bridge sees them (bridge-ports.ts: with br_netfilter, TPROXY run from inside the bridge
// loses its socket), so they are routed — and TPROXYed — like on a routed CNI, the inet table matching
// the bridge as the pod's input interface. A `bridge` family table does the per-port rest
// (anti-spoofing, held SYNs, IPv6) for the frames that are still bridged.
import type { Logger } from 'pino';
import { BridgePortRedirects } from './bridge-ports.js';
import type { CaptureBackend, DesiredPod, Uplink } from './capture.js';
import { parseJson, runCommand } from './command.js';
import type { BpfAgentConfig } from './config.js';
import { POD_CAPTURE, POD_DRAIN, POD_NONE, POD_PENDING, type PodState } from './maps.js';
import { deleteNftTable, ensureMarkRouting, removeMarkRouting, replaceNftTable } from './routing.js';

const SYN = 'tcp flags & (syn | ack) == syn';
const COUNTERS = [
  'spoofed',
  'assigned_outbound',
  'assigned_inbound',
  'proxy_missing',
  'held_unknown_pod',
  'ipv6_dropped',
  'capture_bypass',
] as const;

export function renderTproxyTable(
  cfg: Pick<BpfAgentConfig, 'mark' | 'outboundPort' | 'inboundPort' | 'hbonePort' | 'failOpen'>,
  pods: readonly DesiredPod[],
): string {
  const mark = `0x${cfg.mark.toString(16)}`;
  const set = (name: string, type: string, elems: string[]) =>
    `  set ${name} {\n    type ${type};\n${elems.length ? `    elements = { ${elems.join(', ')} }\n` : ''}  }`;
  const capture = pods.filter((p) => p.state === POD_CAPTURE).map((p) => p.ip);
  // The device the IP stack sees a pod's packets arrive on: its veth, or the bridge it is a port of.
  const l3dev = (p: DesiredPod) => p.bridge?.dev ?? p.dev;
  const lines = [
    set('podifs', 'ifname', [...new Set(pods.map((p) => `"${l3dev(p)}"`))]),
    set(
      'podips',
      'ipv4_addr',
      pods.map((p) => p.ip),
    ),
    set(
      'podsrc',
      'ipv4_addr . ifname',
      pods.map((p) => `${p.ip} . "${l3dev(p)}"`),
    ),
    set('capture', 'ipv4_addr', capture),
    set('captureifs', 'ifname', [
      ...new Set(
        pods
          .filter((p) => !p.bridge && (p.state === POD_CAPTURE || p.state === POD_PENDING))
          .map((p) => `"${p.dev}"`),
      ),
    ]),
    set(
      'pending',
      'ipv4_addr',
      pods.filter((p) => p.state === POD_PENDING).map((p) => p.ip),
    ),
    ...COUNTERS.map((c) => `  counter ${c} {}`),
    // raw (-300) runs before conntrack and kube-proxy's DNAT (-100). Captured SYNs and every packet of
    // a flow a transparent socket owns skip conntrack, so the proxy's sockets are keyed by the address
    // the app dialled (a ClusterIP stays the original destination) and later packets still find them
    // — the nftables twin of the eBPF mode's notrack-on-mark rule (docs/capture.md §1). Known cost:
    // with --fail-open and the proxy down, an untracked SYN to a ClusterIP misses kube-proxy's DNAT
    // and fails (eBPF mode marks only SYNs it assigns, so it has no such gap).
    '  chain raw {',
    '    type filter hook prerouting priority raw; policy accept;',
    // Anti-spoofing, as the eBPF veth-ifindex check: a pod's packets carry its IP, on its veth only.
    '    iifname @podifs ip saddr . iifname != @podsrc counter name spoofed drop',
    '    ip saddr @podips ip saddr . iifname != @podsrc counter name spoofed drop',
    // A pod veth whose pod the state does not know yet: hold its SYNs (no bypass at pod start).
    `    iifname @podifs ip saddr @pending ${SYN} counter name held_unknown_pod drop`,
    // IPv6 is not captured yet: an enrolled pod's IPv6 TCP (or anything behind extension headers)
    // is dropped rather than let around the mesh; neighbour discovery and UDP pass (as eBPF mode).
    '    iifname @captureifs meta nfproto ipv6 meta l4proto != { icmpv6, udp } counter name ipv6_dropped drop',
    `    iifname @podifs ip saddr @capture ${SYN} notrack`,
    `    ip daddr @capture ${SYN} notrack`,
    // The proxy's listeners are transparent too, bound to 0.0.0.0, and nft's socket lookup returns
    // listeners: without this line every packet to a port ztunnel listens on (a waypoint pod's HBONE
    // 15008, say) was marked, routed locally and answered by ztunnel instead of the pod — the nftables
    // waypoint path's 400/503. iptables' `-m socket` skips such wildcard listeners by default (only
    // full sockets; a request socket of a TPROXYed handshake still matches); `socket wildcard` has no
    // answer for request sockets, hence a skip of listeners rather than `wildcard 0` on the mark rule.
    // eBPF mode checks `sk->state != LISTEN` for the same reason (steer_tc.bpf.c).
    '    meta l4proto tcp socket wildcard 1 return',
    `    meta l4proto tcp socket transparent 1 meta mark set ${mark} notrack`,
    '  }',
    '  chain prerouting {',
    '    type filter hook prerouting priority mangle; policy accept;',
    `    iifname @podifs ip saddr @capture ${SYN} tproxy ip to :${cfg.outboundPort} meta mark set ${mark} counter name assigned_outbound accept`,
    `    ip daddr @capture tcp dport ${cfg.hbonePort} ${SYN} tproxy ip to :${cfg.hbonePort} meta mark set ${mark} counter name assigned_inbound accept`,
    `    ip daddr @capture ${SYN} tproxy ip to :${cfg.inboundPort} meta mark set ${mark} counter name assigned_inbound accept`,
    '  }',
  ];
  // Self-check: TCP of an enrolled pod that the node forwards (the proxy's own packets are local
  // output, never forwarded) left outside HBONE. Counted after the guard, so refused SYNs are not.
  lines.push(
    '  chain audit {',
    '    type filter hook forward priority 10; policy accept;',
    '    ip saddr @capture ip protocol tcp counter name capture_bypass',
    '  }',
  );
  if (!cfg.failOpen) {
    lines.push(
      '  chain guard {',
      '    type filter hook forward priority filter; policy accept;',
      `    iifname @podifs ip saddr @capture ${SYN} counter name proxy_missing reject with tcp reset`,
      `    ip daddr @capture ${SYN} counter name proxy_missing reject with tcp reset`,
      '  }',
    );
  }
  return lines.join('\n');
}

/** The `bridge` family table for pods whose veth is a bridge port; undefined when there are none. */
export function renderBridgeTable(pods: readonly DesiredPod[]): string | undefined {
  const bridged = pods.filter((p) => p.bridge);
  if (bridged.length === 0) return undefined;
  const set = (name: string, type: string, elems: string[]) =>
    `  set ${name} {\n    type ${type};\n${elems.length ? `    elements = { ${elems.join(', ')} }\n` : ''}  }`;
  const bridges = new Map(bridged.map((p) => [p.bridge!.dev, p.bridge!.mac]));
  const lines = [
    set(
      'ports',
      'ifname',
      bridged.map((p) => `"${p.dev}"`),
    ),
    set(
      'portsrc',
      'ipv4_addr . ifname',
      bridged.map((p) => `${p.ip} . "${p.dev}"`),
    ),
    set(
      'pending',
      'ipv4_addr',
      bridged.filter((p) => p.state === POD_PENDING).map((p) => p.ip),
    ),
    set(
      'captureports',
      'ifname',
      bridged.filter((p) => p.state === POD_CAPTURE || p.state === POD_PENDING).map((p) => `"${p.dev}"`),
    ),
    // Enrolled or draining pods of this node: their frames are routed, never switched.
    set(
      'routed',
      'ipv4_addr',
      pods.filter((p) => p.state === POD_CAPTURE || p.state === POD_DRAIN).map((p) => p.ip),
    ),
    set(
      'capture',
      'ipv4_addr',
      pods.filter((p) => p.state === POD_CAPTURE).map((p) => p.ip),
    ),
    ...['spoofed', 'held_unknown_pod', 'ipv6_dropped', 'capture_bypass'].map((c) => `  counter ${c} {}`),
    '  chain prerouting {',
    '    type filter hook prerouting priority -200; policy accept;',
    '    iifname @ports ether type ip ip saddr . iifname != @portsrc counter name spoofed drop',
    `    iifname @ports ether type ip ip saddr @pending ${SYN} counter name held_unknown_pod drop`,
    '    iifname @captureports ether type ip6 meta l4proto != { icmpv6, udp } counter name ipv6_dropped drop',
    // Per bridge, by its pod ports (`meta ibrname` needs nft_meta_bridge, not built in everywhere).
    ...[...bridges].flatMap(([br, mac]) => {
      const ports = `{ ${bridged
        .filter((p) => p.bridge?.dev === br)
        .map((p) => `"${p.dev}"`)
        .join(', ')} }`;
      // Frames from other pods of the bridge to an enrolled one (inbound on the same node), when their
      // veth carries no redirect (bridge-ports.ts) — without br_netfilter this routes them as well.
      return [
        `    iifname ${ports} ether type ip ip daddr @routed ether daddr set ${mac} meta pkttype set host`,
      ];
    }),
    '  }',
    '  chain forward {',
    '    type filter hook forward priority 0; policy accept;',
    '    ether type ip ip saddr @capture ip protocol tcp counter name capture_bypass',
    '  }',
  ];
  return lines.join('\n');
}

export class NftCapture implements CaptureBackend {
  readonly mode = 'nftables' as const;
  private rendered = '';
  private pods = new Map<string, PodState>();
  private devices: string[] = [];

  constructor(
    private readonly cfg: BpfAgentConfig,
    private readonly log: Logger,
  ) {
    this.ports = new BridgePortRedirects(cfg.tcPref + 1, `${cfg.nftPrefix}_up`);
  }

  private get table(): string {
    return `${this.cfg.nftPrefix}_tproxy`;
  }

  private get l2table(): string {
    return `${this.cfg.nftPrefix}_l2`;
  }

  private renderedL2: string | undefined;
  /** tc filters on bridged enrolled pods' veths; pref next to eBPF mode's, so a mode switch never clashes. */
  private readonly ports: BridgePortRedirects;

  async setup(): Promise<void> {
    // Earlier versions used an `ip` family table of the same name: never leave two rulesets.
    await deleteNftTable('ip', this.table);
    await ensureMarkRouting({ mark: this.cfg.mark, table: this.cfg.routeTable, pref: this.cfg.rulePref });
    try {
      const out = await runCommand('nft', ['-j', 'list', 'set', 'inet', this.table, 'capture']);
      const doc = parseJson<{ nftables: { set?: { elem?: unknown[] } }[] }>('nft list set', out);
      for (const item of doc?.nftables ?? []) {
        for (const e of item.set?.elem ?? []) if (typeof e === 'string') this.pods.set(e, POD_CAPTURE);
      }
      this.log.info({ capture: [...this.pods.keys()] }, 'recovered nftables capture set');
    } catch {
      // First start: no table yet.
    }
  }

  async apply(pods: readonly DesiredPod[], _uplinks: readonly Uplink[]): Promise<Map<string, string>> {
    // L2 and the port redirects first: by the time TPROXY expects a bridged pod on its bridge, its
    // frames are routed.
    const failed = await this.ports.sync(pods);
    const l2 = renderBridgeTable(pods);
    if (l2 !== this.renderedL2) {
      if (l2) await replaceNftTable('bridge', this.l2table, l2);
      else await deleteNftTable('bridge', this.l2table);
      this.renderedL2 = l2;
    }
    const body = renderTproxyTable(this.cfg, pods);
    if (body !== this.rendered) {
      await replaceNftTable('inet', this.table, body);
      this.rendered = body;
    }
    this.pods = new Map(pods.map((p) => [p.ip, p.state === POD_CAPTURE ? POD_CAPTURE : POD_NONE]));
    this.devices = [...new Set(pods.map((p) => p.dev))].sort();
    return failed;
  }

  async kernelPods(): Promise<Map<string, PodState>> {
    return new Map(this.pods);
  }

  async counters(): Promise<Record<string, number>> {
    const out: Record<string, number> = Object.fromEntries(COUNTERS.map((c) => [c, 0]));
    const doc = parseJson<{ nftables: { counter?: { name: string; packets: number } }[] }>(
      'nft list counters',
      await runCommand('nft', ['-j', 'list', 'counters', 'table', 'inet', this.table]),
    );
    for (const item of doc?.nftables ?? []) if (item.counter) out[item.counter.name] = item.counter.packets;
    if (this.renderedL2) {
      const l2 = parseJson<{ nftables: { counter?: { name: string; packets: number } }[] }>(
        'nft list counters',
        await runCommand('nft', ['-j', 'list', 'counters', 'table', 'bridge', this.l2table]),
      );
      for (const item of l2?.nftables ?? [])
        if (item.counter) out[item.counter.name] = (out[item.counter.name] ?? 0) + item.counter.packets;
    }
    return out;
  }

  attachments() {
    return { devices: this.devices, createdQdiscs: [] };
  }

  async teardown(): Promise<void> {
    await deleteNftTable('inet', this.table);
    await deleteNftTable('bridge', this.l2table);
    this.renderedL2 = undefined;
    await this.ports.teardown();
    await removeMarkRouting({ mark: this.cfg.mark, table: this.cfg.routeTable, pref: this.cfg.rulePref });
    this.rendered = '';
  }
}

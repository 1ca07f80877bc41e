// Fallback capture where eBPF cannot load (old kernel, no BPF privileges, no BTF): nftables TPROXY
// into the same transparent listeners, so ztunnel's code is identical in both modes (research §3.3).
// TPROXY fails OPEN silently when no transparent listener exists (the statement just does not match,
// pitfall 2), so a forward-hook chain explicitly rejects, with a TCP reset, any SYN of an enrolled pod
// that TPROXY did not take — fail closed, and faster than a drop. `--fail-open` leaves that chain out.
// The whole table (family inet, so it also sees IPv6) is rendered from the desired state and replaced
// atomically in one `nft -f`.
import type { Logger } from 'pino';
import type { CaptureBackend, DesiredPod, Uplink } from './capture.js';
import { parseJson, runCommand } from './command.js';
import type { BpfAgentConfig } from './config.js';
import { POD_CAPTURE, POD_NONE, POD_PENDING, type PodState } from './maps.js';
import { deleteNftTable, ensureMarkRouting, removeMarkRouting, replaceNftTable } from './routing.js';

const SYN = 'tcp flags & (syn | ack) == syn';
const COUNTERS = [
  'spoofed',
  'assigned_outbound',
  'assigned_inbound',
  'proxy_missing',
  'held_unknown_pod',
  'ipv6_dropped',
] as const;

export function renderTproxyTable(
  cfg: Pick<BpfAgentConfig, 'mark' | 'outboundPort' | 'inboundPort' | 'hbonePort' | 'failOpen'>,
  pods: readonly DesiredPod[],
): string {
  const mark = `0x${cfg.mark.toString(16)}`;
  const set = (name: string, type: string, elems: string[]) =>
    `  set ${name} {\n    type ${type};\n${elems.length ? `    elements = { ${elems.join(', ')} }\n` : ''}  }`;
  const capture = pods.filter((p) => p.state === POD_CAPTURE).map((p) => p.ip);
  const lines = [
    set('podifs', 'ifname', [...new Set(pods.map((p) => `"${p.dev}"`))]),
    set(
      'podips',
      'ipv4_addr',
      pods.map((p) => p.ip),
    ),
    set(
      'podsrc',
      'ipv4_addr . ifname',
      pods.map((p) => `${p.ip} . "${p.dev}"`),
    ),
    set('capture', 'ipv4_addr', capture),
    set('captureifs', 'ifname', [
      ...new Set(
        pods.filter((p) => p.state === POD_CAPTURE || p.state === POD_PENDING).map((p) => `"${p.dev}"`),
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
    // — the nftables twin of the eBPF mode's notrack-on-mark rule (research pitfall 4). Known cost:
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
    // Only sockets bound to a specific address: the proxy's own listeners are transparent too, but
    // bound to 0.0.0.0, and nft's socket lookup also returns listeners. Without `wildcard 0` every SYN
    // to a port ztunnel listens on (a waypoint pod's HBONE 15008, say) matched, was marked, routed
    // locally and answered by ztunnel instead of the pod (the 503/400 of the nftables waypoint path).
    // iptables' `-m socket` skips wildcard listeners unless --nowildcard; eBPF mode checks
    // `sk->state != LISTEN` for the same reason (steer_tc.bpf.c).
    `    meta l4proto tcp socket transparent 1 socket wildcard 0 meta mark set ${mark} notrack`,
    `    iifname @podifs ip saddr @capture ${SYN} notrack`,
    `    ip daddr @capture ${SYN} notrack`,
    '  }',
    '  chain prerouting {',
    '    type filter hook prerouting priority mangle; policy accept;',
    `    iifname @podifs ip saddr @capture ${SYN} tproxy ip to :${cfg.outboundPort} meta mark set ${mark} counter name assigned_outbound accept`,
    `    ip daddr @capture tcp dport ${cfg.hbonePort} ${SYN} tproxy ip to :${cfg.hbonePort} meta mark set ${mark} counter name assigned_inbound accept`,
    `    ip daddr @capture ${SYN} tproxy ip to :${cfg.inboundPort} meta mark set ${mark} counter name assigned_inbound accept`,
    '  }',
  ];
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

export class NftCapture implements CaptureBackend {
  readonly mode = 'nftables' as const;
  private rendered = '';
  private pods = new Map<string, PodState>();
  private devices: string[] = [];

  constructor(
    private readonly cfg: BpfAgentConfig,
    private readonly log: Logger,
  ) {}

  private get table(): string {
    return `${this.cfg.nftPrefix}_tproxy`;
  }

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

  async apply(pods: readonly DesiredPod[], _uplinks: readonly Uplink[]): Promise<void> {
    const body = renderTproxyTable(this.cfg, pods);
    if (body !== this.rendered) {
      await replaceNftTable('inet', this.table, body);
      this.rendered = body;
    }
    this.pods = new Map(pods.map((p) => [p.ip, p.state === POD_CAPTURE ? POD_CAPTURE : POD_NONE]));
    this.devices = [...new Set(pods.map((p) => p.dev))].sort();
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
    return out;
  }

  attachments() {
    return { devices: this.devices, createdQdiscs: [] };
  }

  async teardown(): Promise<void> {
    await deleteNftTable('inet', this.table);
    await removeMarkRouting({ mark: this.cfg.mark, table: this.cfg.routeTable, pref: this.cfg.rulePref });
    this.rendered = '';
  }
}

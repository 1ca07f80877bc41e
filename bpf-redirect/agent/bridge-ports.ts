// nftables mode on a bridge CNI (flannel, k3s, kubenet): hand an enrolled pod's IPv4 frames to the IP
// stack on the bridge device without the bridge ever seeing them.
//
// Why not simply re-address them to the bridge: on a Kubernetes node br_netfilter is loaded and
// net.bridge.bridge-nf-call-iptables=1 (kube-proxy needs it). For a bridged frame the IPv4 prerouting
// hooks (our TPROXY among them) then run from inside the bridge's own prerouting hook, before
// ip_rcv_core(); that function orphans any socket on the skb it was not prefetched by an early
// lookup (net/ipv4/ip_input.c: "Must drop socket now because of tproxy"), and nf_tproxy_assign_sock()
// does not mark its socket as prefetched — so the listener TPROXY picked is dropped, the SYN is
// delivered by its tuple to no socket and answered with a reset the pod never sees (the connection
// times out). ip_sabotage_in() (net/bridge/br_netfilter_hooks.c) keeps the hooks from running a
// second time at the real ip_rcv(). The ebtables/nft `broute` escape needs nft_meta_bridge or
// ebtable_broute, which many kernels do not build.
//
// So, as the eBPF mode's bpf_redirect does, a tc u32 filter on the pod's veth (ingress, before the
// bridge's rx handler) redirects the pod's own IPv4 frames (source = its IP) to the ingress of the
// bridge device itself (act_mirred): the bridge device is no bridge port, so the frame enters ip_rcv()
// as a plain packet on the bridge and the inet table's TPROXY works as on a routed CNI. The frames
// still carry the pod's gateway or peer MAC, i.e. PACKET_OTHERHOST for the bridge device, which
// ip_rcv() drops: a netdev-family ingress chain on the bridge turns exactly those frames (source a
// redirected pod, otherhost) into PACKET_HOST.
// Every known pod of the bridge gets the filter, not only enrolled ones: a non-enrolled pod's frames to
// an enrolled pod of the same bridge must be TPROXYed inbound too, and redirecting them after the
// bridge (on the enrolled pod's veth egress) is too late — they carry br_netfilter's state by then, so
// ip_sabotage_in() skips the prerouting hooks again. The cost: in nftables mode on a bridge CNI the
// node routes its pods' IPv4 (TTL-1) instead of switching it. Unknown pods' frames (held), ARP, IPv6
// and spoofed frames are still bridged, where the bridge table filters them. Needs cls_u32 and
// act_mirred, no BPF.
import type { DesiredPod } from './capture.js';
import { parseJson, runCommand } from './command.js';
import { BpfAgentError } from './errors.js';
import { POD_PENDING } from './maps.js';
import { deleteNftTable, replaceNftTable } from './routing.js';
import { deleteClsactIfEmpty, ensureClsact } from './tc.js';

/** u32 keeps a filter's selector on `replace` (only its actions change): a new IP is del + add. */
const U32_HANDLE = '800::1';

interface U32FilterJson {
  pref?: number;
  kind?: string;
  options?: { fh?: string; match?: { value?: string; off?: number }; actions?: { to_dev?: string }[] };
}

export interface PortRedirect {
  dev: string;
  ip: string;
  bridge: string;
}

/** Every known bridged pod (not PENDING: an unknown pod's SYNs are held at the bridge). */
export function wantedRedirects(pods: readonly DesiredPod[]): PortRedirect[] {
  return pods.flatMap((p) =>
    p.bridge && p.state !== POD_PENDING ? [{ dev: p.dev, ip: p.ip, bridge: p.bridge.dev }] : [],
  );
}

/** The netdev table: one ingress chain per bridge that carries redirected frames. */
export function renderUpTable(redirects: readonly PortRedirect[]): string | undefined {
  if (redirects.length === 0) return undefined;
  const bridges = [...new Set(redirects.map((r) => r.bridge))].sort();
  const lines = [
    `  set routed {\n    type ipv4_addr;\n    elements = { ${[...new Set(redirects.map((r) => r.ip))].join(', ')} }\n  }`,
    ...bridges.map((br, i) =>
      [
        `  chain up${i} {`,
        `    type filter hook ingress device "${br}" priority 0; policy accept;`,
        '    ether type ip ip saddr @routed meta pkttype other meta pkttype set host',
        '  }',
      ].join('\n'),
    ),
  ];
  return lines.join('\n');
}

function hexToIp(hex: string | undefined): string | undefined {
  if (!hex || !/^[0-9a-f]{1,8}$/i.test(hex)) return undefined;
  const n = Number.parseInt(hex, 16);
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
}

export class BridgePortRedirects {
  /** dev → what our filter there redirects (as installed). */
  private readonly installed = new Map<string, PortRedirect>();
  private readonly createdQdiscs = new Set<string>();
  private renderedUp: string | undefined;
  private scanned = false;

  constructor(
    private readonly pref: number,
    private readonly table: string,
  ) {}

  private async ours(dev: string): Promise<PortRedirect | undefined> {
    let list: U32FilterJson[];
    try {
      list =
        parseJson<U32FilterJson[]>(
          'tc filter show',
          await runCommand('tc', ['-j', 'filter', 'show', 'dev', dev, 'ingress']),
        ) ?? [];
    } catch (err) {
      if (err instanceof BpfAgentError && /Cannot find device|does not exist/i.test(err.message))
        return undefined;
      throw err;
    }
    const f = list.find((x) => x.pref === this.pref && x.kind === 'u32' && x.options?.fh === U32_HANDLE);
    if (!f) return undefined;
    return {
      dev,
      ip: hexToIp(f.options?.match?.value) ?? '',
      bridge: f.options?.actions?.[0]?.to_dev ?? '',
    };
  }

  private async remove(dev: string): Promise<void> {
    await runCommand('tc', [
      'filter',
      'del',
      'dev',
      dev,
      'ingress',
      'pref',
      String(this.pref),
      'handle',
      U32_HANDLE,
      'u32',
    ]).catch((err: unknown) => {
      // The veth went with its pod, or the filter is not there: nothing to remove.
      if (
        !(err instanceof BpfAgentError && /Cannot find|No such|not found|Invalid handle/i.test(err.message))
      )
        throw err;
    });
    if (this.createdQdiscs.delete(dev)) await deleteClsactIfEmpty(dev);
    this.installed.delete(dev);
  }

  private async add(r: PortRedirect): Promise<void> {
    if (await ensureClsact(r.dev)) this.createdQdiscs.add(r.dev);
    await runCommand('tc', [
      'filter',
      'add',
      'dev',
      r.dev,
      'ingress',
      'pref',
      String(this.pref),
      'handle',
      U32_HANDLE,
      'protocol',
      'ip',
      'u32',
      'match',
      'ip',
      'src',
      `${r.ip}/32`,
      'action',
      'mirred',
      'ingress',
      'redirect',
      'dev',
      r.bridge,
    ]);
    this.installed.set(r.dev, r);
  }

  /**
   * Make the veths of `pods` match: the netdev table first (a redirected frame must find its chain),
   * then the filters. `pods` lists every pod veth of the node, so a filter a previous agent left on a
   * pod that is no longer enrolled is found on the first call.
   */
  async sync(pods: readonly DesiredPod[]): Promise<Map<string, string>> {
    const want = wantedRedirects(pods);
    const up = renderUpTable(want);
    if (up !== this.renderedUp) {
      if (up) await replaceNftTable('netdev', this.table, up);
      this.renderedUp = up;
    }
    if (!this.scanned) {
      for (const p of pods) {
        const found = await this.ours(p.dev);
        if (found) this.installed.set(p.dev, found);
      }
      this.scanned = true;
    }
    const wantByDev = new Map(want.map((r) => [r.dev, r]));
    for (const [dev, have] of [...this.installed]) {
      const w = wantByDev.get(dev);
      if (!w || w.ip !== have.ip || w.bridge !== have.bridge) await this.remove(dev);
    }
    const failed = new Map<string, string>();
    for (const r of want) {
      if (this.installed.has(r.dev)) continue;
      try {
        await this.add(r);
      } catch (err) {
        // This pod's frames would be bridged around TPROXY: the agent refuses and reports it (if enrolled).
        if (!(err instanceof BpfAgentError)) throw err;
        failed.set(r.dev, err.message);
      }
    }
    if (!up) {
      await deleteNftTable('netdev', this.table);
      this.renderedUp = undefined;
    }
    return failed;
  }

  devices(): string[] {
    return [...this.installed.keys()].sort();
  }

  /** Remove our filter from every link that has one, and the netdev table. */
  async teardown(): Promise<void> {
    const links =
      parseJson<{ ifname: string }[]>('ip link show', await runCommand('ip', ['-j', 'link', 'show'])) ?? [];
    for (const l of links) {
      if (this.installed.has(l.ifname) || (await this.ours(l.ifname))) await this.remove(l.ifname);
    }
    await deleteNftTable('netdev', this.table);
    this.renderedUp = undefined;
  }
}

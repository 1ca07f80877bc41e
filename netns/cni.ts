// Pods wired by the real CNI plugins (Debian `containernetworking-plugins`, /usr/lib/cni), invoked the
// way a container runtime invokes them (CNI spec, github.com/containernetworking/cni SPEC.md
// "Parameters"): the plugin binary runs in the host (here: node) netns with CNI_COMMAND=ADD|DEL,
// CNI_CONTAINERID, CNI_NETNS (path of the pod's netns), CNI_IFNAME, CNI_PATH and the network
// configuration JSON on stdin, and answers ADD with a result JSON (interfaces, ips).
//   bridge + host-local: every pod's veth is enslaved to one bridge per node that holds the gateway
//                        address (flannel, k3s's default, kubenet);
//   ptp + host-local:    one routed veth per pod, /32 route to the pod and the gateway address on the
//                        host side (kindnet; Calico is routed the same way).
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export type CniKind = 'bridge' | 'ptp';

/** Where Debian installs the plugins; AMBIT_CNI_PATH overrides (e.g. /opt/cni/bin). */
export function cniPath(): string {
  return process.env.AMBIT_CNI_PATH ?? '/usr/lib/cni';
}

export function cniAvailable(kind: CniKind): boolean {
  return existsSync(join(cniPath(), kind)) && existsSync(join(cniPath(), 'host-local'));
}

export interface CniNetwork {
  kind: CniKind;
  /** Network name: host-local keeps its allocations under dataDir/<name>. */
  name: string;
  subnet: string;
  gateway: string;
  /** host-local's state directory (one per topology, so parallel runs never share allocations). */
  dataDir: string;
  /** Bridge name for `bridge` (default cni0, as flannel/k3s). */
  bridge?: string;
}

/** The network configuration a runtime would read from /etc/cni/net.d for this network. */
export function cniConfig(n: CniNetwork): string {
  const ipam = {
    type: 'host-local',
    dataDir: n.dataDir,
    ranges: [[{ subnet: n.subnet, gateway: n.gateway }]],
    // bridge adds the default route itself (isDefaultGateway); ptp installs the IPAM routes.
    ...(n.kind === 'ptp' ? { routes: [{ dst: '0.0.0.0/0' }] } : {}),
  };
  const plugin =
    n.kind === 'bridge'
      ? {
          type: 'bridge',
          bridge: n.bridge ?? 'cni0',
          isGateway: true,
          isDefaultGateway: true,
          // No masquerade: the mesh must see pod IPs (flannel masquerades only off-cluster traffic).
          ipMasq: false,
          hairpinMode: true,
          ipam,
        }
      : { type: 'ptp', ipMasq: false, ipam };
  return JSON.stringify({ cniVersion: '1.0.0', name: n.name, ...plugin });
}

export interface CniInvocation {
  command: 'ADD' | 'DEL';
  containerId: string;
  netnsPath: string;
  ifname: string;
  /** Ask host-local for this address (CNI_ARGS IP=, as runtimes pass static IPs). */
  ip?: string;
}

/** Environment of one plugin call (CNI spec "Parameters"). */
export function cniEnv(inv: CniInvocation): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: inv.command,
    CNI_CONTAINERID: inv.containerId,
    CNI_NETNS: inv.netnsPath,
    CNI_IFNAME: inv.ifname,
    CNI_PATH: cniPath(),
    ...(inv.ip ? { CNI_ARGS: `IgnoreUnknown=1;IP=${inv.ip}` } : {}),
  };
}

/** The parts of an ADD result the harness uses. */
export interface CniResult {
  /** Host-side interface of the pod (the veth end outside the pod's netns). */
  hostIf: string;
  ip: string;
}

export function parseCniResult(kind: CniKind, json: string, bridge = 'cni0'): CniResult {
  const r = JSON.parse(json) as {
    interfaces?: { name: string; sandbox?: string }[];
    ips?: { address: string; interface?: number }[];
  };
  const host = (r.interfaces ?? []).find((i) => !i.sandbox && (kind !== 'bridge' || i.name !== bridge));
  const ip = r.ips?.[0]?.address.split('/')[0];
  if (!host || !ip)
    throw new Error(`CNI ${kind} ADD result without host interface or IP: ${json.slice(0, 500)}`);
  return { hostIf: host.name, ip };
}

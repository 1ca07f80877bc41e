// What the agent needs to know about its node: "the pods of my node, their IP, enrolled or not".
// It asks core/state (MeshState) and never parses manifests itself. The host-side interface of each pod
// is found from the pod itself, whatever the CNI: every veth of the node netns whose peer lives in
// another netns is followed into that netns (the runtime pins pod netns under /var/run/netns, as
// containerd and CRI-O do), and the peer's IPv4 address names the pod. A /32 route would only find
// routed CNIs (Calico, kindnet's ptp); a bridge CNI (flannel, k3s, kubenet) has a subnet route to the
// bridge and none per pod.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { MeshState } from '../../core/state/state.js';
import { parseJson, runCommand } from './command.js';
import type { ServiceBackends } from './service-lb.js';

export interface NodePod {
  /** Workload uid, e.g. Kubernetes//v1/Pod/<ns>/<name>. */
  uid: string;
  name: string;
  namespace: string;
  ip: string;
  /** In the mesh (istio.io/dataplane-mode=ambient on pod or namespace, the WDS HBONE protocol). */
  enrolled: boolean;
}

export interface NodePodSource {
  pods(): NodePod[];
  /** Service VIP:port → ready backends (for the optional socket-level service LB). */
  services?(): ServiceBackends[];
  /** Called after any change that may affect pods; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** The pods of `node` in a MeshState. A workload is enrolled when the state gives it the HBONE
 *  tunnel protocol (core/state/enrollment.ts decides, the same for every component). Host-network
 *  pods have no veth of their own and are never captured (istio-cni skips them too). */
export function meshStatePods(state: MeshState, node: string): NodePodSource {
  return {
    pods: () =>
      state
        .workloadsOnNode(node)
        .filter((w) => w.networkMode !== 'HOST_NETWORK')
        .flatMap((w) => {
          const ip = w.addresses.find((a) => IPV4.test(a));
          if (!ip) return [];
          return [
            // A waypoint pod speaks HBONE itself (nativeTunnel) and carries istio.io/dataplane-mode=none:
            // istio-cni never redirects it, else its own upstream HBONE (and its CA call) would loop
            // through ztunnel.
            {
              uid: w.uid,
              name: w.name,
              namespace: w.namespace,
              ip,
              enrolled: w.tunnelProtocol === 'HBONE' && !w.nativeTunnel,
            },
          ];
        }),
    services: () =>
      state.services().flatMap((svc) =>
        svc.addresses
          .filter((a) => IPV4.test(a))
          .flatMap((vip) =>
            svc.ports.map((p) => ({
              vip,
              port: p.servicePort,
              backends: state
                .endpointsOf(svc, p.servicePort)
                .filter((e) => e.workload.status === 'HEALTHY' && e.targetPort > 0)
                .flatMap((e) => {
                  const ip = e.workload.addresses.find((a) => IPV4.test(a));
                  return ip ? [{ ip, port: e.targetPort }] : [];
                }),
            })),
          ),
      ),
    onChange: (listener) => state.onChange(() => listener()),
  };
}

export interface LinkInfo {
  ifname: string;
  ifindex: number;
  /** A veth whose peer lives in another network namespace: the host side of a pod. */
  podVeth: boolean;
  /** The bridge this interface is a port of (bridge CNIs). */
  master?: string;
  mac?: string;
  kind?: string;
}

/** A pod's host-side interface, found from the pod's own netns. */
export interface PodInterface {
  ip: string;
  dev: string;
  ifindex: number;
  /** The pod's netns (name under /var/run/netns). */
  netns: string;
  /** Set when the veth is a bridge port: the bridge (the pod's L3 gateway) and its MAC. */
  bridge?: { dev: string; mac: string; ifindex: number };
}

type LinkJson = {
  ifname: string;
  ifindex: number;
  link_index?: number;
  link_netnsid?: number;
  master?: string;
  address?: string;
  linkinfo?: { info_kind?: string };
};

/**
 * Finds pods' host interfaces from the pods: for each veth of this netns whose peer is in another
 * netns, the named netns with that nsid is entered (`ip -n`) and the peer (ifindex = our veth's
 * link_index, and whose own link_index is our veth) gives the pod's IPv4 address. Answers are cached
 * per (veth, peer netns): a veth never changes pods; a peer without an address yet is asked again.
 */
export class PodInterfaceFinder {
  readonly #cache = new Map<string, { ip: string; netns: string }>();

  async read(): Promise<{
    links: Map<string, LinkInfo>;
    podIfs: PodInterface[];
    gatewayDevs: { dev: string; isDefault: boolean }[];
  }> {
    const [linksJson, routesJson] = await Promise.all([
      runCommand('ip', ['-j', '-d', 'link', 'show']),
      runCommand('ip', ['-j', '-4', 'route', 'show', 'table', 'main']),
    ]);
    const links = new Map<string, LinkInfo>();
    const raw = parseJson<LinkJson[]>('ip link show', linksJson) ?? [];
    for (const l of raw) {
      const podVeth = l.linkinfo?.info_kind === 'veth' && l.link_netnsid !== undefined;
      links.set(l.ifname, {
        ifname: l.ifname,
        ifindex: l.ifindex,
        podVeth,
        ...(l.master ? { master: l.master } : {}),
        ...(l.address ? { mac: l.address } : {}),
        ...(l.linkinfo?.info_kind ? { kind: l.linkinfo.info_kind } : {}),
      });
    }
    const gatewayDevs: { dev: string; isDefault: boolean }[] = [];
    for (const r of parseJson<{ dst: string; dev?: string; gateway?: string }[]>(
      'ip route show',
      routesJson,
    ) ?? []) {
      if (r.dev && r.gateway) gatewayDevs.push({ dev: r.dev, isDefault: r.dst === 'default' });
    }
    const veths = raw.filter((l) => l.linkinfo?.info_kind === 'veth' && l.link_netnsid !== undefined);
    const key = (l: LinkJson) => `${l.ifindex}/${l.link_netnsid}/${l.link_index}`;
    let names: Map<number, string> | undefined;
    const podIfs: PodInterface[] = [];
    const live = new Set<string>();
    for (const v of veths) {
      live.add(key(v));
      let hit = this.#cache.get(key(v));
      if (!hit) {
        names ??= await netnsNamesById();
        const netns = names.get(v.link_netnsid as number);
        const ip = netns ? await peerAddress(netns, v.link_index, v.ifindex) : undefined;
        if (!netns || !ip) continue;
        hit = { ip, netns };
        this.#cache.set(key(v), hit);
      }
      const master = v.master ? links.get(v.master) : undefined;
      podIfs.push({
        ip: hit.ip,
        dev: v.ifname,
        ifindex: v.ifindex,
        netns: hit.netns,
        ...(master?.kind === 'bridge' && master.mac
          ? { bridge: { dev: master.ifname, mac: master.mac, ifindex: master.ifindex } }
          : {}),
      });
    }
    for (const k of [...this.#cache.keys()]) if (!live.has(k)) this.#cache.delete(k);
    return { links, podIfs, gatewayDevs };
  }
}

/** Named netns (/var/run/netns) that have an nsid in this netns, by nsid. */
async function netnsNamesById(): Promise<Map<number, string>> {
  const list = parseJson<{ name: string; id?: number }[]>(
    'ip netns list',
    await runCommand('ip', ['-j', 'netns', 'list']).catch(() => '[]'),
  );
  const out = new Map<number, string>();
  for (const n of list ?? []) if (n.id !== undefined) out.set(n.id, n.name);
  return out;
}

/** The IPv4 address of interface `peerIndex` in netns `name`, if it is the peer of our `ifindex`. */
async function peerAddress(
  name: string,
  peerIndex: number | undefined,
  ifindex: number,
): Promise<string | undefined> {
  if (peerIndex === undefined) return undefined;
  const out = await runCommand('ip', ['-n', name, '-j', '-4', 'addr', 'show']).catch(() => '[]');
  const ifs = parseJson<
    { ifindex: number; link_index?: number; addr_info?: { local?: string; scope?: string }[] }[]
  >(`ip -n ${name} addr show`, out);
  const peer = (ifs ?? []).find((i) => i.ifindex === peerIndex && i.link_index === ifindex);
  return peer?.addr_info?.find((a) => a.local && IPV4.test(a.local) && a.scope !== 'host')?.local;
}

/**
 * A JSON file listing pods (`[{name, namespace, ip, node, enrolled}]`), re-read when it changes: the
 * agent's input when no manifest directory or cluster is at hand (debugging, tests of the data path).
 * A malformed file is reported with its path and the last good list keeps serving.
 */
export function filePods(
  path: string,
  node: string,
  onError: (msg: string) => void,
): NodePodSource & { close(): void } {
  let last: NodePod[] = [];
  const listeners = new Set<() => void>();
  const load = (): void => {
    try {
      const raw = JSON.parse(readFileSync(path, 'utf8')) as unknown;
      if (!Array.isArray(raw)) throw new Error('top level must be an array');
      last = raw.flatMap((p: Record<string, unknown>, i) => {
        for (const f of ['name', 'namespace', 'ip', 'node'] as const) {
          if (typeof p[f] !== 'string') throw new Error(`[${i}].${f} must be a string`);
        }
        if (!IPV4.test(p.ip as string)) throw new Error(`[${i}].ip "${String(p.ip)}" is not IPv4`);
        if (p.node !== node) return [];
        return [
          {
            uid: `Kubernetes//v1/Pod/${p.namespace}/${p.name}`,
            name: p.name as string,
            namespace: p.namespace as string,
            ip: p.ip as string,
            enrolled: p.enrolled === true,
          },
        ];
      });
    } catch (err) {
      onError(`${path}: ${(err as Error).message}`);
      return;
    }
    for (const l of listeners) l();
  };
  load();
  watchFile(path, { interval: 100 }, load);
  return {
    pods: () => last,
    onChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    close: () => unwatchFile(path, load),
  };
}

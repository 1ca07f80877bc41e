// What the agent needs to know about its node: "the pods of my node, their IP, enrolled or not".
// It asks core/state (MeshState) and never parses manifests itself; the host-side veth of each pod is
// found the way a routed CNI sets it up — the /32 route to the pod IP in the node netns.
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
}

/** Interfaces of this netns by name, and the device of each /32 (host) route and of gateway routes. */
export async function readLinksAndRoutes(): Promise<{
  links: Map<string, LinkInfo>;
  hostRoutes: Map<string, string>;
  gatewayDevs: { dev: string; isDefault: boolean }[];
}> {
  const [linksJson, routesJson] = await Promise.all([
    runCommand('ip', ['-j', '-d', 'link', 'show']),
    runCommand('ip', ['-j', '-4', 'route', 'show', 'table', 'main']),
  ]);
  const links = new Map<string, LinkInfo>();
  type LinkJson = {
    ifname: string;
    ifindex: number;
    link_netnsid?: number;
    linkinfo?: { info_kind?: string };
  };
  for (const l of parseJson<LinkJson[]>('ip link show', linksJson) ?? []) {
    const podVeth = l.linkinfo?.info_kind === 'veth' && l.link_netnsid !== undefined;
    links.set(l.ifname, { ifname: l.ifname, ifindex: l.ifindex, podVeth });
  }
  const hostRoutes = new Map<string, string>();
  const gatewayDevs: { dev: string; isDefault: boolean }[] = [];
  for (const r of parseJson<{ dst: string; dev?: string; gateway?: string }[]>('ip route show', routesJson) ??
    []) {
    if (!r.dev) continue;
    if (r.gateway) gatewayDevs.push({ dev: r.dev, isDefault: r.dst === 'default' });
    else if (IPV4.test(r.dst) || r.dst.endsWith('/32')) hostRoutes.set(r.dst.replace(/\/32$/, ''), r.dev);
  }
  return { links, hostRoutes, gatewayDevs };
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

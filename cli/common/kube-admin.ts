// A ztunnel's admin API in a cluster, reached the way istioctl reaches it: find the ztunnel pod (label
// app=ztunnel in the Istio namespace; on the node of --node, or of the pod --pod names) and port-forward
// to its admin port through the Kubernetes API (`pods/<name>/portforward`, client-node's PortForward over
// WebSocket). Each request opens a loopback listener whose connections are forwarded, runs one HTTP
// request through it and closes it. istioctl refuses to guess when several ztunnels match ("ztunnel pod
// name or --node must be set"; istio/istio istioctl/pkg/ztunnelconfig); so does this.
import { createServer, type Server, type Socket } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../core/sources/kubeconfig.js';
import { CommandFailure, UsageError } from './output.js';

export interface KubeAdminTarget {
  kind: 'kube';
  kubeConfig: KubeConfig;
  namespace: string;
  pod: string;
  port: number;
  label: string;
}

export interface KubeTargetFlags {
  kubeconfig?: string;
  node?: string;
  pod?: string;
  istioNamespace?: string;
}

/** The one ztunnel pod the flags name (or the only one there is). */
export async function kubeZtunnelTarget(f: KubeTargetFlags, port: number): Promise<KubeAdminTarget> {
  const { CoreV1Api } = await import('@kubernetes/client-node');
  const kubeConfig = await loadKubeConfig(f.kubeconfig);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const ns = f.istioNamespace ?? 'istio-system';
  let node = f.node;
  if (f.pod) {
    const [pns, pname] = f.pod.includes('/') ? f.pod.split('/', 2) : ['default', f.pod];
    const p = await core.readNamespacedPod({ namespace: pns!, name: pname! }).catch(() => undefined);
    if (!p) throw new UsageError(`--pod ${f.pod}: no such pod in the cluster`);
    node = p.spec?.nodeName;
    if (!node) throw new CommandFailure('POD_NOT_SCHEDULED', `--pod ${f.pod}: not scheduled on a node yet`);
  }
  const pods = (
    await core.listNamespacedPod({
      namespace: ns,
      labelSelector: 'app=ztunnel',
      ...(node ? { fieldSelector: `spec.nodeName=${node}` } : {}),
    })
  ).items.filter((p) => p.status?.phase === 'Running' || p.status?.phase === undefined);
  if (pods.length === 0) {
    throw new CommandFailure(
      'ZTUNNEL_NOT_FOUND',
      `no ztunnel pod${node ? ` on node ${node}` : ''} (label app=ztunnel in namespace ${ns}; --istio-namespace to change)`,
    );
  }
  if (pods.length > 1) {
    const nodes = pods.map((p) => p.spec?.nodeName ?? '?').sort();
    throw new UsageError(
      `${pods.length} ztunnels run, one per node, each with its own view: pass --node (${nodes.join(', ')}) or --pod ns/name`,
    );
  }
  const pod = pods[0]!;
  return {
    kind: 'kube',
    kubeConfig,
    namespace: ns,
    pod: pod.metadata?.name ?? '',
    port,
    label: `ztunnel ${ns}/${pod.metadata?.name} on ${pod.spec?.nodeName ?? '?'}`,
  };
}

/** One admin request through a port-forward; the body as text. */
export async function kubeAdminRequest(t: KubeAdminTarget, path: string, method = 'GET'): Promise<string> {
  const { PortForward } = await import('@kubernetes/client-node');
  const forward = new PortForward(t.kubeConfig);
  const sockets = new Set<Socket>();
  const failures: string[] = [];
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    forward
      .portForward(t.namespace, t.pod, [t.port], socket, null, socket)
      .then((ws) => {
        const w = ws as { on?: (e: string, l: () => void) => void; onclose?: () => void };
        if (w.on) w.on('close', () => socket.destroy());
        else w.onclose = () => socket.destroy();
      })
      .catch((err: unknown) => {
        failures.push(err instanceof Error ? err.message : String(err));
        socket.destroy();
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { connection: 'close' },
      signal: AbortSignal.timeout(10_000),
    });
    const body = await res.text();
    if (!res.ok)
      throw new CommandFailure(
        'ADMIN_UNREACHABLE',
        `${t.label}: ${path}: HTTP ${res.status}: ${body.trim()}`,
      );
    return body;
  } catch (err) {
    if (err instanceof CommandFailure) throw err;
    const why = failures[0] ?? (err as Error).message;
    throw new CommandFailure(
      'ADMIN_UNREACHABLE',
      `cannot read ${path} from ${t.label} through a port-forward: ${why}`,
    );
  } finally {
    for (const s of sockets) s.destroy();
    server.close();
  }
}

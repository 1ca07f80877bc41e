// How the CLI reaches a proxy's admin API (ztunnel and waypoint both listen on 127.0.0.1:15000, as
// istio/ztunnel and Envoy keep admin on localhost). Three ways, chosen by flags:
//   --admin host:port      a plain address (a port-forward the user made, a ztunnel on this host)
//   --node NAME / --pod ns/name   in the local demo: the demo's state file names each node's network
//                          namespace; the request runs inside it (`nsenter --net`, needs root), so the
//                          user needs no netns knowledge.
//   --kubeconfig FILE (or a kubeconfig and no demo)   in a cluster: the ztunnel pod on that node,
//                          through a port-forward of the Kubernetes API (kube-admin.ts), as istioctl.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { nsPath } from '../../netns/topology.js';
import { DEFAULT_DEMO_DIR, type DemoState, readDemoState, stateFileOf } from '../demo/state-file.js';
import type { KubeAdminTarget } from './kube-admin.js';
import { CommandFailure, UsageError } from './output.js';

export const ADMIN_PORT = 15000;

export type AdminTarget =
  | { kind: 'http'; base: string; label: string }
  | { kind: 'netns'; netns: string; port: number; label: string }
  | KubeAdminTarget;

export interface TargetFlags {
  admin?: string;
  node?: string;
  pod?: string;
  dir?: string;
}

export class AdminUnreachable extends CommandFailure {
  constructor(label: string, path: string, cause: string) {
    super(
      'ADMIN_UNREACHABLE',
      `cannot read ${path} from ${label}: ${cause} (is it running? \`ambit status\` lists the demo's components)`,
    );
    this.name = 'AdminUnreachable';
  }
}

export function demoDir(flag?: string): string {
  return flag ?? process.env.AMBIT_DEMO_DIR ?? DEFAULT_DEMO_DIR;
}

function demoStateOrThrow(dir: string, why: string): DemoState {
  const st = readDemoState(dir);
  if (!st) {
    throw new UsageError(
      `${why} needs a running demo (no ${stateFileOf(dir)}); start one with \`sudo npm start\`, or pass --admin host:port`,
    );
  }
  return st;
}

/** The node ztunnel admin targets: the one flag given, else every node of the running demo. */
export function ztunnelTargets(f: TargetFlags): AdminTarget[] {
  if (f.admin) {
    const base = f.admin.startsWith('http') ? f.admin : `http://${f.admin}`;
    return [{ kind: 'http', base, label: `ztunnel admin ${base}` }];
  }
  const dir = demoDir(f.dir);
  if (f.node || f.pod) {
    const st = demoStateOrThrow(dir, f.node ? '--node' : '--pod');
    let nodeName = f.node;
    if (f.pod) {
      const [ns, name] = f.pod.includes('/') ? f.pod.split('/', 2) : ['default', f.pod];
      const pod = st.pods.find((p) => p.namespace === ns && p.name === name);
      if (!pod) {
        throw new UsageError(
          `--pod ${f.pod}: no such pod in the demo (pods: ${st.pods.map((p) => `${p.namespace}/${p.name}`).join(', ')})`,
        );
      }
      nodeName = pod.node;
    }
    const node = st.nodes.find((n) => n.name === nodeName);
    if (!node) {
      throw new UsageError(
        `--node ${nodeName}: no such node in the demo (nodes: ${st.nodes.map((n) => n.name).join(', ')})`,
      );
    }
    return [{ kind: 'netns', netns: node.netns, port: ADMIN_PORT, label: `ztunnel on ${node.name}` }];
  }
  const st = readDemoState(dir);
  if (st) {
    return st.nodes.map((n) => ({
      kind: 'netns' as const,
      netns: n.netns,
      port: ADMIN_PORT,
      label: `ztunnel on ${n.name}`,
    }));
  }
  return [
    { kind: 'http', base: `http://127.0.0.1:${ADMIN_PORT}`, label: `ztunnel admin 127.0.0.1:${ADMIN_PORT}` },
  ];
}

/** Every waypoint pod of the running demo (its admin listens on the pod's own loopback). */
export function demoWaypointTargets(st: DemoState): AdminTarget[] {
  if (st.waypoint !== 'running') return [];
  return st.pods
    .filter((p) => p.run === 'waypoint')
    .map((p) => ({
      kind: 'netns' as const,
      netns: p.netns,
      port: ADMIN_PORT,
      label: `waypoint/${p.namespace}/${p.name}`,
    }));
}

function needRoot(t: AdminTarget): void {
  if (t.kind === 'netns' && process.getuid?.() !== 0) {
    throw new UsageError(
      `${t.label}: its admin API listens inside the node's network namespace; run as root (sudo) to reach it`,
    );
  }
}

/** One GET (or POST) against an admin API; the body as text. */
export async function adminRequest(t: AdminTarget, path: string, method = 'GET'): Promise<string> {
  if (t.kind === 'kube') return (await import('./kube-admin.js')).kubeAdminRequest(t, path, method);
  needRoot(t);
  if (t.kind === 'http') {
    let res: Response;
    try {
      res = await fetch(`${t.base}${path}`, { method, signal: AbortSignal.timeout(5000) });
    } catch (err) {
      const e = err as Error & { cause?: { message?: string } };
      throw new AdminUnreachable(t.label, path, e.cause?.message ?? e.message);
    }
    const body = await res.text();
    if (!res.ok) throw new AdminUnreachable(t.label, path, `HTTP ${res.status}: ${body.trim()}`);
    return body;
  }
  return new Promise((resolve, reject) => {
    execFile(
      'nsenter',
      [
        `--net=${nsPath(t.netns)}`,
        'curl',
        '-fsS',
        '--max-time',
        '4',
        ...(method === 'GET' ? [] : ['-X', method]),
        `http://127.0.0.1:${t.port}${path}`,
      ],
      { timeout: 6000, maxBuffer: 32 * 1024 * 1024 },
      (err, stdout, stderr) =>
        err
          ? reject(new AdminUnreachable(t.label, path, String(stderr).trim() || err.message))
          : resolve(String(stdout)),
    );
  });
}

export async function adminJson<T>(t: AdminTarget, path: string): Promise<T> {
  const text = await adminRequest(t, path);
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new AdminUnreachable(t.label, path, `not JSON: ${(err as Error).message}`);
  }
}

/**
 * A newline-delimited JSON stream (`/flows`) from inside the target's netns or over HTTP, as a child
 * `curl -N` whose stdout carries the lines. `maxSeconds` bounds it (0: until killed).
 */
export function adminStream(t: AdminTarget, path: string, maxSeconds = 0): ChildProcess {
  if (t.kind === 'kube') {
    throw new UsageError(
      `${path} streams are not read through the Kubernetes API yet: \`kubectl port-forward -n ${t.namespace} ${t.pod} ${t.port}\`, then --admin 127.0.0.1:${t.port}`,
    );
  }
  needRoot(t);
  const url = t.kind === 'http' ? `${t.base}${path}` : `http://127.0.0.1:${t.port}${path}`;
  const curl = ['curl', '-sSN', '--max-time', String(maxSeconds), url];
  return t.kind === 'http'
    ? spawn(curl[0]!, curl.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('nsenter', [`--net=${nsPath(t.netns)}`, ...curl], { stdio: ['ignore', 'pipe', 'pipe'] });
}

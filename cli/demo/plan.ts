// What the demo builds, read from its manifests directory: the nodes (from pods' spec.nodeName), the
// pods with their IPs (status.podIP) and the sample program each runs (annotation
// `demo.ambit.dev/run`). Enrollment and identities come from the mesh's own state (core/sources), so
// the demo shows exactly what the ztunnels will decide.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { loadManifestDirectory } from '../../core/sources/manifests.js';
import { MAX_ALIASES, readLimitedFileSync } from '../../core/sources/yaml-limits.js';
import { workloadIdentity } from '../../core/state/state.js';
import { DemoError } from './state-file.js';

export const RUN_ANNOTATION = 'demo.ambit.dev/run';

export interface PlannedPod {
  name: string;
  namespace: string;
  node: string;
  ip: string;
  /** Topology (netns) name: 1-12 lowercase letters/digits. */
  shortName: string;
  enrolled: boolean;
  identity: string;
  run?: string;
}

export interface DemoPlan {
  /** Node names in topology order: node i owns 10.244.<i+1>.0/24. */
  nodes: string[];
  pods: PlannedPod[];
  /** Warnings and errors the mesh's own loader reported for the manifests. */
  manifestErrors: string[];
}

interface RawPod {
  kind?: string;
  metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> };
  spec?: { nodeName?: string; hostNetwork?: boolean };
  status?: { podIP?: string };
}

function rawPods(dir: string): { file: string; pod: RawPod }[] {
  const out: { file: string; pod: RawPod }[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (!/\.ya?ml$/.test(f)) continue;
    const file = join(dir, f);
    let text: string;
    try {
      text = readLimitedFileSync(file);
    } catch {
      continue; // the mesh loader names a file it cannot read (size limit included)
    }
    for (const doc of parseAllDocuments(text)) {
      if ('errors' in doc && doc.errors.length > 0) continue; // the mesh loader names these
      let v: RawPod | null;
      try {
        v = doc.toJS({ maxAliasCount: MAX_ALIASES }) as RawPod | null;
      } catch {
        continue; // alias bomb: the mesh loader names it
      }
      if (v?.kind === 'Pod') out.push({ file: f, pod: v });
    }
  }
  return out;
}

export async function planDemo(dir: string): Promise<DemoPlan> {
  const loaded = await loadManifestDirectory(dir);
  const manifestErrors = loaded.errors.map((e) => e.message);
  const state = loaded.state;
  const found = rawPods(dir);
  const nodes = [...new Set(found.map((p) => p.pod.spec?.nodeName ?? ''))].sort();
  const pods: PlannedPod[] = [];
  const shortNames = new Set<string>();
  for (const { file, pod } of found) {
    const where = `${file}: Pod ${pod.metadata?.namespace ?? 'default'}/${pod.metadata?.name ?? '?'}`;
    const name = pod.metadata?.name;
    const namespace = pod.metadata?.namespace ?? 'default';
    const node = pod.spec?.nodeName;
    const ip = pod.status?.podIP;
    if (!name) throw new DemoError('BAD_MANIFEST', `${where}: metadata.name is missing`);
    if (!node || !/^[a-z][a-z0-9]{0,11}$/.test(node)) {
      throw new DemoError(
        'BAD_MANIFEST',
        `${where}: spec.nodeName ${JSON.stringify(node)} must be 1-12 lowercase letters/digits (a demo node)`,
      );
    }
    if (pod.spec?.hostNetwork)
      throw new DemoError('BAD_MANIFEST', `${where}: hostNetwork pods are not supported by the demo`);
    const index = nodes.indexOf(node);
    const cidr = `10.244.${index + 1}.`;
    if (
      !ip?.startsWith(cidr) ||
      !/^\d+\.\d+\.\d+\.\d+$/.test(ip) ||
      ['0', '1', '255'].includes(ip.split('.')[3] ?? '')
    ) {
      throw new DemoError(
        'BAD_MANIFEST',
        `${where}: status.podIP ${JSON.stringify(ip)} must be a host address in ${cidr}0/24 (node ${node}'s pod CIDR)`,
      );
    }
    let shortName = name.replace(/[^a-z0-9]/g, '').slice(0, 12) || 'pod';
    if (!/^[a-z]/.test(shortName)) shortName = `p${shortName}`.slice(0, 12);
    for (let i = 2; shortNames.has(shortName); i++) shortName = `${shortName.slice(0, 10)}${i}`;
    shortNames.add(shortName);
    const w = state.workloadByIp(ip);
    pods.push({
      name,
      namespace,
      node,
      ip,
      shortName,
      // A waypoint speaks HBONE itself; it is a mesh component, not an enrolled (captured) pod.
      enrolled: w?.tunnelProtocol === 'HBONE' && !w.nativeTunnel,
      identity: w ? workloadIdentity(w) : '',
      ...(pod.metadata?.annotations?.[RUN_ANNOTATION]
        ? { run: pod.metadata.annotations[RUN_ANNOTATION] }
        : {}),
    });
  }
  if (nodes.length === 0)
    throw new DemoError('BAD_MANIFEST', `${dir}: no Pods with spec.nodeName: nothing to build`);
  return { nodes, pods, manifestErrors };
}

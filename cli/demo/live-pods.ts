// Pods follow the manifests while the demo runs: a Pod added to the watched directory gets its network
// namespace (and its sample program), a removed one loses them, a changed IP/node/program is a remove
// plus an add — as a kubelet and CNI would do. Policies, labels and services need nothing here: every
// component watches the same directory itself.
import { watch } from 'node:fs';
import type { Topology } from '../../netns/topology.js';
import { run } from '../../netns/topology.js';
import { type PlannedPod, planDemo } from './plan.js';
import type { DemoPod, DemoState } from './state-file.js';

export interface LivePodsContext {
  manifests: string;
  topo: Topology;
  state: DemoState;
  startApp(p: DemoPod): void;
  out(line: string): void;
  save(): void;
}

const key = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;

async function removePod(ctx: LivePodsContext, p: DemoPod): Promise<void> {
  // Forget the processes first, so their exit is not reported as a failure.
  const procs = ctx.state.processes.filter((x) => x.netns === p.netns);
  ctx.state.processes = ctx.state.processes.filter((x) => x.netns !== p.netns);
  for (const x of procs) {
    try {
      process.kill(x.pid, 'SIGKILL');
    } catch {}
  }
  // Deleting the netns deletes the pod's veth pair, and with the host side its /32 route on the node.
  await run('ip', ['netns', 'del', p.netns]).catch(() => undefined);
  for (const [name, tp] of ctx.topo.pods) if (tp.ns === p.netns) ctx.topo.pods.delete(name);
  ctx.state.pods = ctx.state.pods.filter((x) => x !== p);
  ctx.save();
  ctx.out(`pod removed: ${key(p)} (${p.ip})`);
}

async function addPod(ctx: LivePodsContext, w: PlannedPod): Promise<void> {
  if (!ctx.topo.nodes.has(w.node)) {
    ctx.out(
      `warning: Pod ${key(w)}: node ${w.node} is not part of the running demo (restart it to add nodes)`,
    );
    return;
  }
  let short = w.shortName;
  for (let i = 2; ctx.topo.pods.has(short); i++) short = `${w.shortName.slice(0, 10)}${i}`;
  const pod = await ctx.topo.addPod(w.node, short, { ip: w.ip });
  const p: DemoPod = {
    name: w.name,
    namespace: w.namespace,
    node: w.node,
    ip: w.ip,
    netns: pod.ns,
    enrolled: w.enrolled,
    identity: w.identity,
    ...(w.run ? { run: w.run } : {}),
  };
  ctx.state.pods.push(p);
  ctx.save();
  if (p.run && p.run !== 'waypoint') ctx.startApp(p);
  ctx.out(`pod added: ${key(p)} on ${p.node} (${p.ip}${p.enrolled ? ', in the mesh' : ''})`);
}

async function reconcile(ctx: LivePodsContext): Promise<void> {
  let pods: PlannedPod[];
  try {
    pods = (await planDemo(ctx.manifests)).pods;
  } catch (err) {
    ctx.out(`warning: ${(err as Error).message}; pods left as they are`);
    return;
  }
  const want = new Map(pods.map((p) => [key(p), p]));
  for (const have of [...ctx.state.pods]) {
    const w = want.get(key(have));
    if (!w || w.ip !== have.ip || w.node !== have.node || w.run !== have.run) await removePod(ctx, have);
    else if (w.enrolled !== have.enrolled || w.identity !== have.identity) {
      have.enrolled = w.enrolled;
      have.identity = w.identity;
      ctx.save();
    }
  }
  const have = new Set(ctx.state.pods.map(key));
  for (const [k, w] of want) {
    if (have.has(k)) continue;
    await addPod(ctx, w).catch((err: unknown) => ctx.out(`warning: Pod ${k}: ${(err as Error).message}`));
  }
}

/** Watches the manifests directory (debounced) and reconciles pods, one pass at a time. */
export function followPodChanges(ctx: LivePodsContext): { close(): void } {
  let timer: NodeJS.Timeout | undefined;
  let chain = Promise.resolve();
  const schedule = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      chain = chain.then(() => reconcile(ctx)).catch(() => undefined);
    }, 300);
  };
  const watcher = watch(ctx.manifests, schedule);
  // Files may have changed while the demo was setting up.
  schedule();
  return {
    close: () => {
      clearTimeout(timer);
      watcher.close();
    },
  };
}

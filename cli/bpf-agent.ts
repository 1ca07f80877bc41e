// `ambit bpf-agent`: the node agent that enrolls this node's pods into ztunnel's capture (eBPF, or
// the nftables TPROXY fallback) and keeps it in sync with the mesh state. See bpf-redirect/agent/.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { untilTerminated } from './common/signals.js';
import { type Logger, pino } from 'pino';
import { type AgentStatus, BpfAgent, teardownAll } from '../bpf-redirect/agent/agent.js';
import {
  type BpfAgentConfig,
  type CaptureMode,
  defaultConfig,
  validateConfig,
} from '../bpf-redirect/agent/config.js';
import { BpfAgentError } from '../bpf-redirect/agent/errors.js';
import { serveMetrics } from '../bpf-redirect/agent/metrics.js';
import { ManifestSource } from '../core/sources/manifests.js';
import { SYNC_TIMEOUT_HELP, syncTimeoutFrom } from '../core/sources/sync-timeout.js';
import type { MeshState } from '../core/state/state.js';
import { filePods, meshStatePods, type NodePodSource } from '../bpf-redirect/agent/pods.js';
import { loadKubeConfig } from '../core/sources/kubeconfig.js';
import { terminalLogStream } from '../core/telemetry/terminal-log.js';

interface Opts {
  node: string;
  manifests?: string;
  podsFile?: string;
  kubernetes?: boolean;
  kubeconfig?: string;
  syncTimeout?: string;
  mode: string;
  pinDir?: string;
  objDir?: string;
  statusFile?: string;
  uplink: string[];
  serviceLbCgroup: string[];
  failOpen?: boolean;
  holdUnknownPods?: boolean;
  drainGraceMs?: string;
  uncapturableAfterMs?: string;
  metricsPort?: string;
  mark?: string;
  nftPrefix?: string;
  teardown?: boolean;
  status?: boolean;
}

const int = (name: string, v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n))
    throw new BpfAgentError('BAD_CONFIG', `bpf-agent: ${name} must be an integer, got "${v}"`);
  return n;
};

function configFrom(o: Opts): BpfAgentConfig {
  const c = defaultConfig(o.node);
  c.mode = o.mode as CaptureMode;
  if (o.pinDir) c.pinDir = o.pinDir;
  if (o.objDir) c.objDir = o.objDir;
  if (o.statusFile) c.statusFile = o.statusFile;
  c.uplinks = o.uplink;
  c.serviceLbCgroups = o.serviceLbCgroup;
  c.failOpen = o.failOpen === true;
  c.holdUnknownPods = o.holdUnknownPods !== false;
  if (o.drainGraceMs) c.drainGraceMs = int('--drain-grace-ms', o.drainGraceMs);
  if (o.uncapturableAfterMs) c.uncapturableAfterMs = int('--uncapturable-after-ms', o.uncapturableAfterMs);
  if (o.metricsPort !== undefined) c.metricsPort = int('--metrics-port', o.metricsPort);
  if (o.mark) c.mark = int('--mark', o.mark);
  if (o.nftPrefix) c.nftPrefix = o.nftPrefix;
  return validateConfig(c);
}

/** The shared state from a manifest directory (watched) → this node's pods. */
async function manifestPods(dir: string, node: string, log: Logger): Promise<NodePodSource> {
  const source = new ManifestSource(dir, { logger: log.child({ component: 'manifests' }) });
  await source.start();
  for (const e of source.errors()) log.error(e.message);
  return meshStatePods(source.state, node);
}

/**
 * The shared state from the Kubernetes API (a DaemonSet): Namespaces and only this node's Pods
 * (`spec.nodeName` field selector), which is all enrollment depends on. core/sources/kubernetes is
 * loaded lazily so the agent runs without it in local mode.
 */
async function kubernetesPods(
  kubeconfig: string | undefined,
  node: string,
  log: Logger,
  syncTimeoutMs: number | undefined,
): Promise<NodePodSource> {
  let kc: Awaited<ReturnType<typeof loadKubeConfig>>;
  try {
    kc = await loadKubeConfig(kubeconfig);
  } catch (err) {
    throw new BpfAgentError('BAD_CONFIG', `bpf-agent: --kubeconfig ${kubeconfig}: ${(err as Error).message}`);
  }
  const modPath = '../core/sources/kubernetes.js';
  const mod = (await import(modPath)) as {
    KubernetesSource: new (o: Record<string, unknown>) => { start(): Promise<void>; state: MeshState };
  };
  const source = new mod.KubernetesSource({
    kubeConfig: kc,
    podNodeName: node,
    kinds: ['Namespace', 'Pod'],
    ...(syncTimeoutMs ? { syncTimeoutMs } : {}),
    logger: log.child({ component: 'kubernetes' }),
  });
  await source.start();
  return meshStatePods(source.state, node);
}

/**
 * Kubernetes mode: mirror each local pod's capture state into its `ambient.istio.io/redirection`
 * annotation, as istio-cni does (bpf-redirect/agent/k8s-annotate.ts). Returns a stop function.
 */
async function annotatePods(
  kubeconfig: string | undefined,
  agent: BpfAgent,
  log: Logger,
): Promise<() => void> {
  const { RedirectionAnnotator, followAgent } = await import('../bpf-redirect/agent/k8s-annotate.js');
  const kc = await loadKubeConfig(kubeconfig);
  const annotator = new RedirectionAnnotator({
    kubeConfig: kc,
    logger: log.child({ component: 'annotate' }),
  });
  const unfollow = followAgent(agent, annotator);
  return () => {
    unfollow();
    annotator.stop();
  };
}

export function registerBpfAgent(program: Command): void {
  program
    .command('bpf-agent')
    .description(
      "enroll this node's pods into ztunnel's capture (eBPF tc steering, or nftables TPROXY fallback)",
    )
    .requiredOption('--node <name>', 'this node: only its pods are managed')
    .option('-m, --manifests <dir>', 'directory of manifests (the local cluster); watched')
    .option(
      '--kubernetes',
      "read Namespaces and this node's Pods from the Kubernetes API (in-cluster or ~/.kube/config)",
    )
    .option('--kubeconfig <file>', 'kubeconfig for --kubernetes')
    .option('--sync-timeout <duration>', `with --kubernetes: ${SYNC_TIMEOUT_HELP}`)
    .option('--pods-file <file>', 'JSON list of pods [{name,namespace,ip,node,enrolled}]; watched')
    .option('--mode <mode>', 'auto | ebpf | nftables (auto: eBPF, nftables if programs cannot load)', 'auto')
    .option('--pin-dir <dir>', 'bpffs directory the agent owns', '/sys/fs/bpf/ambit')
    .option('--obj-dir <dir>', 'directory with steer_tc.bpf.o (default bpf-redirect/build)')
    .option('--status-file <file>', 'status JSON (default /run/ambit/bpf-agent-<node>.json)')
    .option(
      '--uplink <dev>',
      'uplink device (repeatable; default: the default-route device)',
      (v, acc: string[]) => [...acc, v],
      [],
    )
    .option('--fail-open', 'while ztunnel is down, let enrolled pods connect directly (INSECURE; logged)')
    .option(
      '--service-lb-cgroup <dir>',
      'cgroup v2 dir whose processes get socket-level ClusterIP load balancing (repeatable; pods outside the mesh)',
      (v, acc: string[]) => [...acc, v],
      [],
    )
    .option('--no-hold-unknown-pods', "don't hold SYNs of pod veths the mesh state does not know yet")
    .option('--drain-grace-ms <ms>', 'max time a leaving pod keeps proxied flows steered', '30000')
    .option(
      '--uncapturable-after-ms <ms>',
      'an enrolled pod without a capturable interface this long is refused and reported',
      '10000',
    )
    .option('--metrics-port <port>', 'Prometheus /metrics port (0: off)', '15014')
    .option('--mark <n>', 'packet mark for proxy-owned flows (default 0x400)')
    .option('--nft-prefix <name>', 'prefix of the nftables tables the agent owns', 'ambit')
    .option('--teardown', 'remove every kernel object the agent owns (both modes) and exit')
    .option('--status', 'print the running agent status JSON and exit')
    .action(async (o: Opts) => {
      const cfg = configFrom(o);
      const log = pino(
        { name: 'bpf-agent', base: { node: cfg.node } },
        terminalLogStream(2) ?? pino.destination(2),
      );
      if (o.status) {
        const s = JSON.parse(readFileSync(cfg.statusFile, 'utf8')) as AgentStatus;
        console.log(JSON.stringify(s, null, 2));
        return;
      }
      if (o.teardown) {
        await teardownAll(cfg, log);
        log.info('teardown complete');
        return;
      }
      let source: NodePodSource;
      if (o.podsFile) source = filePods(o.podsFile, cfg.node, (msg) => log.error(msg));
      else if (o.manifests) source = await manifestPods(o.manifests, cfg.node, log);
      else if (o.kubernetes || o.kubeconfig)
        source = await kubernetesPods(o.kubeconfig, cfg.node, log, syncTimeoutFrom(o.syncTimeout));
      else {
        throw new BpfAgentError(
          'BAD_CONFIG',
          'bpf-agent: give -m <manifests dir>, --kubernetes or --pods-file <file>',
        );
      }
      const agent = new BpfAgent(cfg, source, log);
      await agent.start();
      const metrics = cfg.metricsPort > 0 ? await serveMetrics(agent, cfg.metricsPort) : undefined;
      const stopAnnotating =
        o.kubernetes || o.kubeconfig ? await annotatePods(o.kubeconfig, agent, log) : undefined;
      log.info({ mode: agent.mode, statusFile: cfg.statusFile }, 'bpf-agent running');
      // The agent's own timers are unref'd (library use); as a daemon, stay up until signalled.
      const keepAlive = setInterval(() => undefined, 1 << 30);
      await untilTerminated();
      clearInterval(keepAlive);
      stopAnnotating?.();
      metrics?.close();
      // Leave the kernel objects: capture (and fail-closed) continues while the agent is away.
      await agent.stop();
      process.exit(0);
    });
}

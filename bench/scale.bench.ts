// `npm run bench -- scale`: what a Kubernetes-watching component costs as the cluster grows (issue 15).
// The test API server (test/k8s-api-server, the real wire protocol) is loaded with realistic objects
// (test/scale-objects.ts: 7.3 KB Pods with managedFields, 1 Service + 1 EndpointSlice per 5 pods,
// 100 nodes) and each SUBJECT is started against it, one at a time, in its own process:
//   first sync time (and CPU per pod synced), heap and RSS after a full GC and at peak, bytes the
//   subject received from the API server, watch streams open on the server, and CPU per pod
//   lifecycle (create Pending → Running with IP → EndpointSlice add → delete → slice remove).
// A subject is one entry of SUBJECTS (how to start it inside the measuring child, and its targets):
// `ztunnel` watching the API server itself, `discovery` (the CA with the discovery tier, which watches
// once for the cluster) and `ztunnel-wds`, a ztunnel fed by that tier over Istio's WDS (the tier runs in
// a process of its own, not counted; the ztunnel's received bytes are its WDS bytes, from /proc/self/io).
// Knobs (env): AMBIT_SCALE_SIZES=0,1000,10000,50000 (0 = the empty-cluster baseline the per-pod
// figures subtract); AMBIT_SCALE_LARGE=1 adds 100000 and 150000; AMBIT_SCALE_LIFECYCLES (300);
// AMBIT_SCALE_SUBJECTS=ztunnel,... ; AMBIT_SCALE_SUBJECT_NODE_ARGS (extra node flags for subjects).
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import {
  NODES,
  namespaceName,
  PODS_PER_NAMESPACE,
  PODS_PER_SERVICE,
  podIp,
  podName,
  realisticPod,
  realisticReplicaSet,
  realisticService,
  realisticSlice,
  sliceEndpoint,
} from '../test/scale-objects.js';
import type { BenchScenario } from './run.js';

const SELF = fileURLToPath(import.meta.url);
const KiB = 1024;
const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------
// Subjects: each starts the component the way its command does, inside the measuring child.

interface Subject {
  name: string;
  /** Runs before the measured start (e.g. the discovery tier a subject subscribes to). */
  prepare?(kubeconfig: string, dir: string): Promise<void>;
  /** Its state comes over WDS: bytes received are counted at the subject, not at the API server. */
  viaDiscovery?: boolean;
  /** Starts the component against `kubeconfig`; resolves once it has synced. */
  start(kubeconfig: string, dir: string): Promise<{ stop(): Promise<void> }>;
  /** Targets (issue 15), when the issue sets one: heap per pod of the cluster, CPU per pod lifecycle at 50k pods. */
  heapPerPodKiB?: number;
  cpuPerLifecycleMs?: number;
}

const SUBJECTS: Subject[] = [
  {
    // `ambit ztunnel --kubernetes` (runZtunnel, the code path of the command), listeners on ephemeral
    // loopback ports; its CA is never called (no connection asks for a certificate).
    name: 'ztunnel',
    heapPerPodKiB: 3,
    cpuPerLifecycleMs: 0.5,
    async start(kubeconfig, dir) {
      writeFileSync(join(dir, 'root.pem'), '');
      writeFileSync(join(dir, 'token'), 'bench');
      return startBenchZtunnel(dir, { kubernetes: true, kubeconfig, kubernetesSyncTimeoutMs: 600_000 });
    },
  },
  {
    // `ambit ca --kubernetes` (startKubernetesCa) with the discovery tier on (its default): one watch of
    // every kind for the whole cluster, Istio's WDS table kept from it; the root in Secret istio-ca-secret
    // on the test API server. Root publishing to namespaces is off (it writes, not watches). Measured
    // without subscribers (ztunnel-wds adds one).
    name: 'discovery',
    heapPerPodKiB: 8,
    cpuPerLifecycleMs: 3,
    start: (kubeconfig) => startDiscoveryTier(kubeconfig, '127.0.0.1:0'),
  },
  {
    // `ambit ztunnel --discovery` (runZtunnel): the state over Istio's WDS from the discovery tier, started
    // in its own process by prepare(); the ztunnel's token is known to the test API server's TokenReview.
    name: 'ztunnel-wds',
    heapPerPodKiB: 3,
    cpuPerLifecycleMs: 0.5,
    viaDiscovery: true,
    async prepare(kubeconfig, dir) {
      const tier = fork(SELF, [], {
        env: { ...process.env, AMBIT_SCALE_CHILD: 'discovery', AMBIT_SCALE_KUBECONFIG: kubeconfig },
        execArgv: ['--max-old-space-size=8192'],
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      process.once('exit', () => tier.kill('SIGKILL'));
      const ready = await ask<{ address: string; roots: string }>(tier, undefined, (m) => !!m.address);
      writeFileSync(join(dir, 'root.pem'), ready.roots);
      writeFileSync(join(dir, 'discovery'), ready.address);
    },
    async start(_kubeconfig, dir) {
      writeFileSync(join(dir, 'token'), ZTUNNEL_TOKEN);
      return startBenchZtunnel(dir, {
        discoveryAddress: readFileSync(join(dir, 'discovery'), 'utf8'),
        discoverySyncTimeoutMs: 600_000,
      });
    },
  },
];

/**
 * `runZtunnel` (the code path of `ambit ztunnel`) with listeners on ephemeral loopback ports, on a node
 * none of the cluster's pods runs on: no certificate is prefetched (its CA is unreachable), so what is
 * measured is the state, not retries. `source` says where the state comes from.
 */
async function startBenchZtunnel(
  dir: string,
  source: Record<string, unknown>,
): Promise<{ stop(): Promise<void> }> {
  const { configFromEnv } = await import('../ztunnel/config.js');
  const { runZtunnel } = await import('../ztunnel/ztunnel.js');
  const config = configFromEnv({
    node: 'node-bench',
    ...source,
    caAddress: '127.0.0.1:9',
    caRootFile: join(dir, 'root.pem'),
    tokenFile: join(dir, 'token'),
    transparent: false,
    preserveSourceIp: false,
    listenAddress: '127.0.0.1',
    outboundPort: 0,
    inboundPlaintextPort: 0,
    inboundPort: 0,
    adminPort: 0,
    statsPort: 0,
    readinessPort: 0,
    logLevel: 'warn',
  });
  const { stop } = await runZtunnel(config, { exit: () => {} });
  return { stop };
}

/** The token the ztunnel-wds subject presents (TokenReview on the test API server knows it). */
const ZTUNNEL_TOKEN = 'bench-ztunnel-token';

/** The discovery tier as `ambit ca --kubernetes` runs it. */
async function startDiscoveryTier(
  kubeconfig: string,
  listen: string,
): Promise<{ stop(): Promise<void>; address: string; roots: string }> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const { pino } = await import('pino');
  const { startKubernetesCa } = await import('../ca/server/kube-ca.js');
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(kubeconfig);
  const ca = await startKubernetesCa({
    kubeConfig,
    config: { listen },
    publishRoots: false,
    syncTimeoutMs: 600_000,
    logger: pino({ level: 'warn' }),
  });
  return { stop: () => ca.close(), address: ca.server.address, roots: ca.server.rootsPem() };
}

/** Child: the discovery tier a ztunnel-wds subject subscribes to (not measured). */
async function discoveryChild(kubeconfig: string): Promise<void> {
  const tier = await startDiscoveryTier(kubeconfig, '127.0.0.1:0');
  process.send?.({ address: tier.address, roots: tier.roots });
  process.on('disconnect', () => {
    tier.stop().finally(() => process.exit(0));
  });
}

// ---------------------------------------------------------------------------------------------------
// Child: the loaded API server.

type ApiMsg = { op: 'stats' } | { op: 'lifecycles'; count: number; perSecond: number } | { op: 'exit' };

async function apiServerChild(pods: number): Promise<void> {
  const { TestKubernetesApiServer } = await import('../test/k8s-api-server/server.js');
  const { findKind } = await import('../test/k8s-api-server/resources.js');
  // Bookmarks once a minute, like the real apiserver (the test default of 1 s would add traffic).
  const server = new TestKubernetesApiServer({ bookmarkIntervalMs: 60_000, historyLimit: 20_000 });
  const store = server.store;
  const t = (apiVersion: string, kind: string) => findKind(apiVersion, kind)!;
  const NS = t('v1', 'Namespace');
  const POD = t('v1', 'Pod');
  const SVC = t('v1', 'Service');
  const SLICE = t('discovery.k8s.io/v1', 'EndpointSlice');
  const RS = t('apps/v1', 'ReplicaSet');
  const t0 = performance.now();
  const namespaces = Math.max(1, Math.ceil(pods / PODS_PER_NAMESPACE));
  store.create(NS, undefined, { metadata: { name: 'istio-system' } } as never);
  for (let n = 0; n < namespaces; n++)
    store.create(NS, undefined, {
      metadata: {
        name: namespaceName(n * PODS_PER_NAMESPACE),
        labels: { 'istio.io/dataplane-mode': 'ambient' },
      },
    } as never);
  const services = Math.ceil(pods / PODS_PER_SERVICE);
  const owners: string[] = [];
  for (let s = 0; s < services; s++) {
    const rs = realisticReplicaSet(s);
    owners.push(
      store.create(RS, (rs.metadata as { namespace: string }).namespace, rs as never).metadata.uid!,
    );
  }
  for (let i = 0; i < pods; i++)
    store.create(
      POD,
      namespaceName(i),
      realisticPod(i, 'Running', owners[Math.floor(i / PODS_PER_SERVICE)]) as never,
    );
  for (let s = 0; s < services; s++) {
    const svc = realisticService(s);
    store.create(SVC, (svc.metadata as { namespace: string }).namespace, svc as never);
    const slice = realisticSlice(s, pods);
    store.create(SLICE, (slice.metadata as { namespace: string }).namespace, slice as never);
  }
  server.addToken({
    token: ZTUNNEL_TOKEN,
    namespace: 'istio-system',
    serviceAccount: 'ztunnel',
    node: 'node-bench',
  });
  const url = await server.listen();
  process.send?.({ ready: true, url, kubeconfig: server.kubeconfig(), loadMs: performance.now() - t0 });

  /** One lifecycle of churn pod `k` (in namespace ns-0, joining the slice of Service k % services). */
  const lifecycle = async (k: number, gapMs: number) => {
    const i = pods + 1_000_000 + k; // a fresh pod index (name, IP) per lifecycle
    const ns = namespaceName(0);
    const s = k % Math.max(1, Math.min(services, PODS_PER_NAMESPACE / PODS_PER_SERVICE));
    const pause = () => new Promise((r) => setTimeout(r, gapMs));
    const pod = realisticPod(i, 'Pending', owners[s]) as { metadata: { name: string; namespace: string } };
    pod.metadata.namespace = ns;
    store.create(POD, ns, pod as never);
    await pause();
    const running = realisticPod(i, 'Running') as { metadata: { namespace: string }; status: unknown };
    store.update(
      POD,
      ns,
      podName(i),
      { ...store.get(POD, ns, podName(i)), status: running.status },
      'status',
    );
    await pause();
    const sliceName = `${(realisticService(s).metadata as { name: string }).name}-x7f2k`;
    const slice = store.get(SLICE, ns, sliceName) as { endpoints?: unknown[] };
    const ep = {
      ...sliceEndpoint(i),
      targetRef: { kind: 'Pod', namespace: ns, name: podName(i), uid: `uid-${i}` },
    };
    store.update(SLICE, ns, sliceName, { ...slice, endpoints: [...(slice.endpoints ?? []), ep] } as never);
    await pause();
    store.delete(POD, ns, podName(i));
    await pause();
    const after = store.get(SLICE, ns, sliceName) as { endpoints?: { addresses: string[] }[] };
    store.update(SLICE, ns, sliceName, {
      ...after,
      endpoints: (after.endpoints ?? []).filter((e) => e.addresses[0] !== podIp(i)),
    } as never);
  };

  process.on('message', async (m: ApiMsg) => {
    if (m.op === 'stats') process.send?.({ bytes: server.bytesSent(), watches: store.watchCount });
    else if (m.op === 'lifecycles') {
      // Spread over time (perSecond), several in flight, each step its own write and watch event.
      const running: Promise<void>[] = [];
      const gapMs = 4;
      for (let k = 0; k < m.count; k++) {
        running.push(lifecycle(k, gapMs));
        await new Promise((r) => setTimeout(r, 1000 / m.perSecond));
      }
      await Promise.all(running);
      process.send?.({ done: true });
    } else if (m.op === 'exit') {
      await server.close();
      process.exit(0);
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Child: one subject, measured from inside (heap after GC needs --expose-gc; CPU from cpuUsage).

type SubjectMsg = { op: 'measure' } | { op: 'cpu' } | { op: 'exit' };

/** Bytes this process has read (all read syscalls; after start-up, its sockets): /proc/self/io rchar. */
function bytesRead(): number {
  const m = /rchar:\s+(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

function vmHwmBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * KiB : Number.NaN;
}

async function subjectChild(name: string, kubeconfig: string): Promise<void> {
  const subject = SUBJECTS.find((s) => s.name === name);
  if (!subject) throw new Error(`scale bench: no subject ${name}`);
  const dir = mkdtempSync(join(tmpdir(), 'ambit-scale-'));
  // GC time and the longest pause, during the sync and during the churn (the relay tuning in
  // ztunnel/runtime.ts disables incremental marking: a full GC of a large state is one pause).
  const gcs = { ms: 0, maxPauseMs: 0, count: 0 };
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcs.ms += e.duration;
      gcs.count++;
      gcs.maxPauseMs = Math.max(gcs.maxPauseMs, e.duration);
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const gcSnapshot = () => {
    const out = { ...gcs };
    gcs.ms = 0;
    gcs.maxPauseMs = 0;
    gcs.count = 0;
    return out;
  };
  let peakHeap = 0;
  const sampler = setInterval(() => {
    peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
  }, 50);
  // The first sync alone (every kind listed into the state, or the first WDS answers), apart from the
  // component's start-up.
  const { KubernetesSource } = await import('../core/sources/kubernetes.js');
  const { WdsSource } = await import('../core/sources/wds.js');
  let syncMs = Number.NaN;
  for (const proto of [KubernetesSource.prototype, WdsSource.prototype] as { start(): Promise<void> }[]) {
    const sourceStart = proto.start;
    proto.start = async function (this: unknown) {
      const t = performance.now();
      await sourceStart.call(this);
      syncMs = performance.now() - t;
    };
  }
  await subject.prepare?.(kubeconfig, dir);
  const read0 = bytesRead();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const running = await subject.start(kubeconfig, dir);
  const startMs = performance.now() - t0;
  const cpu1 = process.cpuUsage(cpu0);
  peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed);
  process.send?.({
    synced: true,
    syncMs,
    startMs,
    syncCpuMs: (cpu1.user + cpu1.system) / 1000,
    syncGc: gcSnapshot(),
    syncBytesRead: bytesRead() - read0,
  });
  process.on('message', async (m: SubjectMsg) => {
    if (m.op === 'measure') {
      gcSnapshot();
      const gc = (globalThis as { gc?: () => void }).gc;
      for (let i = 0; i < 3; i++) gc?.();
      const mem = process.memoryUsage();
      clearInterval(sampler);
      process.send?.({
        heapAfterGc: mem.heapUsed,
        rssAfterGc: mem.rss,
        peakHeap,
        peakRss: vmHwmBytes(),
        youngGen: v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0,
      });
    } else if (m.op === 'cpu') {
      const c = process.cpuUsage();
      process.send?.({ cpuMs: (c.user + c.system) / 1000, gc: { ...gcs }, bytesRead: bytesRead() });
    } else if (m.op === 'exit') {
      await running.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    }
  });
}

// ---------------------------------------------------------------------------------------------------
// Orchestrator.

function ask<T>(
  child: ChildProcess,
  msg: unknown,
  until: (m: Record<string, unknown>) => boolean,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: Record<string, unknown>) => {
      if (!until(m)) return;
      child.off('message', onMsg);
      child.off('exit', onExit);
      resolve(m as T);
    };
    const onExit = (code: number | null) =>
      reject(new Error(`scale bench: child exited (${code}) before answering`));
    child.on('message', onMsg);
    child.once('exit', onExit);
    if (msg !== undefined) child.send(msg as never);
  });
}

function spawn(env: Record<string, string>, execArgv: string[]): ChildProcess {
  return fork(SELF, [], {
    env: { ...process.env, ...env },
    execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.send({ op: 'exit' });
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

interface Row {
  subject: string;
  pods: number;
  syncS: number;
  startS: number;
  syncCpuS: number;
  heapMiB: number;
  rssMiB: number;
  peakHeapMiB: number;
  peakRssMiB: number;
  youngMiB: number;
  receivedMB: number;
  watches: number;
  lifecycleCpuMs: number;
  bytesPerEvent: number;
  syncGc: GcStats;
  churnGc: GcStats | undefined;
}

interface GcStats {
  ms: number;
  maxPauseMs: number;
  count: number;
}

const LIFECYCLES = Number(process.env.AMBIT_SCALE_LIFECYCLES ?? 300);

async function measure(subject: Subject, pods: number): Promise<Row> {
  const api = spawn({ AMBIT_SCALE_CHILD: 'apiserver', AMBIT_SCALE_PODS: String(pods) }, [
    `--max-old-space-size=${Math.max(2048, Math.ceil(pods / 1000) * 90)}`,
  ]);
  try {
    const ready = await ask<{ url: string; kubeconfig: string; loadMs: number }>(
      api,
      undefined,
      (m) => !!m.ready,
    );
    const dir = mkdtempSync(join(tmpdir(), 'ambit-scale-kc-'));
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(kubeconfig, ready.kubeconfig);
    const stats = () => ask<{ bytes: number; watches: number }>(api, { op: 'stats' }, (m) => 'bytes' in m);
    const before = await stats();
    const extra = (process.env.AMBIT_SCALE_SUBJECT_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
    const sub = spawn({ AMBIT_SCALE_CHILD: `subject:${subject.name}`, AMBIT_SCALE_KUBECONFIG: kubeconfig }, [
      '--expose-gc',
      '--max-old-space-size=8192',
      ...extra,
    ]);
    try {
      const synced = await ask<{
        syncMs: number;
        startMs: number;
        syncCpuMs: number;
        syncGc: GcStats;
        syncBytesRead: number;
      }>(sub, undefined, (m) => !!m.synced);
      // Let the watches open and the last batch settle before measuring.
      await new Promise((r) => setTimeout(r, 1500));
      const afterSync = await stats();
      const mem = await ask<{
        heapAfterGc: number;
        rssAfterGc: number;
        peakHeap: number;
        peakRss: number;
        youngGen: number;
      }>(sub, { op: 'measure' }, (m) => 'heapAfterGc' in m);
      const cpu = async () => (await ask<{ cpuMs: number }>(sub, { op: 'cpu' }, (m) => 'cpuMs' in m)).cpuMs;
      const subjectRead = async () =>
        (await ask<{ bytesRead: number }>(sub, { op: 'cpu' }, (m) => 'bytesRead' in m)).bytesRead;
      // Quiet first (the sync's last batches and finalizers done), then the idle rate (bookmarks,
      // timers), which is subtracted from the churn's CPU.
      const quiet = async (rate: number) => {
        let last = await cpu();
        for (let i = 0; i < 120; i++) {
          await new Promise((r) => setTimeout(r, 500));
          const now = await cpu();
          if (now - last < 500 * rate + 2) return;
          last = now;
        }
      };
      await quiet(0);
      const idle0 = await cpu();
      await new Promise((r) => setTimeout(r, 2000));
      const idleRate = ((await cpu()) - idle0) / 2000;
      let lifecycleCpuMs = Number.NaN;
      let churnGc: GcStats | undefined;
      let bytesPerEvent = Number.NaN;
      if (LIFECYCLES > 0 && pods > 0) {
        const c0 = await cpu();
        const b0 = subject.viaDiscovery ? await subjectRead() : (await stats()).bytes;
        const t0 = performance.now();
        await ask(api, { op: 'lifecycles', count: LIFECYCLES, perSecond: 50 }, (m) => !!m.done);
        await quiet(idleRate);
        const elapsed = performance.now() - t0;
        const used = (await cpu()) - c0 - idleRate * elapsed;
        lifecycleCpuMs = used / LIFECYCLES;
        churnGc = (await ask<{ gc: GcStats }>(sub, { op: 'cpu' }, (m) => 'gc' in m)).gc;
        const b1 = subject.viaDiscovery ? await subjectRead() : (await stats()).bytes;
        bytesPerEvent = (b1 - b0) / (LIFECYCLES * 5);
      }
      return {
        subject: subject.name,
        pods,
        syncS: synced.syncMs / 1000,
        startS: synced.startMs / 1000,
        syncCpuS: synced.syncCpuMs / 1000,
        heapMiB: mem.heapAfterGc / MiB,
        rssMiB: mem.rssAfterGc / MiB,
        peakHeapMiB: mem.peakHeap / MiB,
        peakRssMiB: mem.peakRss / MiB,
        youngMiB: mem.youngGen / MiB,
        // Over WDS the subject's own reads; otherwise what the API server sent (to every client: the subject).
        receivedMB: (subject.viaDiscovery ? synced.syncBytesRead : afterSync.bytes - before.bytes) / 1e6,
        watches: afterSync.watches,
        lifecycleCpuMs,
        bytesPerEvent,
        syncGc: synced.syncGc,
        churnGc,
      };
    } finally {
      await stopChild(sub);
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    await stopChild(api);
  }
}

const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

function report(rows: Row[], subject: Subject): void {
  const base = rows.find((r) => r.pods === 0);
  const perPod = (r: Row, v: (x: Row) => number) =>
    r.pods === 0 ? Number.NaN : ((v(r) - (base ? v(base) : 0)) * MiB) / KiB / r.pods;
  console.log(
    `\nsubject ${subject.name} (${NODES} nodes, 1 Service + 1 EndpointSlice per ${PODS_PER_SERVICE} pods)`,
  );
  console.log(
    [
      'pods'.padStart(7),
      'sync s',
      'start s',
      'pods/s',
      'CPU s',
      'CPU µs/pod',
      'heap MiB',
      'KiB/pod',
      'RSS MiB',
      'RSS KiB/pod',
      'peak heap',
      'peak RSS',
      'young MiB',
      'recv MB',
      'KB/pod',
      'watches',
      'CPU ms/lifecycle',
      'B/event',
      'GC ms sync (max)',
      'GC ms churn (max)',
    ].join(' | '),
  );
  for (const r of rows)
    console.log(
      [
        String(r.pods).padStart(7),
        f(r.syncS, 2),
        f(r.startS, 2),
        r.pods ? f(r.pods / r.syncS, 0) : '-',
        f(r.syncCpuS, 2),
        r.pods ? f((r.syncCpuS * 1e6) / r.pods, 0) : '-',
        f(r.heapMiB),
        f(
          perPod(r, (x) => x.heapMiB),
          2,
        ),
        f(r.rssMiB),
        f(
          perPod(r, (x) => x.rssMiB),
          2,
        ),
        f(r.peakHeapMiB),
        f(r.peakRssMiB),
        f(r.youngMiB),
        f(r.receivedMB, 1),
        r.pods ? f((r.receivedMB * 1000) / r.pods, 2) : '-',
        String(r.watches),
        f(r.lifecycleCpuMs, 3),
        f(r.bytesPerEvent, 0),
        `${f(r.syncGc.ms, 0)} (${f(r.syncGc.maxPauseMs, 0)})`,
        r.churnGc ? `${f(r.churnGc.ms, 0)} (${f(r.churnGc.maxPauseMs, 0)})` : '-',
      ].join(' | '),
    );
  const largest = rows.filter((r) => r.pods > 0).at(-1);
  if (!largest) return;
  const heapPerPod = perPod(largest, (x) => x.heapMiB);
  if (subject.heapPerPodKiB !== undefined)
    console.log(
      `target ${subject.name} heap ≤ ${subject.heapPerPodKiB} KiB per pod: ${f(heapPerPod, 2)} KiB at ${largest.pods} pods → ${verdict(heapPerPod <= subject.heapPerPodKiB)}`,
    );
  const at50k = rows.find((r) => r.pods === 50_000);
  if (at50k && subject.cpuPerLifecycleMs !== undefined)
    console.log(
      `target ${subject.name} CPU per pod lifecycle ≤ ${subject.cpuPerLifecycleMs} ms at 50k pods: ${f(at50k.lifecycleCpuMs, 3)} ms → ${verdict(at50k.lifecycleCpuMs <= subject.cpuPerLifecycleMs)}`,
    );
  const at150k = rows.find((r) => r.pods === 150_000);
  if (at150k)
    console.log(
      `target first sync of 150k pods ≤ 60 s: ${f(at150k.syncS, 1)} s → ${verdict(at150k.syncS <= 60)}`,
    );
  else {
    // Projection: sync time grows ~linearly with pods (pages of 500, constant work per object).
    const proj = (largest.syncS / largest.pods) * 150_000;
    console.log(
      `target first sync of 150k pods ≤ 60 s: not run (AMBIT_SCALE_LARGE=1); projected from ${largest.pods} pods: ${f(proj, 1)} s, heap ${f((heapPerPod * 150_000) / 1024, 0)} MiB → ${verdict(proj <= 60)} (projection)`,
    );
  }
}

const scenario: BenchScenario = {
  name: 'scale: Kubernetes-watching components vs cluster size (issue 15)',
  async run() {
    const sizes = (process.env.AMBIT_SCALE_SIZES ?? '0,1000,10000,50000')
      .split(',')
      .map((x) => Number(x.trim()))
      .filter((x) => Number.isInteger(x) && x >= 0);
    if (process.env.AMBIT_SCALE_LARGE === '1') sizes.push(100_000, 150_000);
    const wanted = (process.env.AMBIT_SCALE_SUBJECTS ?? SUBJECTS.map((s) => s.name).join(',')).split(',');
    for (const subject of SUBJECTS.filter((s) => wanted.includes(s.name))) {
      const rows: Row[] = [];
      for (const pods of sizes) {
        const t0 = performance.now();
        try {
          rows.push(await measure(subject, pods));
        } catch (err) {
          console.log(`${subject.name} at ${pods} pods: ${(err as Error).message}`);
          break;
        }
        const r = rows.at(-1)!;
        console.log(
          `  ${subject.name} ${pods} pods: sync ${f(r.syncS, 2)} s, heap ${f(r.heapMiB)} MiB, RSS ${f(r.rssMiB)} MiB, peak RSS ${f(r.peakRssMiB)} MiB, ${f(r.lifecycleCpuMs, 3)} ms CPU/lifecycle (${f((performance.now() - t0) / 1000, 0)} s)`,
        );
      }
      report(rows, subject);
    }
  },
};
export default scenario;

const child = process.env.AMBIT_SCALE_CHILD;
if (child === 'apiserver') await apiServerChild(Number(process.env.AMBIT_SCALE_PODS ?? 0));
else if (child === 'discovery') await discoveryChild(process.env.AMBIT_SCALE_KUBECONFIG ?? '');
else if (child?.startsWith('subject:'))
  await subjectChild(child.slice('subject:'.length), process.env.AMBIT_SCALE_KUBECONFIG ?? '');

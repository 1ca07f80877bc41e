// `ambit demo up`: the one-machine mesh (docs/architecture.md §8). From a manifests directory it builds two "nodes"
// and their "pods" as network namespaces (netns/, the same topology the tests use), starts the CA,
// a bpf-redirect agent and a ztunnel per node, the waypoint, the sample apps and their traffic, then
// serves the flow view. Every step is recorded in the state file before it runs, so `ambit demo down`
// can undo it after any crash.
import type { ChildProcess } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { distPath, ensureBpffs, repoRoot, Topology } from '../../netns/topology.js';
import { demoDown } from './down.js';
import { FlowCollector } from './flows.js';
import { followPodChanges } from './live-pods.js';
import { planDemo } from './plan.js';
import {
  cmdlineOf,
  DemoError,
  type DemoPod,
  type DemoProcess,
  type DemoState,
  pidAlive,
  readDemoState,
  writeDemoState,
} from './state-file.js';
import { startWebView } from './web.js';

export interface UpOptions {
  dir: string;
  prefix: string;
  manifests: string;
  port: number;
  /** auto | ebpf | nftables (the agent's --mode). */
  captureMode: string;
  /** Print progress (the CLI); tests read the same lines. */
  out: (line: string) => void;
}

const START_TIMEOUT_MS = 30_000;
const CA_PORT = 15012;
const NODE_TOKEN = (node: string) => `demo-ztunnel-${node}-${process.pid}-token`;
const WAYPOINT_TOKEN = (pod: string) => `demo-waypoint-${pod}-${process.pid}-token`;

function waitIpcReady(
  child: ChildProcess,
  what: string,
  log: string,
  timeoutMs = START_TIMEOUT_MS,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      cleanup();
      let tail = '';
      try {
        tail = readFileSync(log, 'utf8').slice(-1500);
      } catch {}
      reject(new DemoError('START_FAILED', `${what} ${why}; last log lines (${log}):\n${tail}`));
    };
    const timer = setTimeout(() => fail(`not ready after ${timeoutMs / 1000} s`), timeoutMs);
    const onMessage = (m: { ready?: unknown }) => {
      if (m && m.ready !== undefined) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null, sig: string | null) =>
      fail(`exited (${code ?? sig}) before it was ready`);
    function cleanup() {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

async function waitFor(
  what: string,
  timeoutMs: number,
  check: () => boolean | Promise<boolean>,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new DemoError('START_TIMEOUT', `${what} (waited ${timeoutMs / 1000} s)`);
}

/** Runs the demo until SIGINT/SIGTERM; then tears everything down and resolves. */
export async function demoUp(o: UpOptions): Promise<void> {
  const t0 = Date.now();
  const step = (msg: string) => o.out(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);
  if (process.getuid?.() !== 0) {
    throw new DemoError(
      'NOT_ROOT',
      'ambit demo must run as root: it creates network namespaces, veths, eBPF programs and nftables rules (try: sudo npm start)',
    );
  }
  if (!existsSync(o.manifests)) {
    throw new DemoError('BAD_FLAG', `manifests directory ${o.manifests} does not exist`);
  }
  const previous = readDemoState(o.dir);
  if (previous && pidAlive(previous.pid) && cmdlineOf(previous.pid).includes('demo')) {
    throw new DemoError(
      'ALREADY_RUNNING',
      `a demo is already running (pid ${previous.pid}, state ${o.dir}/state.json); stop it with \`ambit demo down\``,
    );
  }
  if (
    previous ||
    (existsSync('/var/run/netns') && readdirSync('/var/run/netns').some((n) => n.startsWith(`${o.prefix}-`)))
  ) {
    step(`cleaning up a previous demo that did not stop cleanly (prefix ${o.prefix})`);
    const r = await demoDown({ dir: o.dir, prefix: o.prefix });
    if (r.residue.length > 0)
      throw new DemoError('RESIDUE', `could not clean the previous demo: ${r.residue.join('; ')}`);
  }
  const root = repoRoot();
  const ambit = distPath('cli/ambit.ts');
  const logDir = join(o.dir, 'logs');
  const manifests = join(o.dir, 'manifests');
  mkdirSync(logDir, { recursive: true });
  mkdirSync(manifests, { recursive: true });
  // The demo watches a COPY of the examples, so editing it changes the running mesh and never the repo.
  for (const f of readdirSync(o.manifests))
    if (/\.ya?ml$/.test(f)) copyFileSync(join(o.manifests, f), join(manifests, f));
  const plan = await planDemo(manifests);
  for (const e of plan.manifestErrors) step(`warning: ${e}`);

  const state: DemoState = {
    version: 1,
    pid: process.pid,
    startedAt: new Date().toISOString(),
    prefix: o.prefix,
    dir: o.dir,
    manifestsDir: manifests,
    fabricNetns: `${o.prefix}-fabric`,
    nodes: [],
    pods: [],
    processes: [],
    pinDirs: [],
  };
  writeDemoState(state);
  const log = pino({ name: 'ambit-demo' }, pino.destination({ dest: join(logDir, 'demo.log'), sync: false }));
  let topo: Topology | undefined;
  const collector = new FlowCollector(log);
  let web: Awaited<ReturnType<typeof startWebView>> | undefined;
  const children: ChildProcess[] = [];

  const spawnRecorded = (
    role: string,
    netns: string,
    cmd: string,
    args: string[],
    env: Record<string, string> = {},
  ) => {
    if (!topo) throw new DemoError('INTERNAL', 'topology not built');
    const logFile = join(logDir, `${role.replace(/[^a-z0-9.-]/gi, '_')}.log`);
    const fd = openSync(logFile, 'a');
    const child = topo.spawnIn(netns, cmd, args, {
      stdio: ['ignore', fd, fd, 'ipc'],
      cwd: root,
      env: { ...process.env, ...env },
    });
    closeSync(fd);
    children.push(child);
    const rec: DemoProcess = { role, pid: child.pid ?? -1, netns, log: logFile };
    state.processes.push(rec);
    // A child that dies while the demo runs is reported (not silently ignored), unless the demo
    // stopped it (stopping, or its pod was removed: then it is no longer in state.processes).
    child.once('exit', (code, sig) => {
      if (setUp && !stopping && state.processes.includes(rec)) {
        o.out(`warning: ${role} exited (${code ?? sig}); see ${logFile}`);
      }
    });
    writeDemoState(state);
    return { child, logFile };
  };

  /** Starts the sample program a pod's `demo.ambit.dev/run` annotation names, inside the pod's netns. */
  const startApp = (p: DemoPod): void => {
    const [script, ...args] = (p.run ?? '').split(/\s+/).filter(Boolean);
    const file = join(root, 'examples', 'demo', 'apps', script ?? '');
    if (!script || !/^[a-z0-9-]+\.mjs$/.test(script) || !existsSync(file)) {
      throw new DemoError(
        'BAD_MANIFEST',
        `Pod ${p.namespace}/${p.name}: annotation demo.ambit.dev/run "${p.run}" names no program of examples/demo/apps/`,
      );
    }
    spawnRecorded(`app-${p.namespace}-${p.name}`, p.netns, process.execPath, [file, ...args], {
      POD_NAME: p.name,
      POD_NAMESPACE: p.namespace,
    });
  };

  let stopping = false;
  const stop = async (why: string) => {
    if (stopping) return;
    stopping = true;
    o.out(`\nstopping the demo (${why}) ...`);
    collector.stop();
    await web?.close().catch(() => undefined);
    log.flush();
    const r = await demoDown({ dir: o.dir, prefix: o.prefix, self: process.pid });
    o.out(
      r.residue.length === 0
        ? `removed ${r.netns.length} network namespaces, ${r.pins.length} BPF pin dirs, ${r.killed} processes: nothing left behind`
        : `left behind: ${r.residue.join('; ')}`,
    );
  };

  // Ctrl-C (or `ambit demo down`'s SIGTERM) at any moment, during set-up too, removes what exists so far.
  let setUp = false;
  let stopped: () => void = () => undefined;
  const whenStopped = new Promise<void>((resolve) => {
    stopped = resolve;
  });
  const onSignal = (sig: NodeJS.Signals) => {
    void stop(sig).finally(() => {
      if (!setUp) process.exit(130);
      stopped();
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    await ensureBpffs();
    // 1. Network: nodes linked by a fabric bridge, pods on veths (a routed CNI's shape).
    topo = await Topology.create({ prefix: o.prefix });
    for (const n of plan.nodes) {
      const node = await topo.addNode(n);
      const pinDir = join('/sys/fs/bpf', `${o.prefix}-${n}`);
      state.nodes.push({
        name: n,
        netns: node.ns,
        ip: node.ip,
        pinDir,
        agentStatusFile: join(o.dir, `agent-${n}.json`),
      });
      state.pinDirs.push(pinDir);
      writeDemoState(state);
    }
    for (const p of plan.pods) {
      const pod = await topo.addPod(p.node, p.shortName, { ip: p.ip });
      state.pods.push({
        name: p.name,
        namespace: p.namespace,
        node: p.node,
        ip: p.ip,
        netns: pod.ns,
        enrolled: p.enrolled,
        identity: p.identity,
        ...(p.run ? { run: p.run } : {}),
      });
    }
    writeDemoState(state);
    step(
      `network: ${plan.nodes.length} nodes (${state.nodes.map((n) => `${n.name} ${n.ip}`).join(', ')}), ${plan.pods.length} pods (${plan.pods.filter((p) => p.enrolled).length} enrolled in the mesh) as netns ${o.prefix}-*`,
    );

    // 2. The CA and the discovery tier (istiod's two roles, one server on 15012), inside the first
    // node: every ztunnel reaches it over the fabric and reads its state from it over Istio's WDS.
    const first = state.nodes[0]!;
    state.caAddress = `${first.ip}:${CA_PORT}`;
    const caDir = join(o.dir, 'ca');
    const tokens = join(o.dir, 'ca-tokens.yaml');
    // Node tokens (ztunnels impersonate their pods' identities) and one token per waypoint, which
    // asks only for its own identity (its Gateway's service account), as Istio's waypoint pod does.
    const waypointPods = state.pods.filter((p) => p.run === 'waypoint');
    const waypointTokens = waypointPods
      .map((p) => `  - token: ${WAYPOINT_TOKEN(p.name)}\n    identity: ${p.identity}\n`)
      .join('');
    writeFileSync(
      tokens,
      `tokens:\n${waypointTokens}${state.nodes
        .map(
          (n) =>
            `  - token: ${NODE_TOKEN(n.name)}\n    identity: spiffe://cluster.local/ns/istio-system/sa/ztunnel\n    node: ${n.name}\n`,
        )
        .join('')}`,
      { mode: 0o600 },
    );
    for (const n of state.nodes)
      writeFileSync(join(o.dir, `token-${n.name}`), `${NODE_TOKEN(n.name)}\n`, { mode: 0o600 });
    for (const p of waypointPods)
      writeFileSync(join(o.dir, `token-waypoint-${p.name}`), `${WAYPOINT_TOKEN(p.name)}\n`, { mode: 0o600 });
    const ca = spawnRecorded('ca', first.netns, process.execPath, [
      ambit,
      'demo',
      'ca-server',
      '--dir',
      caDir,
      '--tokens',
      tokens,
      '--listen',
      state.caAddress,
      '-m',
      manifests,
    ]);
    await waitIpcReady(ca.child, 'the CA', ca.logFile);
    step(
      `CA + discovery: Istio's CA API and WDS (fed by ${manifests}) on ${state.caAddress} (root in ${caDir}/root-cert.pem)`,
    );

    // 3. Capture: one redirect agent per node (eBPF; nftables TPROXY when eBPF cannot load).
    for (const n of state.nodes) {
      const a = spawnRecorded(`bpf-agent-${n.name}`, n.netns, process.execPath, [
        ambit,
        'bpf-agent',
        '--node',
        n.name,
        '-m',
        manifests,
        '--status-file',
        n.agentStatusFile,
        '--pin-dir',
        n.pinDir,
        '--mode',
        o.captureMode,
        '--uplink',
        'eth0',
        '--nft-prefix',
        o.prefix,
      ]);
      await waitFor(
        `the bpf-agent on ${n.name} never wrote its status (log ${a.logFile})`,
        START_TIMEOUT_MS,
        () => {
          if (a.child.exitCode !== null) {
            throw new DemoError(
              'START_FAILED',
              `the bpf-agent on ${n.name} exited (${a.child.exitCode}):\n${readFileSync(a.logFile, 'utf8').slice(-1500)}`,
            );
          }
          try {
            const s = JSON.parse(readFileSync(n.agentStatusFile, 'utf8')) as {
              pid: number;
              mode: 'ebpf' | 'nftables';
              fallbackReason?: string;
            };
            if (s.pid !== a.child.pid) return false;
            state.captureMode = s.mode;
            if (s.fallbackReason) state.captureFallbackReason = s.fallbackReason;
            return true;
          } catch {
            return false;
          }
        },
      );
    }
    writeDemoState(state);
    if (state.captureMode === 'ebpf') step('capture: eBPF (tc sk_assign steering) on every node');
    else if (o.captureMode === 'nftables')
      step('capture: nftables TPROXY (asked for with --capture nftables)');
    else
      step(
        `capture: nftables TPROXY fallback — eBPF could not load${state.captureFallbackReason ? `: ${state.captureFallbackReason}` : ''}`,
      );

    // 4. One ztunnel per node.
    for (const n of state.nodes) {
      const z = spawnRecorded(`ztunnel-${n.name}`, n.netns, process.execPath, [
        ambit,
        'ztunnel',
        '--node',
        n.name,
        // The production path: state from the discovery tier, not from the files.
        '--discovery',
        state.caAddress,
        '--ca',
        state.caAddress,
        '--ca-root',
        join(caDir, 'root-cert.pem'),
        '--token',
        join(o.dir, `token-${n.name}`),
        '--drain-deadline',
        '1000',
      ]);
      await waitIpcReady(z.child, `the ztunnel on ${n.name}`, z.logFile);
      collector.follow({
        reporter: `ztunnel/${n.name}`,
        netns: n.netns,
        url: 'http://127.0.0.1:15000/flows',
      });
    }
    step(
      `ztunnel: one per node (${state.nodes.map((n) => n.name).join(', ')}), HBONE on :15008, admin on each node's 127.0.0.1:15000`,
    );

    // 5. The waypoint (a pod of its own, like Istio's waypoint Deployment).
    const waypointCli = existsSync(join(root, 'dist', 'cli', 'waypoint.js'));
    if (waypointPods.length > 0 && !waypointCli) {
      state.waypoint = 'unavailable';
      step(
        'waypoint: NOT STARTED — this build has no `ambit waypoint` yet; requests through it fail (shown as errors)',
      );
    }
    for (const wp of waypointCli ? waypointPods : []) {
      const w = spawnRecorded(`waypoint-${wp.name}`, wp.netns, process.execPath, [
        ambit,
        'waypoint',
        '--name',
        wp.name,
        '--namespace',
        wp.namespace,
        '-m',
        manifests,
        '--ca',
        state.caAddress,
        '--ca-root',
        join(caDir, 'root-cert.pem'),
        '--token',
        join(o.dir, `token-waypoint-${wp.name}`),
      ]);
      await waitIpcReady(w.child, `the waypoint ${wp.namespace}/${wp.name}`, w.logFile);
      // The waypoint's request events, on its stats port (local callers only).
      collector.follow({
        reporter: `waypoint/${wp.namespace}/${wp.name}`,
        netns: wp.netns,
        url: 'http://127.0.0.1:15020/flows',
      });
      state.waypoint = 'running';
      step(
        `waypoint: ${wp.namespace}/${wp.name} on ${wp.ip} (L7 policy for services labelled istio.io/use-waypoint)`,
      );
    }
    writeDemoState(state);

    // 6. Sample apps: servers first, then the traffic generators.
    const apps = state.pods.filter((p) => p.run && p.run !== 'waypoint');
    const ordered = [
      ...apps.filter((p) => !p.run?.startsWith('traffic')),
      ...apps.filter((p) => p.run?.startsWith('traffic')),
    ];
    for (const p of ordered) startApp(p);
    step(
      `apps: ${ordered.map((p) => `${p.namespace}/${p.name} (${(p.run ?? '').split(' ')[0]})`).join(', ')}`,
    );

    // 7. The flow view.
    web = await startWebView({ port: o.port, manifests, state: () => state, collector, log });
    state.webUrl = web.url;
    state.ready = true;
    writeDemoState(state);
    step('traffic: HTTP and gRPC, allowed and denied, about one call per second per target');
    o.out('');
    o.out(`  Flow view:  ${web.url}`);
    o.out(
      `  Manifests:  ${manifests}   (edit or drop a YAML file here: the running mesh follows within a second)`,
    );
    o.out(`  Logs:       ${logDir}`);
    o.out(`  Status:     sudo node dist/cli/ambit.js status`);
    o.out(`  Stop:       Ctrl-C here, or \`sudo node dist/cli/ambit.js demo down\` from another shell`);
    o.out(`  Ready in ${((Date.now() - t0) / 1000).toFixed(1)} s.`);
  } catch (err) {
    await stop(`set-up failed: ${(err as Error).message.split('\n')[0]}`);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    throw err;
  }

  // Pods added to or removed from the manifests get (or lose) their namespace and program.
  const livePods = followPodChanges({
    manifests,
    topo: topo as Topology,
    state,
    startApp,
    out: o.out,
    save: () => writeDemoState(state),
  });
  process.once('exit', () => livePods.close());
  setUp = true;
  await whenStopped;
}

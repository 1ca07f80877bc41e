// Never a silent bypass (issue 13): a pod the node agent cannot capture is refused and reported. Here
// the failure is real, not simulated: another tool owns a tc filter at the agent's pref on the pod's
// veth, so the kernel refuses the agent's `steer` hook there. The agent runs as in a cluster
// (`ambit bpf-agent --kubernetes` against the test API server, a test double for the apiserver); a
// transparent relay stands in for ztunnel's listeners. Checked as an operator would: the pod's
// connection is refused and nothing reaches the proxy or the server, the pod carries the `failed`
// annotation and a Warning Event, /metrics counts it, the log names pod and reason — and once the
// conflicting filter is gone the pod is captured again. The bypass counter stays 0 throughout.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CAPTURE_FAILED_EVENT_REASON,
  CAPTURE_FAILURE_ANNOTATION,
  REDIRECTION_ANNOTATION,
} from '../bpf-redirect/agent/k8s-annotate.js';
import { defaultConfig } from '../bpf-redirect/agent/config.js';
import { readStatus, Relay, stopAgent, teardownAgent, waitStatus } from './harness/capture.js';
import { keepLogs } from './harness/mesh.js';
import { PodClient, startEchoServer, waitReady } from './harness/processes.js';
import { assertNoResidue, distPath, Topology } from './harness/topology.js';
import { ApiControl, type Proc } from './k8s-world.js';

const root = process.getuid?.() === 0;
const API_PORT = 6443;
const SERVER_PORT = 8080;
const TC_PREF = defaultConfig('a').tcPref;

interface PodJson {
  metadata?: { annotations?: Record<string, string> };
}
interface EventJson {
  reason?: string;
  type?: string;
  message?: string;
  involvedObject?: { name?: string; kind?: string };
}

describe.skipIf(!root)('a pod the agent cannot capture (its veth refuses the hook)', () => {
  let topo: Topology;
  let dir: string;
  let api: ApiControl;
  let apiProc: Proc | undefined;
  let agent: Proc | undefined;
  let relay: Relay | undefined;
  const clients = new Map<string, PodClient>();
  const statusFile = () => join(dir, 'status-a.json');
  const agentOpts = () => ({ statusFile: statusFile(), pinDir: topo.pinDir('n-a') });
  const metrics = async () =>
    (await topo.exec(topo.node('a').ns, 'curl', ['-sS', '--max-time', '5', 'http://127.0.0.1:15014/metrics']))
      .stdout;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ambit-uncap-'));
    topo = await Topology.create();
    await topo.addNode('a');
    await topo.addNode('b');
    await topo.addPod('a', 'good');
    await topo.addPod('a', 'bad');
    await topo.addPod('b', 'srv');
    // Another tool's filter at the agent's pref on bad's veth: the kernel refuses a filter of another
    // kind at that pref ("Specified filter kind does not match existing one").
    await topo.exec(topo.node('a').ns, 'tc', ['qdisc', 'add', 'dev', topo.pod('bad').hostVeth, 'clsact']);
    await topo.exec(topo.node('a').ns, 'tc', [
      ...['filter', 'add', 'dev', topo.pod('bad').hostVeth, 'ingress', 'pref', String(TC_PREF)],
      ...['protocol', 'ip', 'u32', 'match', 'ip', 'dst', '192.0.2.1/32', 'action', 'mirred'],
      ...['egress', 'redirect', 'dev', topo.pod('bad').hostVeth],
    ]);

    const address = `${topo.node('a').ip}:${API_PORT}`;
    const apiChild = topo.spawnNode(topo.node('a').ns, 'test/k8s-api-server/main.ts', [address]);
    apiProc = { child: apiChild, logs: keepLogs(apiChild) };
    await waitReady(apiChild, 'test API server', 15_000);
    api = new ApiControl(apiChild);
    const kubeconfig = join(dir, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters:',
        `  - name: test\n    cluster:\n      server: http://${address}\n      insecure-skip-tls-verify: true`,
        'users:',
        '  - name: test\n    user:\n      token: test-admin-token',
        'contexts:',
        '  - name: test\n    context:\n      cluster: test\n      user: test',
        'current-context: test',
        '',
      ].join('\n'),
    );
    await api.create('v1', 'Namespace', undefined, {
      metadata: { name: 'demo', labels: { 'istio.io/dataplane-mode': 'ambient' } },
    });
    for (const name of ['good', 'bad']) {
      await api.create('v1', 'Pod', 'demo', {
        metadata: { name },
        spec: { nodeName: 'a', containers: [{ name: 'app', image: 'example/app:1' }] },
      });
      const ip = topo.pod(name).ip;
      await api.call({
        op: 'updateStatus',
        apiVersion: 'v1',
        kind: 'Pod',
        namespace: 'demo',
        name,
        status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
      });
    }
    await startEchoServer(topo, topo.pod('srv').ns, [SERVER_PORT]);
    relay = await Relay.start(topo, 'a');
    const child = topo.spawnIn(topo.node('a').ns, process.execPath, [
      distPath('cli/ambit.ts'),
      'bpf-agent',
      '--kubernetes',
      '--kubeconfig',
      kubeconfig,
      ...['--node', 'a', '--status-file', statusFile(), '--pin-dir', topo.pinDir('n-a')],
      ...['--mode', 'ebpf', '--uplink', topo.node('a').uplink],
    ]);
    agent = { child, logs: keepLogs(child) };
    for (const p of ['good', 'bad']) clients.set(p, await PodClient.start(topo, topo.pod(p).ns));
  }, 90_000);

  afterAll(async () => {
    try {
      for (const c of clients.values()) c.child.kill();
      if (agent) await stopAgent(agent);
      if (topo) await teardownAgent(topo, 'a', agentOpts()).catch(() => undefined);
      await relay?.stop();
      apiProc?.child.kill();
    } finally {
      const prefix = topo?.prefix;
      await topo?.teardown();
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (prefix) await assertNoResidue(prefix);
    }
  }, 60_000);

  it('refuses the pod, and the status, log, metric, annotation and Event say why', async () => {
    const s = await waitStatus(
      statusFile(),
      (st) => st.pods.some((p) => p.name === 'bad' && p.uncapturable),
      'bad uncapturable',
      30_000,
    );
    const why = s.pods.find((p) => p.name === 'bad')?.uncapturable ?? '';
    expect(why).toMatch(
      new RegExp(`cannot capture: the capture hook could not be installed on ${topo.pod('bad').hostVeth}`),
    );
    expect(why).toMatch(/its traffic is refused$/);

    // Refused, visibly (a reset), and nothing reached the proxy or the server.
    const before = relay!.events.length;
    const r = await clients.get('bad')!.connect(topo.pod('srv').ip, SERVER_PORT, { timeoutMs: 3000 });
    expect(r.ok).toBe(false);
    expect(r.error).toBe('ECONNREFUSED');
    expect(relay!.events.length).toBe(before);

    // The other pod of the node is captured as usual.
    const good = await clients.get('good')!.whoami(topo.pod('srv').ip, SERVER_PORT);
    expect(good.ok, good.error).toBe(true);
    expect(good.line).toMatch(new RegExp(`^peer ${topo.node('a').ip.replace(/\./g, '\\.')}:`));
    expect(relay!.acceptedFor(`${topo.pod('srv').ip}:${SERVER_PORT}`).length).toBeGreaterThan(0);

    expect(agent!.logs()).toMatch(
      /"pod":"demo\/bad".*"reason":"cannot capture: the capture hook[^"]*".*pod cannot be captured/,
    );
    const m = await metrics();
    expect(m).toMatch(/^ambit_capture_uncapturable_pods\{node="a"\} 1$/m);
    // Nothing of an enrolled pod left the node around the proxy.
    expect(m).toMatch(/^ambit_capture_bypass_packets_total\{node="a"\} 0$/m);

    // The annotation and the Event, through the API server (written asynchronously: bounded wait).
    let pod: PodJson | null = null;
    let events: EventJson[] = [];
    for (let i = 0; i < 100; i++) {
      pod = await api.get<PodJson>('v1', 'Pod', 'demo', 'bad');
      events = (await api.list<EventJson>('v1', 'Event', 'demo')).filter(
        (e) => e.involvedObject?.name === 'bad' && e.reason === CAPTURE_FAILED_EVENT_REASON,
      );
      if (pod?.metadata?.annotations?.[REDIRECTION_ANNOTATION] === 'failed' && events.length > 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(pod?.metadata?.annotations?.[REDIRECTION_ANNOTATION]).toBe('failed');
    expect(pod?.metadata?.annotations?.[CAPTURE_FAILURE_ANNOTATION]).toBe(why);
    expect(events[0]?.type).toBe('Warning');
    expect(events[0]?.message).toContain(topo.pod('bad').hostVeth);
    const goodPod = await api.get<PodJson>('v1', 'Pod', 'demo', 'good');
    expect(goodPod?.metadata?.annotations?.[REDIRECTION_ANNOTATION]).toBe('enabled');
  }, 60_000);

  it('captures the pod once its veth takes the hook, and the annotation follows', async () => {
    await topo.exec(topo.node('a').ns, 'tc', [
      ...['filter', 'del', 'dev', topo.pod('bad').hostVeth, 'ingress', 'pref', String(TC_PREF)],
    ]);
    await waitStatus(
      statusFile(),
      (st) => st.pods.some((p) => p.name === 'bad' && p.state === 'CAPTURE' && !p.uncapturable),
      'bad captured',
      15_000,
    );
    const r = await clients.get('bad')!.whoami(topo.pod('srv').ip, SERVER_PORT);
    expect(r.ok, r.error).toBe(true);
    expect(r.line).toMatch(new RegExp(`^peer ${topo.node('a').ip.replace(/\./g, '\\.')}:`));
    let annotation: string | undefined;
    for (let i = 0; i < 100 && annotation !== 'enabled'; i++) {
      annotation = (await api.get<PodJson>('v1', 'Pod', 'demo', 'bad'))?.metadata?.annotations?.[
        REDIRECTION_ANNOTATION
      ];
      if (annotation !== 'enabled') await new Promise((res) => setTimeout(res, 100));
    }
    expect(annotation).toBe('enabled');
    expect(await metrics()).toMatch(/^ambit_capture_uncapturable_pods\{node="a"\} 0$/m);
    expect(readStatus(statusFile())?.counters.capture_bypass).toBe(0);
  }, 60_000);
});

// The capture suite of issue 5's "Done when", shared by both capture modes (bpf-capture.test.ts runs
// it with the real steer program in the kernel, bpf-nft-fallback.test.ts with the nftables TPROXY
// fallback): two "node" netns, pods as netns with veths, the node agent (`ambit bpf-agent`) and a
// transparent relay standing in for ztunnel's listeners on each node.
import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AgentOptions,
  type PodSpec,
  Relay,
  type RunningAgent,
  readStatus,
  startAgent,
  stopAgent,
  teardownAgent,
  deletePod,
  waitStatus,
  writeManifests,
} from './harness/capture.js';
import { PodClient, startEchoServer } from './harness/processes.js';
import { assertNoResidue, type PodWiring, Topology } from './harness/topology.js';

const root = process.getuid?.() === 0;

function cgroup2Root(): string {
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const [, mnt, fstype] = line.split(' ');
    if (fstype === 'cgroup2' && mnt) return mnt;
  }
  throw new Error('no cgroup2 mount in /proc/mounts');
}

/** rmdir a cgroup once its processes are gone (bounded). */
async function removeCgroup(cg: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(cg);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  rmdirSync(cg);
}
const SERVER_PORT = 8080;

export interface CaptureSuiteOptions {
  mode: 'ebpf' | 'nftables';
  /** Extra agent options per node (e.g. force the fallback with an object dir that does not exist). */
  agentOptions?: (node: string) => Partial<AgentOptions>;
  /** Node a's agent must report it fell back from eBPF, with a reason matching this. */
  expectFallback?: RegExp;
  /** How pods are wired: hand-made routed veths (default) or the real bridge / ptp CNI plugins. */
  cni?: PodWiring;
}

export function defineCaptureSuite(title: string, suite: CaptureSuiteOptions): void {
  describe.skipIf(!root)(title, () => {
    let topo: Topology;
    let dir: string;
    let pods: Omit<PodSpec, 'enrolled'>[];
    const agents = new Map<string, RunningAgent>();
    const relays = new Map<string, Relay>();
    const clients = new Map<string, PodClient>();
    const opts = (node: string, extra: Partial<AgentOptions> = {}): AgentOptions => ({
      manifests: join(dir, 'cluster'),
      statusFile: join(dir, `status-${node}.json`),
      pinDir: topo.pinDir(`n-${node}`),
      mode: suite.mode,
      drainGraceMs: 60_000,
      uncapturableAfterMs: 1500,
      ...suite.agentOptions?.(node),
      ...extra,
    });
    const status = (node: string) => readStatus(opts(node).statusFile);
    // Each pod has its own namespace: labelling it istio.io/dataplane-mode=ambient enrolls that pod.
    let namespaces: Record<string, boolean> = {};
    const setEnrolled = async (name: string, enrolled: boolean) => {
      const pod = pods.find((p) => p.name === name)!;
      namespaces = { ...namespaces, [pod.namespace]: enrolled };
      writeManifests(join(dir, 'cluster'), namespaces, pods);
      const node = pod.node;
      // Unlabelled: DRAIN while the proxy holds a connection of the pod, NONE right away otherwise.
      const want = enrolled ? ['CAPTURE'] : ['DRAIN', 'NONE'];
      await waitStatus(
        opts(node).statusFile,
        (s) => s.pods.some((p) => p.name === name && want.includes(p.state)),
        `${name} ${want.join('|')}`,
      );
    };
    const serverIp = () => topo.pod('srv').ip;
    // What a server sees when the relay on node n dialled it: the node's fabric IP, or (same node) the
    // gateway address the kernel picks as source towards the pod's veth.
    const nodeIp = (n: string) => topo.node(n).ip;
    const viaNode = (n: string) => [topo.node(n).ip, topo.node(n).gateway];
    const peerOf = (line: string | undefined) => line?.match(/^peer ([\d.]+):/)?.[1];
    const veth = (pod: string) => topo.pod(pod).hostVeth;
    /** Counters as of a reconcile that started after this call (they are read once per reconcile). */
    const freshCounters = async (node: string) => {
      const gen = status(node)?.generation ?? 0;
      return (await waitStatus(opts(node).statusFile, (s) => s.generation > gen + 1, `${node} resync`))
        .counters;
    };
    const steerProgId = async (dev: string): Promise<number | undefined> => {
      const out = await topo.exec(topo.node('a').ns, 'tc', ['-j', 'filter', 'show', 'dev', dev, 'ingress']);
      const filters = JSON.parse(out.stdout || '[]') as {
        options?: { prog?: { id?: number; name?: string } };
      }[];
      return filters.find((f) => f.options?.prog?.name === 'steer')?.options?.prog?.id;
    };

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'ambit-bpf-'));
      topo = await Topology.create({ cni: suite.cni ?? 'routed' });
      await topo.addNode('a');
      await topo.addNode('b');
      await topo.addPod('a', 'cli'); // enrolled from the start
      await topo.addPod('a', 'plain'); // not enrolled (labelled later)
      await topo.addPod('a', 'evil'); // tries to pose as cli
      await topo.addPod('b', 'srv');
      pods = [
        { name: 'cli', namespace: 'mesh', ip: topo.pod('cli').ip, node: 'a' },
        { name: 'plain', namespace: 'plain', ip: topo.pod('plain').ip, node: 'a' },
        { name: 'evil', namespace: 'evil', ip: topo.pod('evil').ip, node: 'a' },
        { name: 'srv', namespace: 'srv', ip: topo.pod('srv').ip, node: 'b' },
      ];
      namespaces = { mesh: true, plain: false, evil: false, srv: false };
      mkdirSync(join(dir, 'cluster'));
      writeManifests(join(dir, 'cluster'), namespaces, pods);
      await startEchoServer(topo, topo.pod('srv').ns, [SERVER_PORT]);
      for (const n of ['a', 'b']) relays.set(n, await Relay.start(topo, n));
      for (const n of ['a', 'b']) agents.set(n, await startAgent(topo, n, opts(n)));
      await waitStatus(
        opts('a').statusFile,
        (s) => s.pods.filter((p) => p.dev).length === 3,
        'three pods programmed on a',
      );
      for (const p of ['cli', 'plain', 'evil']) clients.set(p, await PodClient.start(topo, topo.pod(p).ns));
    }, 60_000);

    afterAll(async () => {
      try {
        for (const a of agents.values()) await stopAgent(a);
        for (const n of ['a', 'b']) if (topo) await teardownAgent(topo, n, opts(n)).catch(() => undefined);
      } finally {
        await topo?.teardown();
        if (dir) rmSync(dir, { recursive: true, force: true });
      }
    });

    it(`runs in ${suite.mode} mode and programs every pod of its node`, () => {
      const s = status('a')!;
      expect(s.mode).toBe(suite.mode);
      const pods = ['cli', 'evil', 'plain'].map(veth);
      // eBPF also hooks the bridge, where a bridged pod's frames enter the IP stack.
      const bridge = topo.cni === 'bridge' ? ['cni0'] : [];
      expect(s.devices).toEqual((suite.mode === 'ebpf' ? ['eth0', ...bridge, ...pods] : pods).sort());
      // The host side was found from the pod (its eth0's peer), also on a bridge where no /32 route exists.
      expect(s.pods.find((p) => p.name === 'cli')?.dev).toBe(veth('cli'));
      if (topo.cni === 'bridge') expect(s.pods.find((p) => p.name === 'cli')?.bridge).toBe('cni0');
      expect(s.pods.find((p) => p.name === 'cli')?.state).toBe('CAPTURE');
      if (suite.expectFallback) expect(s.fallbackReason).toMatch(suite.expectFallback);
      else expect(s.fallbackReason).toBeUndefined();
    });

    it("captures an enrolled pod's unmodified client into the proxy on its way to another node", async () => {
      const r = await clients.get('cli')!.whoami(serverIp(), SERVER_PORT);
      expect(r.ok, r.error).toBe(true);
      // The server's peer is node a (the relay's upstream), not the pod: the connection went via the proxy.
      expect(peerOf(r.line)).toBe(nodeIp('a'));
      const accepted = relays.get('a')!.acceptedFor(`${serverIp()}:${SERVER_PORT}`);
      expect(accepted.map((e) => [e.port, e.src.split(':')[0]])).toContainEqual([15001, topo.pod('cli').ip]);
      // Nothing of the enrolled pod left the node around the proxy.
      expect((await freshCounters('a')).capture_bypass).toBe(0);
    });

    it('captures an enrolled pod talking to a pod on the same node (a bridge would switch it at L2)', async () => {
      await startEchoServer(topo, topo.pod('plain').ns, [SERVER_PORT]);
      const r = await clients.get('cli')!.whoami(topo.pod('plain').ip, SERVER_PORT);
      expect(r.ok, r.error).toBe(true);
      // The relay dialled plain for cli: plain's peer is not cli's own socket but the relay's.
      const accepted = relays.get('a')!.acceptedFor(`${topo.pod('plain').ip}:${SERVER_PORT}`);
      expect(accepted.map((e) => [e.port, e.src.split(':')[0]])).toContainEqual([15001, topo.pod('cli').ip]);
      expect((await freshCounters('a')).capture_bypass).toBe(0);
    });

    it("leaves a non-enrolled pod's own HBONE port alone (a waypoint listens on 15008)", async () => {
      // The proxy's 0.0.0.0:15008 listener must not take connections meant for a pod on that port.
      await startEchoServer(topo, topo.pod('evil').ns, [15008]);
      const srvClient = await PodClient.start(topo, topo.pod('srv').ns);
      clients.set('srv', srvClient);
      const before = relays.get('a')!.events.length;
      const r = await srvClient.whoami(topo.pod('evil').ip, 15008);
      expect(r.ok, r.error).toBe(true);
      expect(peerOf(r.line)).toBe(topo.pod('srv').ip);
      expect(relays.get('a')!.events.length).toBe(before);
    });

    it('lets the same client in a non-enrolled namespace go direct', async () => {
      const before = relays.get('a')!.events.length;
      const r = await clients.get('plain')!.whoami(serverIp(), SERVER_PORT);
      expect(r.ok, r.error).toBe(true);
      expect(peerOf(r.line)).toBe(topo.pod('plain').ip);
      expect(relays.get('a')!.events.length).toBe(before);
    });

    it('gives the proxy the ClusterIP as original destination despite a kube-proxy DNAT rule', async () => {
      // kube-proxy's shape in node a: DNAT the VIP in prerouting (pods) and output (the node itself).
      const vip = '10.96.0.10';
      const dnat = `ip daddr ${vip} tcp dport 80 dnat to ${serverIp()}:${SERVER_PORT}`;
      await topo.exec(topo.node('a').ns, 'nft', ['-f', '-'], {
        input: `table ip kube {\n chain pre { type nat hook prerouting priority -100; ${dnat}; }\n chain out { type nat hook output priority -100; ${dnat}; }\n}\n`,
      });
      // The node needs a route for the service range before output NAT (real nodes have a default route).
      await topo.exec(topo.node('a').ns, 'ip', ['route', 'add', '10.96.0.0/12', 'via', nodeIp('b')]);
      try {
        const r = await clients.get('cli')!.whoami(vip, 80);
        expect(r.ok, r.error).toBe(true);
        expect(peerOf(r.line)).toBe(nodeIp('a'));
        // tc runs before netfilter: without the agent's notrack rule the SYN would be DNATed after
        // being assigned and the flow would hang (docs/capture.md §1).
        expect(relays.get('a')!.acceptedFor(`${vip}:80`).length).toBeGreaterThan(0);
        // A non-enrolled pod still goes through kube-proxy's DNAT, direct to the server.
        const direct = await clients.get('plain')!.whoami(vip, 80);
        expect(peerOf(direct.line)).toBe(topo.pod('plain').ip);
      } finally {
        await topo.exec(topo.node('a').ns, 'nft', ['delete', 'table', 'ip', 'kube']);
        await topo.exec(topo.node('a').ns, 'ip', ['route', 'del', '10.96.0.0/12']);
      }
    });

    it('captures inbound connections to an enrolled pod on its node (15006)', async () => {
      await setEnrolled('srv', true);
      try {
        const r = await clients.get('plain')!.whoami(serverIp(), SERVER_PORT);
        expect(r.ok, r.error).toBe(true);
        expect(viaNode('b')).toContain(peerOf(r.line));
        const inbound = relays.get('b')!.acceptedFor(`${serverIp()}:${SERVER_PORT}`);
        // The inbound listener sees the real client as its peer (no SNAT on the way in).
        expect(inbound.map((e) => [e.port, e.src.split(':')[0]])).toContainEqual([
          15006,
          topo.pod('plain').ip,
        ]);
      } finally {
        await setEnrolled('srv', false);
      }
    });

    it('labelling captures the next connection, an earlier one keeps working; unlabelling drains', async () => {
      const plain = clients.get('plain')!;
      const early = await plain.connect(serverIp(), SERVER_PORT);
      expect(early.ok, early.error).toBe(true);
      expect(peerOf((await plain.send(early.conn!, 'whoami')).line)).toBe(topo.pod('plain').ip);

      expect((await freshCounters('a')).capture_bypass).toBe(0);
      await setEnrolled('plain', true);
      const captured = await plain.connect(serverIp(), SERVER_PORT);
      expect(captured.ok, captured.error).toBe(true);
      expect(peerOf((await plain.send(captured.conn!, 'whoami')).line)).toBe(nodeIp('a'));
      // The connection opened before enrollment still flows, still direct — and the self-check sees
      // an enrolled pod's packets leave outside the proxy (the bypass counter rises).
      expect((await plain.send(early.conn!, 'still-here')).line).toBe('still-here');
      expect((await freshCounters('a')).capture_bypass).toBeGreaterThan(0);

      await setEnrolled('plain', false);
      expect(status('a')!.pods.find((p) => p.name === 'plain')?.state).toBe('DRAIN');
      // Draining: the proxied connection keeps working, new ones go direct.
      expect((await plain.send(captured.conn!, 'proxied-still-here')).line).toBe('proxied-still-here');
      const after = await plain.whoami(serverIp(), SERVER_PORT);
      expect(peerOf(after.line)).toBe(topo.pod('plain').ip);
      expect((await plain.send(early.conn!, 'early-still-here')).line).toBe('early-still-here');

      // Once the proxied connection closes, the drain ends without waiting for the grace period.
      await plain.close(captured.conn!);
      await plain.close(early.conn!);
      await waitStatus(
        opts('a').statusFile,
        (s) => s.pods.some((p) => p.name === 'plain' && p.state === 'NONE'),
        'plain NONE',
      );
    });

    it('captures a pod of an enrolled namespace from its very first connection (no bypass at pod start)', async () => {
      // The API server knows the pod (and its namespace is enrolled) when the CNI creates its veth;
      // the agent programs it from the link/route notification, before the app runs.
      const ip = '10.244.1.50';
      pods = [...pods, { name: 'late', namespace: 'mesh', ip, node: 'a' }];
      writeManifests(join(dir, 'cluster'), namespaces, pods);
      await waitStatus(
        opts('a').statusFile,
        (s) => s.pods.some((p) => p.name === 'late' && p.pending !== undefined),
        'late pending',
      );
      await topo.addPod('a', 'late', { ip });
      await waitStatus(
        opts('a').statusFile,
        (s) => s.pods.some((p) => p.name === 'late' && p.state === 'CAPTURE' && p.dev === veth('late')),
        'late programmed',
        15_000,
      );
      const client = await PodClient.start(topo, topo.pod('late').ns);
      clients.set('late', client);
      const first = await client.whoami(serverIp(), SERVER_PORT);
      expect(first.ok, first.error).toBe(true);
      expect(peerOf(first.line)).toBe(nodeIp('a'));
      expect(relays.get('a')!.events.some((e) => e.src.startsWith(`${ip}:`))).toBe(true);
    });

    it('forgets a deleted pod: its entry and its veth hook go, the other pods stay', async () => {
      pods = pods.filter((p) => p.name !== 'late');
      writeManifests(join(dir, 'cluster'), namespaces, pods);
      const lateClient = clients.get('late')!;
      clients.delete('late');
      const lateVeth = veth('late');
      await deletePod(topo, 'late', [lateClient.child]);
      const s = await waitStatus(
        opts('a').statusFile,
        (st) => !st.pods.some((p) => p.name === 'late') && !st.devices.includes(lateVeth),
        'late gone',
      );
      expect(s.pods.find((p) => p.name === 'cli')?.state).toBe('CAPTURE');
      expect(s.unknownPodVeths ?? []).toEqual([]);
    });

    it('holds the connections of a pod the mesh state does not know yet, then captures it once enrolled', async () => {
      // The CNI made the veth and the app started before the agent learned of the pod (istio#48286):
      // its SYNs are dropped (the client retries) instead of leaving around the mesh.
      const ip = '10.244.1.60';
      await topo.addPod('a', 'early', { ip });
      await waitStatus(
        opts('a').statusFile,
        (s) => (s.unknownPodVeths ?? []).some((u) => u.dev === veth('early') && u.ip === ip),
        'early held',
      );
      const client = await PodClient.start(topo, topo.pod('early').ns);
      clients.set('early', client);
      const held = await client.connect(serverIp(), SERVER_PORT, { timeoutMs: 1200 });
      expect(held.ok).toBe(false);
      await waitStatus(opts('a').statusFile, (s) => (s.counters.held_unknown_pod ?? 0) > 0, 'held counted');
      pods = [...pods, { name: 'early', namespace: 'mesh', ip, node: 'a' }];
      writeManifests(join(dir, 'cluster'), namespaces, pods);
      await waitStatus(
        opts('a').statusFile,
        (s) =>
          s.pods.some((p) => p.name === 'early' && p.state === 'CAPTURE') &&
          !(s.unknownPodVeths ?? []).length,
        'early CAPTURE',
      );
      const r = await client.whoami(serverIp(), SERVER_PORT);
      expect(r.ok, r.error).toBe(true);
      expect(peerOf(r.line)).toBe(nodeIp('a'));
    });

    it('refuses and reports an enrolled pod it cannot capture (no veth leads to its netns)', async () => {
      // The pod's netns is not pinned under /var/run/netns (a runtime handing the CNI /proc/<pid>/ns/net):
      // the agent cannot follow any veth to the pod, so it must not let the pod's traffic around the mesh.
      const ip = '10.244.1.70';
      pods = [...pods, { name: 'ghost', namespace: 'mesh', ip, node: 'a' }];
      writeManifests(join(dir, 'cluster'), namespaces, pods);
      await topo.addPod('a', 'ghost', { ip, unnamed: true });
      const client = await PodClient.start(topo, topo.pod('ghost').ns);
      try {
        const s = await waitStatus(
          opts('a').statusFile,
          (st) => st.pods.some((p) => p.name === 'ghost' && p.uncapturable),
          'ghost uncapturable',
          15_000,
        );
        expect(s.pods.find((p) => p.name === 'ghost')?.uncapturable).toMatch(/cannot capture.*refused/);
        const before = relays.get('a')!.events.length;
        const r = await client.connect(serverIp(), SERVER_PORT, { timeoutMs: 3000 });
        expect(r.ok).toBe(false);
        expect(r.error).toBe('ECONNREFUSED');
        expect(relays.get('a')!.events.length).toBe(before);
        // Reported: a log line naming the pod and the reason, and the metric.
        expect(agents.get('a')!.logs()).toMatch(
          /"pod":"mesh\/ghost".*"reason":"cannot capture[^"]*".*pod cannot be captured/,
        );
        const metrics = await topo.exec(topo.node('a').ns, 'curl', [
          '-sS',
          '--max-time',
          '5',
          'http://127.0.0.1:15014/metrics',
        ]);
        expect(metrics.stdout).toMatch(/^ambit_capture_uncapturable_pods\{node="a"\} 1$/m);
        expect(metrics.stdout).toMatch(/^ambit_capture_bypass_packets_total\{node="a"\} \d+$/m);
      } finally {
        pods = pods.filter((p) => p.name !== 'ghost');
        writeManifests(join(dir, 'cluster'), namespaces, pods);
        await deletePod(topo, 'ghost', [client.child]);
      }
      // Once the pod is gone nothing stays refused.
      await waitStatus(opts('a').statusFile, (st) => !st.pods.some((p) => p.name === 'ghost'), 'ghost gone');
    }, 60_000);

    // ptp: the plain pod's IPv6 is refused on the ptp-made veth (not investigated yet); eBPF and nft
    // drop the enrolled pod's IPv6 the same way on every wiring.
    it.skipIf(suite.cni === 'ptp')(
      "drops an enrolled pod's IPv6 TCP (not captured yet: fail closed) and leaves other pods' alone",
      async () => {
        const a = topo.node('a');
        const v6 = { node: 'fd00:ff::1', cli: 'fd00:1::2', plain: 'fd00:1::3' } as const;
        await topo.exec(a.ns, 'ip', ['-6', 'addr', 'add', `${v6.node}/128`, 'dev', 'lo']);
        for (const p of ['cli', 'plain'] as const) {
          const pod = topo.pod(p);
          await topo.exec(pod.ns, 'ip', ['-6', 'addr', 'add', `${v6[p]}/128`, 'dev', 'eth0', 'nodad']);
          // The node reaches the pod through what its IP stack sees: the veth, or the bridge it is a port of.
          const l3 = topo.cni === 'bridge' ? 'cni0' : pod.hostVeth;
          await topo.exec(a.ns, 'ip', ['-6', 'route', 'replace', `${v6[p]}/128`, 'dev', l3]);
          // The pod's IPv6 default route points at the host veth's link-local address (bounded wait for it).
          let ll = '';
          for (let i = 0; i < 60 && !ll; i++) {
            const out = await topo.exec(a.ns, 'ip', ['-6', '-o', 'addr', 'show', 'dev', l3, 'scope', 'link']);
            ll = out.stdout.match(/inet6 (fe80::[0-9a-f:]+)\//)?.[1] ?? '';
            if (!ll) await new Promise((r) => setTimeout(r, 50));
          }
          expect(ll, `link-local address on ${pod.hostVeth}`).not.toBe('');
          await topo.exec(pod.ns, 'ip', ['-6', 'route', 'add', 'default', 'via', ll, 'dev', 'eth0']);
        }
        topo.spawnIn(a.ns, process.execPath, [
          '-e',
          "require('net').createServer((s) => { s.on('error', () => {}); s.end('hi\\n'); }).listen(8081, '::')",
        ]);
        // Not enrolled: IPv6 works (bounded retries while the server starts).
        let direct = await clients.get('plain')!.connect(v6.node, 8081, { timeoutMs: 1000 });
        for (let i = 0; i < 20 && !direct.ok; i++) {
          await new Promise((r) => setTimeout(r, 100));
          direct = await clients.get('plain')!.connect(v6.node, 8081, { timeoutMs: 1000 });
        }
        expect(direct.ok, direct.error).toBe(true);
        const before = status('a')!.counters.ipv6_dropped ?? 0;
        const r = await clients.get('cli')!.connect(v6.node, 8081, { timeoutMs: 1200 });
        expect(r.ok).toBe(false);
        await waitStatus(
          opts('a').statusFile,
          (s) => (s.counters.ipv6_dropped ?? 0) > before,
          'ipv6_dropped counted',
        );
      },
    );

    it("drops a pod sending with another pod's source IP and counts it", async () => {
      const evil = topo.pod('evil');
      await topo.exec(evil.ns, 'ip', ['addr', 'add', `${topo.pod('cli').ip}/32`, 'dev', 'eth0']);
      const before = status('a')!.counters.spoofed ?? 0;
      const r = await clients.get('evil')!.connect(serverIp(), SERVER_PORT, {
        localAddress: topo.pod('cli').ip,
        timeoutMs: 1500,
      });
      expect(r.ok).toBe(false);
      // Counters are refreshed on every resync (2 s).
      await waitStatus(
        opts('a').statusFile,
        (s) => (s.counters.spoofed ?? 0) > before,
        'spoofed counter increment',
      );
      // Its own address still works (not enrolled: direct).
      const own = await clients.get('evil')!.whoami(serverIp(), SERVER_PORT);
      expect(peerOf(own.line)).toBe(evil.ip);
    });

    it.skipIf(suite.mode !== 'ebpf')(
      'load-balances a ClusterIP at connect() from the service map for a pod outside the mesh (no kube-proxy)',
      async () => {
        const cg = join(cgroup2Root(), `${topo.prefix}-svc`);
        mkdirSync(cg);
        let client: PodClient | undefined;
        try {
          await stopAgent(agents.get('a')!);
          agents.set('a', await startAgent(topo, 'a', opts('a', { serviceLbCgroups: [cg] })));
          const svc = {
            name: 'srv',
            namespace: 'srv',
            clusterIP: '10.96.0.20',
            port: 80,
            targetPort: SERVER_PORT,
            app: 'srv',
          };
          writeManifests(join(dir, 'cluster'), namespaces, pods, [svc]);
          await waitStatus(
            opts('a').statusFile,
            (s) => (s.serviceLb?.services ?? 0) >= 1,
            'service programmed',
          );
          client = await PodClient.start(topo, topo.pod('plain').ns, { cgroup: cg });
          // No DNAT rule anywhere: only svc_connect4 can turn the VIP into srv's address.
          const r = await client.whoami(svc.clusterIP, svc.port);
          expect(r.ok, r.error).toBe(true);
          expect(peerOf(r.line)).toBe(topo.pod('plain').ip);
          expect(r.line).toContain(`local ${serverIp()}:${SERVER_PORT}`);
          // The same pod's processes outside that cgroup are not translated (and there is no route).
          const outside = await clients.get('plain')!.connect(svc.clusterIP, svc.port, { timeoutMs: 800 });
          expect(outside.ok).toBe(false);
        } finally {
          client?.child.kill('SIGKILL');
          writeManifests(join(dir, 'cluster'), namespaces, pods);
          await stopAgent(agents.get('a')!);
          await teardownAgent(topo, 'a', opts('a', { serviceLbCgroups: [cg] }));
          // Before the restart: a restart that fails must not leave the cgroup behind.
          await removeCgroup(cg);
          agents.set('a', await startAgent(topo, 'a', opts('a')));
        }
      },
      // Three agent restarts (with and without the service LB) and a teardown.
      90_000,
    );

    it('fails closed while the proxy is down, and fails open only with --fail-open', async () => {
      await relays.get('a')!.stop();
      try {
        const r = await clients.get('cli')!.connect(serverIp(), SERVER_PORT, { timeoutMs: 1500 });
        expect(r.ok).toBe(false);
        // eBPF drops the SYN (the client retries, then times out); nftables rejects with a TCP reset.
        expect(r.error).toBe(suite.mode === 'ebpf' ? 'ETIMEDOUT' : 'ECONNREFUSED');
        await waitStatus(
          opts('a').statusFile,
          (s) => (s.counters.proxy_missing ?? 0) > 0,
          'proxy_missing counted',
        );

        await stopAgent(agents.get('a')!);
        agents.set('a', await startAgent(topo, 'a', opts('a', { failOpen: true })));
        expect(status('a')!.failOpen).toBe(true);
        const open = await clients.get('cli')!.whoami(serverIp(), SERVER_PORT);
        expect(open.ok, open.error).toBe(true);
        expect(peerOf(open.line)).toBe(topo.pod('cli').ip);
      } finally {
        await stopAgent(agents.get('a')!);
        agents.set('a', await startAgent(topo, 'a', opts('a')));
        relays.set('a', await Relay.start(topo, 'a'));
      }
      const back = await clients.get('cli')!.whoami(serverIp(), SERVER_PORT);
      expect(peerOf(back.line)).toBe(nodeIp('a'));
    }, 60_000);

    it('killing and restarting the agent changes nothing for live connections', async () => {
      const cli = clients.get('cli')!;
      const live = await cli.connect(serverIp(), SERVER_PORT);
      expect(live.ok, live.error).toBe(true);
      expect(peerOf((await cli.send(live.conn!, 'whoami')).line)).toBe(nodeIp('a'));
      const oldPid = status('a')!.pid;
      await stopAgent(agents.get('a')!, 'SIGKILL');
      expect((await cli.send(live.conn!, 'while-dead')).line).toBe('while-dead');
      const fresh = await cli.whoami(serverIp(), SERVER_PORT);
      expect(peerOf(fresh.line)).toBe(nodeIp('a')); // capture is a kernel object: it outlives the agent
      const progBefore = await steerProgId(veth('cli'));
      agents.set('a', await startAgent(topo, 'a', opts('a')));
      expect(status('a')!.pid).not.toBe(oldPid);
      if (suite.mode === 'ebpf') {
        // Each start loads a new program generation and swaps it in with `tc filter replace`
        // (the upgrade path) while the pinned maps, and so the live flow, stay.
        const progAfter = await steerProgId(veth('cli'));
        expect(progAfter).toBeDefined();
        expect(progAfter).not.toBe(progBefore);
      }
      expect((await cli.send(live.conn!, 'after-restart')).line).toBe('after-restart');
      expect(status('a')!.pods.find((p) => p.name === 'cli')?.state).toBe('CAPTURE');
      await cli.close(live.conn!);
    }, 60_000);

    it('teardown removes filters, rules, tables and pins, and the topology leaves no residue', async () => {
      const a = topo.node('a');
      await stopAgent(agents.get('a')!);
      await teardownAgent(topo, 'a', opts('a'));
      agents.delete('a');
      const bridge = topo.cni === 'bridge' ? ['cni0'] : [];
      for (const dev of ['eth0', ...bridge, ...['cli', 'plain', 'evil', 'early'].map(veth)]) {
        const f = await topo.exec(a.ns, 'tc', ['-j', 'filter', 'show', 'dev', dev, 'ingress']);
        expect(f.stdout).not.toContain('steer');
      }
      expect((await topo.exec(a.ns, 'ip', ['rule', 'show'])).stdout).not.toContain('fwmark');
      expect((await topo.exec(a.ns, 'nft', ['list', 'tables'])).stdout.trim()).toBe('');
      // Without steering the enrolled pod's traffic now goes direct.
      const r = await clients.get('cli')!.whoami(serverIp(), SERVER_PORT);
      expect(peerOf(r.line)).toBe(topo.pod('cli').ip);

      for (const c of clients.values()) c.child.kill();
      await stopAgent(agents.get('b')!);
      await teardownAgent(topo, 'b', opts('b'));
      agents.delete('b');
      await topo.teardown();
      await assertNoResidue(topo.prefix);
    }, 60_000);
  });
}

// The harness itself: pods on two nodes reach each other through the node routes, and teardown
// leaves nothing behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PodClient, startEchoServer } from './processes.js';
import { assertNoResidue, Topology } from './topology.js';

const root = process.getuid?.() === 0;

describe.skipIf(!root)('netns topology harness', () => {
  let topo: Topology;
  beforeAll(async () => {
    topo = await Topology.create();
    await topo.addNode('a');
    await topo.addNode('b');
    await topo.addPod('a', 'client');
    await topo.addPod('b', 'server');
  });
  afterAll(async () => {
    await topo?.teardown();
  });

  it('routes a pod on node a to a pod on node b and the server sees the pod IP', async () => {
    await startEchoServer(topo, topo.pod('server').ns, [8080]);
    const client = await PodClient.start(topo, topo.pod('client').ns);
    const r = await client.whoami(topo.pod('server').ip, 8080);
    expect(r.ok).toBe(true);
    expect(r.line).toMatch(new RegExp(`^peer ${topo.pod('client').ip.replaceAll('.', '\\.')}:\\d+ `));
  });

  it('sets ip_early_demux=0 in the node netns', async () => {
    const r = await topo.exec(topo.node('a').ns, 'sysctl', ['-n', 'net.ipv4.ip_early_demux']);
    expect(r.stdout.trim()).toBe('0');
  });

  it('teardown removes every namespace and pin, and is idempotent', async () => {
    const t = await Topology.create();
    await t.addNode('x');
    await t.addPod('x', 'p');
    t.pinDir('scratch');
    await t.teardown();
    await t.teardown();
    await expect(assertNoResidue(t.prefix)).resolves.toBeUndefined();
  });
});

// Pods wired by the real CNI plugins (bridge + host-local, ptp + host-local), invoked as a runtime does.
describe.skipIf(!root).each(['bridge', 'ptp'] as const)('netns topology with the %s CNI plugin', (cni) => {
  let topo: Topology;
  beforeAll(async () => {
    topo = await Topology.create({ cni });
    await topo.addNode('a');
    await topo.addNode('b');
    await topo.addPod('a', 'client');
    await topo.addPod('a', 'near');
    await topo.addPod('b', 'server', { ip: '10.244.2.77' });
  });
  afterAll(async () => {
    await topo?.teardown();
  });

  it('gives each pod an address from its node CIDR (a requested one when asked) and a host veth that is its eth0 peer', async () => {
    expect(topo.pod('client').ip).toMatch(/^10\.244\.1\.\d+$/);
    expect(topo.pod('server').ip).toBe('10.244.2.77');
    const pod = topo.pod('client');
    const inPod = JSON.parse((await topo.exec(pod.ns, 'ip', ['-j', 'link', 'show', 'eth0'])).stdout) as {
      link_index: number;
    }[];
    const host = JSON.parse(
      (await topo.exec(topo.node('a').ns, 'ip', ['-j', '-d', 'link', 'show', pod.hostVeth])).stdout,
    ) as { ifindex: number; master?: string; linkinfo?: { info_kind?: string } }[];
    expect(host[0]?.ifindex).toBe(inPod[0]?.link_index);
    expect(host[0]?.linkinfo?.info_kind).toBe('veth');
    if (cni === 'bridge') expect(host[0]?.master).toBe('cni0');
    else expect(host[0]?.master).toBeUndefined();
  });

  it('routes pods across nodes and on the same node, and the server sees the pod IP', async () => {
    await startEchoServer(topo, topo.pod('server').ns, [8080]);
    await startEchoServer(topo, topo.pod('near').ns, [8080]);
    const client = await PodClient.start(topo, topo.pod('client').ns);
    for (const dst of ['server', 'near']) {
      const r = await client.whoami(topo.pod(dst).ip, 8080);
      expect(r.ok, r.error).toBe(true);
      expect(r.line).toMatch(new RegExp(`^peer ${topo.pod('client').ip.replaceAll('.', '\\.')}:\\d+ `));
    }
  });

  it('CNI DEL removes the host veth; teardown leaves no residue', async () => {
    const veth = topo.pod('near').hostVeth;
    await topo.removePod('near');
    await expect(topo.exec(topo.node('a').ns, 'ip', ['link', 'show', veth])).rejects.toThrow();
    const prefix = topo.prefix;
    await topo.teardown();
    await assertNoResidue(prefix);
  });
});

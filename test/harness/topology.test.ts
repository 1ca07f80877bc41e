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

// The shared start of every end-to-end "world" (ztunnel, waypoint, Kubernetes suites): a fresh
// topology named `<prefix><random>`, the world built on it, and everything torn down again if the
// build fails, so a failed start leaves no netns, pins or processes behind.
import { randomBytes } from 'node:crypto';
import { type PodWiring, Topology } from './topology.js';

export async function createWorld<W extends { teardown(): Promise<void> }>(
  prefix: string,
  make: (topo: Topology) => W,
  build: (world: W) => Promise<void>,
  opts: { cni?: PodWiring } = {},
): Promise<W> {
  const topo = await Topology.create({
    prefix: `${prefix}${randomBytes(2).toString('hex')}`,
    ...(opts.cni ? { cni: opts.cni } : {}),
  });
  let world: W;
  try {
    world = make(topo);
  } catch (err) {
    await topo.teardown();
    throw err;
  }
  try {
    await build(world);
  } catch (err) {
    await world.teardown();
    throw err;
  }
  return world;
}

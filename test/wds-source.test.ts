// Ambit's WDS client (core/sources/wds.ts) against the discovery tier over real gRPC + TLS on loopback:
// the node's state equals what the discovery tier's sources hold, survives the tier going away, and
// catches up from deltas when it returns.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaServer } from '../ca/server/ca-server.js';
import { WdsSource } from '../core/sources/wds.js';
import type { MeshState, StateChange } from '../core/state/state.js';
import { DENY_BATCH_YAML, DiscoveryTier, WDS_TOKEN } from './discovery-tier.js';

const logger = pino({ level: 'silent' });
let tier: DiscoveryTier;
let server: CaServer | undefined;

function client(roots: string): WdsSource {
  return new WdsSource({
    address: `127.0.0.1:${tier.port}`,
    rootsPem: () => roots,
    token: () => WDS_TOKEN,
    nodeId: 'ztunnel~127.0.0.1~ztunnel-node1.istio-system~istio-system.svc.cluster.local',
    initialBackoffMs: 50,
    maxBackoffMs: 200,
    syncTimeoutMs: 10_000,
    logger,
  });
}

/** What a ztunnel reads from the state; compile notes stay in the discovery tier (explain runs there). */
function dataPlaneView(state: MeshState) {
  const s = state.snapshot();
  return {
    workloads: s.workloads,
    services: s.services.map(({ ports, ...rest }) => ({
      ...rest,
      ports: ports.map(({ name: _n, ...p }) => p),
    })),
    authorizations: s.authorizations.map(({ notes: _notes, rules, ...rest }) => ({
      ...rest,
      notes: [],
      rules: rules.map(({ sourceRule: _s, ...r }) => r),
    })),
    waypoints: s.waypoints,
  };
}

async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("Ambit's WDS client", () => {
  beforeAll(async () => {
    tier = await DiscoveryTier.start('ambit-wds-src-');
    server = tier.server;
  });

  afterAll(async () => {
    await tier?.close();
  });

  it('holds the same workloads, services, policies and waypoints as the discovery tier', async () => {
    const wds = client(server!.rootsPem());
    try {
      await wds.start();
      expect(wds.state.workloads().length).toBeGreaterThan(5);
      expect(wds.state.waypoints()).toHaveLength(1);
      expect(dataPlaneView(wds.state)).toEqual(dataPlaneView(tier.source.state));
      // The questions the data path asks get the same answers.
      const frontend = wds.state.workloadByIp('10.244.1.10')!;
      expect(frontend.labels.app).toBe('frontend');
      expect(wds.state.serviceByVip('10.96.0.10', 80)?.service.name).toBe('web');
      const catalog =
        wds.state.workloadByIp('10.244.2.20') ?? wds.state.workloads().find((w) => w.name === 'catalog')!;
      expect(wds.state.policiesFor(catalog).map((p) => p.name)).toEqual(
        tier.source.state.policiesFor(tier.source.state.workloadByUid(catalog.uid)!).map((p) => p.name),
      );
      expect(wds.state.waypointByAddress('10.244.1.30')?.name).toBe('waypoint');
    } finally {
      await wds.stop();
    }
  });

  it('keeps its state while discovery is down and resumes from deltas when it returns', async () => {
    const roots = server!.rootsPem();
    const wds = client(roots);
    try {
      await wds.start();
      const before = wds.state.workloads().length;
      await server!.close(100);
      server = undefined;
      await until(() => !wds.connected, 'notice the outage');
      expect(wds.state.workloads()).toHaveLength(before);
      writeFileSync(join(tier.manifests, 'while-down.yaml'), DENY_BATCH_YAML);
      await until(
        () => tier.source.state.authorizationByKey('shop/deny-batch') !== undefined,
        'source sees the file',
      );
      expect(wds.state.authorizationByKey('shop/deny-batch')).toBeUndefined();
      const changes: StateChange[] = [];
      const off = wds.state.onChange((c) => changes.push(...c));
      server = await tier.startServer();
      await until(
        () => wds.state.authorizationByKey('shop/deny-batch') !== undefined,
        'policy after reconnect',
      );
      off();
      // Only the policy came across: the client sent the versions it held, nothing else was re-sent.
      expect(changes).toEqual([{ kind: 'authorization', key: 'shop/deny-batch', op: 'upsert' }]);
      expect(wds.connections).toBeGreaterThanOrEqual(2);
      expect(dataPlaneView(wds.state)).toEqual(dataPlaneView(tier.source.state));
      expect(tier.discovery.service.streamCount).toBe(1);
    } finally {
      await wds.stop();
    }
  });

  it('moves to another replica fed by the same sources without being re-sent anything', async () => {
    const wds = client(server!.rootsPem());
    try {
      await wds.start();
      const changes: StateChange[] = [];
      const off = wds.state.onChange((c) => changes.push(...c));
      // Replica 2: its own manifest source and discovery tier, same manifests, same port (a Service).
      await server!.close(100);
      await tier.startReplica('replica-2');
      const reconnects = wds.connections;
      server = await tier.startServer();
      await until(() => wds.connections > reconnects && wds.connected, 'reconnect to replica 2');
      await new Promise((r) => setTimeout(r, 300));
      off();
      expect(changes).toEqual([]);
      expect(dataPlaneView(wds.state)).toEqual(dataPlaneView(tier.source.state));
    } finally {
      await wds.stop();
    }
  });

  it('fails start() with a clear error when no discovery tier answers in time', async () => {
    const wds = new WdsSource({
      address: '127.0.0.1:1',
      rootsPem: () => server!.rootsPem(),
      token: () => WDS_TOKEN,
      nodeId: 'ztunnel~x',
      syncTimeoutMs: 500,
      initialBackoffMs: 50,
      logger,
    });
    await expect(wds.start()).rejects.toThrow(/discovery 127\.0\.0\.1:1: no initial state within 500 ms/);
  });
});

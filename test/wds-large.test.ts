// A cluster whose initial WDS answer is larger than gRPC's default 4 MiB receive limit: the ztunnel's
// WDS client must still sync (a 10k-pod cluster is already past it; the tier sends the whole initial
// state in one DeltaDiscoveryResponse).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { StaticTokenAuthenticator } from '../ca/server/auth.js';
import { CaServer } from '../ca/server/ca-server.js';
import { parseSpiffeId } from '../core/identity/spiffe.js';
import { WdsSource } from '../core/sources/wds.js';
import type { Workload } from '../core/state/model.js';
import { MeshState } from '../core/state/state.js';
import { type Discovery, createDiscovery } from '../discovery/discovery.js';

const TOKEN = 'ztunnel-large-token-0123456789abcdef';
const PODS = 16_000;
const logger = pino({ level: 'silent' });
let dir: string;
let discovery: Discovery;
let server: CaServer;

function workload(i: number): Workload {
  const name = `app-${Math.floor(i / 5)}-7d9f8b6c4-${i.toString(36).padStart(5, 'x')}`;
  const namespace = `team-${Math.floor(i / 500)}`;
  return {
    uid: `Kubernetes//v1/Pod/${namespace}/${name}`,
    name,
    namespace,
    addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`],
    node: `node-${i % 100}`,
    serviceAccount: `app-${Math.floor(i / 5)}`,
    trustDomain: 'cluster.local',
    tunnelProtocol: 'HBONE',
    services: {},
    authorizationPolicies: [],
    labels: { app: `app-${Math.floor(i / 5)}`, 'pod-template-hash': '7d9f8b6c4' },
    canonicalName: `app-${Math.floor(i / 5)}`,
    canonicalRevision: 'latest',
    workloadName: `app-${Math.floor(i / 5)}`,
    workloadType: 'DEPLOYMENT',
    status: 'HEALTHY',
    networkMode: 'STANDARD',
    nativeTunnel: false,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ambit-wds-large-'));
  const state = new MeshState();
  state.batch(() => {
    for (let i = 0; i < PODS; i++) state.upsertWorkload(workload(i));
  });
  discovery = createDiscovery(state, logger);
  const auth = new StaticTokenAuthenticator(
    new Map([
      [
        TOKEN,
        { identity: parseSpiffeId('spiffe://cluster.local/ns/istio-system/sa/ztunnel'), node: 'node-1' },
      ],
    ]),
  );
  server = await CaServer.start(
    { dir: join(dir, 'ca'), listen: '127.0.0.1:0' },
    { logger, authenticator: auth, services: (a) => [discovery.grpcService(a)] },
  );
}, 60_000);

afterAll(async () => {
  discovery?.close();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('a ztunnel syncs an initial WDS state larger than 4 MiB', async () => {
  let bytes = 0;
  for (const e of discovery.resources.table('type.googleapis.com/istio.workload.Address')?.values() ?? [])
    bytes += e.resource.value.length;
  // The answer really is past gRPC's default receive limit (4 MiB), so the test can fail.
  expect(bytes).toBeGreaterThan(4 * 1024 * 1024);
  const wds = new WdsSource({
    address: server.address,
    rootsPem: () => server.rootsPem(),
    token: () => TOKEN,
    nodeId: 'ztunnel~127.0.0.1~ztunnel-node-1.istio-system~istio-system.svc.cluster.local',
    syncTimeoutMs: 20_000,
    logger,
  });
  try {
    await wds.start();
    expect(wds.state.workloads()).toHaveLength(PODS);
    expect(wds.state.workloadByIp('10.0.48.57')?.name).toBe(workload(48 * 256 + 57).name);
  } finally {
    await wds.stop();
  }
}, 60_000);

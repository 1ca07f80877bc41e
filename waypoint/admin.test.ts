import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { selfSignedP256 } from '../test/harness/openssl.js';
import { parseSpiffeId } from '../core/identity/spiffe.js';
import type { Service, Waypoint, Workload } from '../core/state/model.js';
import { MeshState } from '../core/state/state.js';
import {
  ADMIN_ADDRESS,
  WaypointAdmin,
  type WaypointAdminSources,
  buildConfigDump,
  certificateDumpOf,
} from './admin.js';

const ID = parseSpiffeId('spiffe://cluster.local/ns/shop/sa/waypoint');
const wp: Waypoint = {
  name: 'waypoint',
  namespace: 'shop',
  waypointFor: 'all',
  trafficType: 'all',
  hostname: 'waypoint.shop.svc.cluster.local',
};
const bound = { namespace: 'shop', hostname: wp.hostname, hboneMtlsPort: 15008 };
const svc = (name: string, vip: string, waypoint?: typeof bound): Service => ({
  name,
  namespace: 'shop',
  hostname: `${name}.shop.svc.cluster.local`,
  addresses: [vip],
  ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' }],
  subjectAltNames: [],
  labels: {},
  ...(waypoint ? { waypoint } : {}),
});

function world(): MeshState {
  const state = new MeshState();
  state.upsertWaypoint(wp);
  state.upsertService(svc('cart', '10.96.0.10', bound));
  state.upsertService(svc('other', '10.96.0.11'));
  state.upsertWorkload({
    uid: 'shop/db-0',
    name: 'db-0',
    namespace: 'shop',
    addresses: ['10.244.1.9'],
    node: 'n1',
    serviceAccount: 'db',
    trustDomain: 'cluster.local',
    tunnelProtocol: 'HBONE',
    waypoint: bound,
    services: {},
    authorizationPolicies: [],
    labels: {},
    canonicalName: 'db',
    canonicalRevision: 'latest',
    workloadName: 'db',
    workloadType: 'POD',
    status: 'HEALTHY',
    networkMode: 'STANDARD',
    nativeTunnel: false,
  } as Workload);
  state.upsertRoute({
    kind: 'GRPCRoute',
    name: 'all-grpc',
    namespace: 'shop',
    parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }],
    rules: [{ backendRefs: [{ name: 'cart', port: 80 }] }],
  });
  state.upsertRoute({
    kind: 'HTTPRoute',
    name: 'other-route',
    namespace: 'shop',
    parentRefs: [{ group: '', kind: 'Service', name: 'other' }],
    rules: [{ backendRefs: [{ name: 'other', port: 80 }] }],
  });
  const policy = (
    name: string,
    namespace: string,
    targetRefs: { kind: string; group: string; name: string }[],
  ) => state.upsertL7Policy({ name, namespace, action: 'DENY', targetRefs, rules: [{}], dryRun: false });
  policy('mesh-wide', 'istio-system', [
    { kind: 'GatewayClass', group: 'gateway.networking.k8s.io', name: 'istio-waypoint' },
  ]);
  policy('cart-only', 'shop', [{ kind: 'Service', group: '', name: 'cart' }]);
  policy('other-only', 'shop', [{ kind: 'Service', group: '', name: 'other' }]);
  return state;
}

function sources(state: MeshState, quit: () => void = () => undefined): WaypointAdminSources {
  return {
    identity: ID,
    state,
    model: () => wp,
    rootNamespace: 'istio-system',
    config: { name: 'waypoint' },
    tunnels: () => ({ http1: 1, http2: 0, tcp: 0 }),
    certificates: () => [certificateDumpOf(ID, undefined, undefined)],
    ready: () => true,
    quit,
    logger: pino({ level: 'silent' }),
  };
}

let admin: WaypointAdmin | undefined;
afterEach(async () => {
  await admin?.close();
  admin = undefined;
});

describe('waypoint admin /config_dump', () => {
  it('lists bound services and workloads as authorities; routes and policies that reach them, no others', () => {
    const dump = buildConfigDump(sources(world()));
    expect(dump.identity).toBe('spiffe://cluster.local/ns/shop/sa/waypoint');
    expect(dump.bound.authorities).toEqual([
      '10.96.0.10:80',
      'cart.shop.svc.cluster.local:80',
      '10.244.1.9:*',
    ]);
    expect(dump.routes.map((r) => [r.kind, r.name, r.attachedTo])).toEqual([
      ['GRPCRoute', 'all-grpc', ['Gateway shop/waypoint']],
    ]);
    expect(dump.policies.map((p) => [p.namespace, p.name, p.appliesTo])).toEqual([
      ['istio-system', 'mesh-wide', ['every destination']],
      ['shop', 'cart-only', ['Service shop/cart']],
    ]);
  });

  it('describes certificate states as istio/ztunnel does, and a real PEM by serial and validity', () => {
    expect(certificateDumpOf(ID, undefined, undefined).state).toBe('Initializing');
    expect(
      certificateDumpOf(ID, { state: 'Unavailable', lastError: 'CA unreachable' }, undefined).state,
    ).toBe('Unavailable: CA unreachable');
    const dir = mkdtempSync(join(tmpdir(), 'wa12-cert-'));
    try {
      const pem = selfSignedP256(dir, 'test', { cn: 'test' }).cert;
      const x = new X509Certificate(pem);
      const d = certificateDumpOf(ID, { state: 'Available' }, { certChainPem: [pem], rootsPem: [pem] });
      expect(d.state).toBe('Available');
      expect(d.certChain).toHaveLength(1);
      expect(d.certChain[0]?.serialNumber).toBe(x.serialNumber.toLowerCase());
      expect(d.certChain[0]?.expirationTime).toBe(new Date(x.validTo).toISOString());
      expect(Buffer.from(d.certChain[0]?.pem ?? '', 'base64').toString()).toContain(pem.trim());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('waypoint admin server', () => {
  it('binds 127.0.0.1 only and serves config_dump, ready, and quitquitquit by POST', async () => {
    let quits = 0;
    admin = new WaypointAdmin(
      sources(world(), () => {
        quits++;
      }),
    );
    const port = await admin.listen(0);
    expect(ADMIN_ADDRESS).toBe('127.0.0.1');
    const base = `http://127.0.0.1:${port}`;
    const dump = (await (await fetch(`${base}/config_dump`)).json()) as { identity: string };
    expect(dump.identity).toBe('spiffe://cluster.local/ns/shop/sa/waypoint');
    expect(await (await fetch(`${base}/ready`)).text()).toBe('LIVE\n');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect((await fetch(`${base}/quitquitquit`)).status).toBe(405);
    expect(quits).toBe(0);
    expect((await fetch(`${base}/quitquitquit`, { method: 'POST' })).status).toBe(200);
    expect(quits).toBe(1);
  });

  it('names the address and port when it cannot listen', async () => {
    admin = new WaypointAdmin(sources(world()));
    const port = await admin.listen(0);
    const second = new WaypointAdmin(sources(world()));
    await expect(second.listen(port)).rejects.toThrow(
      new RegExp(`waypoint admin: listen 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`),
    );
  });
});

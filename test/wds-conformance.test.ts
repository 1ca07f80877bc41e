// The discovery tier as an Istio component sees it: a delta xDS client written here from the .proto
// files alone (grpc-js + proto-loader for the stream, protobufjs for the Any bodies) — not Ambit's WDS
// client — subscribes over TLS on the CA's port, decodes every resource type, and sees a change as a
// delta of only that resource, a removal as removed_resources, and on reconnect with
// initial_resource_versions only what differs.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { pino } from 'pino';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CaServer } from '../ca/server/ca-server.js';
import { DENY_BATCH_YAML, DiscoveryTier, WDS_TOKEN } from './discovery-tier.js';

const PROTO_DIR = join(import.meta.dirname, '..', 'proto');
const FILES = ['envoy/service/discovery/v3/ads.proto', 'workload.proto', 'authorization.proto'];
const TOKEN = WDS_TOKEN;
const ADDRESS = 'type.googleapis.com/istio.workload.Address';
const AUTHZ = 'type.googleapis.com/istio.security.Authorization';
const _logger = pino({ level: 'silent' });

// --- the independent client -------------------------------------------------------------------------
const pkgDef = protoLoader.loadSync(FILES, {
  includeDirs: [PROTO_DIR],
  keepCase: true,
  enums: String,
  longs: Number,
  defaults: true,
  oneofs: true,
});
// biome-ignore lint/suspicious/noExplicitAny: a loaded package is untyped by nature
const ads = (grpc.loadPackageDefinition(pkgDef) as any).envoy.service.discovery.v3.AggregatedDiscoveryService;
const root = new protobuf.Root();
root.resolvePath = (_o, t) =>
  t.startsWith('google/protobuf/') || t.startsWith('/') ? t : join(PROTO_DIR, t);
root.loadSync(FILES, { keepCase: true });
const AddressType = root.lookupType('istio.workload.Address');
const AuthorizationType = root.lookupType('istio.security.Authorization');
const StructType = root.lookupType('google.protobuf.Struct');
const asObject = { enums: String, longs: Number, defaults: true, oneofs: true };

interface Resp {
  type_url: string;
  nonce: string;
  resources: { name: string; version: string; resource: { type_url: string; value: Buffer } }[];
  removed_resources: string[];
}

class TestClient {
  readonly responses: Resp[] = [];
  readonly versions = new Map<string, Map<string, string>>([
    [ADDRESS, new Map()],
    [AUTHZ, new Map()],
  ]);
  // biome-ignore lint/suspicious/noExplicitAny: generic grpc-js client
  readonly client: any;
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js duplex call
  call: any;
  error: grpc.ServiceError | undefined;
  #waiters: (() => void)[] = [];

  constructor(address: string, roots: string, token: string | undefined, initial?: TestClient) {
    this.client = new ads(address, grpc.credentials.createSsl(Buffer.from(roots)), {
      'grpc.ssl_target_name_override': 'istiod.istio-system.svc',
    });
    const md = new grpc.Metadata();
    if (token) md.set('authorization', `Bearer ${token}`);
    this.call = this.client.DeltaAggregatedResources(md);
    this.call.on('data', (r: Resp) => {
      this.responses.push(r);
      const v = this.versions.get(r.type_url)!;
      for (const x of r.resources) v.set(x.name, x.version);
      for (const n of r.removed_resources) v.delete(n);
      this.call.write({ type_url: r.type_url, response_nonce: r.nonce });
      for (const w of this.#waiters.splice(0)) w();
    });
    this.call.on('error', (e: grpc.ServiceError) => {
      this.error = e;
      for (const w of this.#waiters.splice(0)) w();
    });
    for (const type_url of [ADDRESS, AUTHZ]) {
      this.call.write({
        node: { id: 'ztunnel~10.0.0.1~ztunnel-x.istio-system~istio-system.svc.cluster.local' },
        type_url,
        initial_resource_versions: Object.fromEntries(initial?.versions.get(type_url) ?? []),
      });
    }
  }

  /** Waits (bounded) until `pred` holds over the responses so far. */
  async until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred()) {
      if (this.error) throw new Error(`${what}: stream failed: ${this.error.details}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: not seen within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

// biome-ignore lint/suspicious/noExplicitAny: decoded protobuf objects
function decode(r: Resp['resources'][number]): any {
  const type = r.resource.type_url === ADDRESS ? AddressType : AuthorizationType;
  return type.toObject(type.decode(r.resource.value), asObject);
}

const ip = (b: Uint8Array): string => [...b].join('.');

// --- the server under test -------------------------------------------------------------------------
let tier: DiscoveryTier;
let manifests: string;
let server: CaServer;

async function settle(ms = 400): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

describe('discovery tier over Istio WDS (an independent client)', () => {
  beforeAll(async () => {
    tier = await DiscoveryTier.start('ambit-wds-', 'test-replica');
    manifests = tier.manifests;
    server = tier.server!;
  });

  afterAll(async () => {
    await tier?.close();
  });

  it('refuses a client without a valid bearer token, before sending anything', async () => {
    for (const token of [undefined, 'not-a-known-token-0123456789']) {
      const c = new TestClient(server.address, server.rootsPem(), token);
      await c.until(() => c.error !== undefined, 'refusal').catch(() => undefined);
      expect(c.error?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(c.responses).toHaveLength(0);
      c.close();
    }
  });

  it('serves every Workload, Service and Authorization, named as istiod names them', async () => {
    const c = new TestClient(server.address, server.rootsPem(), TOKEN);
    try {
      await c.until(
        () => c.versions.get(ADDRESS)!.size > 0 && c.responses.some((r) => r.type_url === AUTHZ),
        'sync',
      );
      const first = c.responses.find((r) => r.type_url === ADDRESS)!;
      const byName = new Map(first.resources.map((r) => [r.name, decode(r)]));
      expect(first.resources.every((r) => r.resource.type_url === ADDRESS)).toBe(true);

      const frontend = byName.get('Kubernetes//v1/Pod/shop/frontend').workload;
      expect(frontend.uid).toBe('Kubernetes//v1/Pod/shop/frontend');
      expect(frontend.addresses.map(ip)).toEqual(['10.244.1.10']);
      expect(frontend.node).toBe('node1');
      expect(frontend.service_account).toBe('frontend');
      expect(frontend.tunnel_protocol).toBe('HBONE');
      expect(frontend.status).toBe('HEALTHY');
      const labels = frontend.extensions.find((e: { name: string }) => e.name === 'ambit.dev/labels');
      expect(StructType.toObject(StructType.decode(labels.config.value)).fields.app.stringValue).toBe(
        'frontend',
      );

      const legacy = byName.get('Kubernetes//v1/Pod/legacy/legacy').workload;
      expect(legacy.tunnel_protocol).toBe('NONE');

      const web = byName.get('shop/web.shop.svc.cluster.local').service;
      expect(web.hostname).toBe('web.shop.svc.cluster.local');
      expect(web.addresses.map((a: { address: Buffer }) => ip(a.address))).toEqual(['10.96.0.10']);
      expect(web.ports).toEqual([{ service_port: 80, target_port: 8080, app_protocol: 'HTTP11' }]);
      expect(web.waypoint.hostname).toEqual({
        namespace: 'shop',
        hostname: 'waypoint.shop.svc.cluster.local',
      });
      expect(web.waypoint.hbone_mtls_port).toBe(15008);
      const webPod = byName.get('Kubernetes//v1/Pod/shop/web').workload;
      expect(webPod.services['shop/web.shop.svc.cluster.local'].ports).toEqual([
        { service_port: 80, target_port: 8080, app_protocol: 'UNKNOWN' },
      ]);

      const authz = c.responses.filter((r) => r.type_url === AUTHZ).flatMap((r) => r.resources);
      const catalogPolicy = decode(authz.find((r) => r.name === 'shop/catalog-from-frontend')!);
      expect(catalogPolicy.scope).toBe('WORKLOAD_SELECTOR');
      expect(catalogPolicy.action).toBe('ALLOW');
      // istio: from → one clause, to → another, AND-ed in one rule.
      const clauses = catalogPolicy.rules[0].clauses;
      expect(clauses.map((c: { matches: unknown[] }) => c.matches[0])).toEqual([
        expect.objectContaining({ destination_ports: [9090] }),
        expect.objectContaining({
          principals: [expect.objectContaining({ exact: 'cluster.local/ns/shop/sa/frontend' })],
        }),
      ]);
      const catalogPod = byName.get('Kubernetes//v1/Pod/shop/catalog').workload;
      expect(catalogPod.authorization_policies).toContain('shop/catalog-from-frontend');
    } finally {
      c.close();
    }
  });

  it('pushes a change as a delta of only that resource, and a removal as removed_resources', async () => {
    const c = new TestClient(server.address, server.rootsPem(), TOKEN);
    try {
      await c.until(
        () => c.versions.get(ADDRESS)!.size > 0 && c.responses.some((r) => r.type_url === AUTHZ),
        'sync',
      );
      const seen = c.responses.length;
      // A new DENY policy: one Authorization resource arrives, nothing else is re-sent.
      writeFileSync(join(manifests, 'deny.yaml'), DENY_BATCH_YAML);
      await c.until(
        () => c.responses.slice(seen).some((r) => r.resources.some((x) => x.name === 'shop/deny-batch')),
        'policy delta',
      );
      const delta = c.responses
        .slice(seen)
        .find((r) => r.resources.some((x) => x.name === 'shop/deny-batch'))!;
      expect(delta.type_url).toBe(AUTHZ);
      expect(delta.resources.map((r) => r.name)).toEqual(['shop/deny-batch']);
      const deny = decode(delta.resources[0]!);
      expect(deny).toMatchObject({
        name: 'deny-batch',
        namespace: 'shop',
        scope: 'NAMESPACE',
        action: 'DENY',
      });

      // The batch pod leaves: its uid arrives in removed_resources.
      const pods = readFileSync(join(manifests, 'pods.yaml'), 'utf8');
      const docs = pods.split(/^---$/m).filter((d) => !/name: batch\n/.test(d));
      writeFileSync(join(manifests, 'pods.yaml'), docs.join('---'));
      await c.until(
        () => c.responses.some((r) => r.removed_resources.includes('Kubernetes//v1/Pod/shop/batch')),
        'workload removal',
      );
      // No other workload was re-sent for it.
      const after = c.responses.slice(seen).filter((r) => r.type_url === ADDRESS);
      expect(after.flatMap((r) => r.resources.map((x) => x.name))).toEqual([]);
    } finally {
      c.close();
    }
  });

  it('sends a reconnecting client only what changed while it was away', async () => {
    const c1 = new TestClient(server.address, server.rootsPem(), TOKEN);
    await c1.until(
      () => c1.versions.get(ADDRESS)!.size > 0 && c1.responses.some((r) => r.type_url === AUTHZ),
      'sync',
    );
    await settle();
    c1.close();
    rmSync(join(manifests, 'deny.yaml'), { force: true });
    writeFileSync(
      join(manifests, 'extra.yaml'),
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: audit-nothing, namespace: legacy }
spec: { action: DENY, rules: [{ to: [{ operation: { ports: ["1"] } }] }] }
`,
    );
    await settle(600);
    const c2 = new TestClient(server.address, server.rootsPem(), TOKEN, c1);
    try {
      await c2.until(
        () => c2.responses.filter((r) => r.type_url === AUTHZ || r.type_url === ADDRESS).length >= 2,
        'resync',
      );
      const addr = c2.responses.filter((r) => r.type_url === ADDRESS);
      expect(addr.flatMap((r) => r.resources)).toEqual([]);
      const authz = c2.responses.filter((r) => r.type_url === AUTHZ);
      expect(authz.flatMap((r) => r.resources.map((x) => x.name))).toEqual(['legacy/audit-nothing']);
      expect(authz.flatMap((r) => r.removed_resources)).toEqual(['shop/deny-batch']);
    } finally {
      c2.close();
    }
  });
});

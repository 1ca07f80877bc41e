// `ambit waypoint apply|list|status|delete` as an operator types them against a cluster (the test API
// server, a test double speaking the real REST protocol), with the waypoint controller running: the
// Gateway istioctl would write, the namespace enrolled, PROGRAMMED flipping to True, and deletion.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WaypointController } from '../controllers/waypoint.js';
import { TestKubernetesApiServer } from './k8s-api-server/server.js';
import { ambit as runAmbit } from './demo-run.js';

let api: TestKubernetesApiServer;
let kc: KubeConfig;
let dir: string;
let kubeconfig: string;
let controller: WaypointController | undefined;

/** The built `ambit`, kept away from any demo on this machine. */
const ambit = (args: string[]) =>
  runAmbit(args, { timeoutMs: 30_000, env: { ...process.env, AMBIT_DEMO_DIR: join(dir, 'no-demo') } });

beforeAll(async () => {
  api = new TestKubernetesApiServer();
  await api.listen();
  kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: 'shop' } } });
  dir = mkdtempSync(join(tmpdir(), 'ambit-wp-cli-'));
  kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, api.kubeconfig());
});

afterAll(async () => {
  await controller?.stop();
  await api?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ambit waypoint against a cluster (like istioctl waypoint)', () => {
  it('apply writes the Gateway istioctl writes and enrolls the namespace; status exits 1 until Programmed', async () => {
    const k = ['--kubeconfig', kubeconfig];
    const a = await ambit(['waypoint', 'apply', '-n', 'shop', '--enroll-namespace', ...k]);
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toBe(
      '✅ waypoint shop/waypoint applied\n✅ namespace shop labeled with "istio.io/use-waypoint: waypoint"\n',
    );
    const gw = (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: 'gateway.networking.k8s.io',
      version: 'v1',
      namespace: 'shop',
      plural: 'gateways',
      name: 'waypoint',
    })) as { metadata: { labels: Record<string, string> }; spec: unknown };
    expect(gw.spec).toEqual({
      gatewayClassName: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
    });
    expect(gw.metadata.labels['istio.io/waypoint-for']).toBe('service');
    const ns = await kc.makeApiClient(CoreV1Api).readNamespace({ name: 'shop' });
    expect(ns.metadata?.labels?.['istio.io/use-waypoint']).toBe('waypoint');
    // Applying again updates in place.
    expect((await ambit(['waypoint', 'apply', '-n', 'shop', '--for', 'all', ...k])).code).toBe(0);

    const before = await ambit(['waypoint', 'status', '-n', 'shop', ...k]);
    expect(before.code).toBe(1);
    expect(before.stdout).toMatch(/shop\s+waypoint\s+Unknown\s+Programmed\s+Pending/);
    const listed = await ambit(['waypoint', 'list', '-n', 'shop', ...k]);
    expect(listed.stdout).toMatch(/^NAME\s+REVISION\s+PROGRAMMED\nwaypoint\s+default\s+False\n$/);

    controller = new WaypointController({
      kubeConfig: kc,
      image: 'ghcr.io/example/ambit:test',
      logger: pino({ level: 'silent' }),
    });
    await controller.start();
    const waited = await ambit(['waypoint', 'apply', '-n', 'shop', '--wait', '--timeout', '20s', ...k]);
    expect(waited.code, waited.stderr).toBe(0);
    expect(waited.stdout).toContain('✅ waypoint shop/waypoint programmed');
    const after = await ambit(['waypoint', 'status', '-n', 'shop', ...k]);
    expect(after.code, after.stdout).toBe(0);
    expect(after.stdout).toMatch(/shop\s+waypoint\s+True\s+Programmed\s+Programmed/);
    const all = await ambit(['waypoint', 'list', '-A', '-o', 'json', ...k]);
    expect((JSON.parse(all.stdout) as { namespace: string; programmed: string }[]).map((r) => r)).toEqual([
      expect.objectContaining({ namespace: 'shop', name: 'waypoint', programmed: 'True' }),
    ]);
  }, 60_000);

  it('delete removes by name (exit 1 for one not found) or --all; usage mistakes exit 2', async () => {
    const k = ['--kubeconfig', kubeconfig];
    expect((await ambit(['waypoint', 'apply', '-n', 'shop', '--name', 'second', ...k])).code).toBe(0);
    const miss = await ambit(['waypoint', 'delete', 'second', 'nope', '-n', 'shop', ...k]);
    expect(miss.code).toBe(1);
    expect(miss.stdout).toBe('waypoint shop/second deleted\n');
    expect(miss.stderr).toContain('waypoint shop/nope not found');
    const none = await ambit(['waypoint', 'delete', '-n', 'shop', ...k]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('name the waypoints to delete, or pass --all');
    const all = await ambit(['waypoint', 'delete', '--all', '-n', 'shop', ...k]);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toBe('waypoint shop/waypoint deleted\n');
    const empty = await ambit(['waypoint', 'list', '-n', 'shop', ...k]);
    expect(empty.stdout).toBe('No waypoints found in namespace shop.\n');
  }, 60_000);

  it('without a cluster, list reads a manifest directory', async () => {
    const r = await ambit(['waypoint', 'list', '-A', '-m', 'examples/demo']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^NAMESPACE\s+NAME\s+REVISION\s+PROGRAMMED\nshop\s+waypoint\s+default\s+False\n$/,
    );
  });
});

// The waypoint's admin API on a real `ambit waypoint` in its own pod netns, with its certificate from the
// real CA: /config_dump names the certificate the waypoint actually presents on HBONE (read back with
// openssl s_client), the Service bound to it, the HTTPRoute it serves as compiled and the L7 policy in
// force; the admin answers on the pod's 127.0.0.1 only (Envoy's / Istio's rule), and `ambit status`
// reports the waypoint's certificate expiry. Kernel objects are named `wa12` + random and removed in
// afterAll; every wait is bounded.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '../ca/x509.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DemoState } from '../cli/demo/state-file.js';
import { collectStatus, renderStatus } from '../cli/status.js';
import { keepLogs, startMeshCa, waypointArgs, writeMeshTokens } from './harness/mesh.js';
import { waitReady } from './harness/processes.js';
import { assertNoResidue, HarnessError, type Topology } from './harness/topology.js';
import { createWorld } from './harness/world.js';

const root = process.getuid?.() === 0;
const WAYPOINT_ID = 'spiffe://cluster.local/ns/demo/sa/waypoint';
const TOKEN = 'waypoint-admin-token-0123456789abcdef';
const VIP_USERS = '10.96.0.20';

const CLUSTER = `apiVersion: v1
kind: Namespace
metadata: { name: demo, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: demo, labels: { istio.io/waypoint-for: service } }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
---
apiVersion: v1
kind: Service
metadata: { name: users, namespace: demo, labels: { istio.io/use-waypoint: waypoint } }
spec:
  clusterIP: ${VIP_USERS}
  selector: { app: users }
  ports: [{ name: http, port: 80, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: elsewhere, namespace: demo }
spec:
  clusterIP: 10.96.0.99
  selector: { app: elsewhere }
  ports: [{ name: http, port: 80, targetPort: 8080 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: users-timeouts, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: users, port: 80 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /slow } }]
      backendRefs: [{ name: users, port: 80 }]
      timeouts: { request: 250ms }
      retry: { attempts: 3, codes: [503, 502], backoff: 10ms }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: users-broken, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: users }]
  rules:
    - backendRefs: [{ name: users, port: 80 }]
      timeouts: { request: soon }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: elsewhere-route, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: elsewhere }]
  rules: [{ backendRefs: [{ name: elsewhere, port: 80 }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-delete, namespace: demo }
spec:
  targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }]
  action: DENY
  rules: [{ to: [{ operation: { methods: [DELETE] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: users-readers, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: users }]
  action: ALLOW
  rules: [{ from: [{ source: { principals: [cluster.local/ns/demo/sa/client] } }] }]
`;

class AdminWorld {
  readonly dir: string;
  readonly manifests: string;
  waypoint: ChildProcess | undefined;
  logs: () => string = () => '';

  constructor(readonly topo: Topology) {
    this.dir = mkdtempSync(join(tmpdir(), `${topo.prefix}-`));
    this.manifests = join(this.dir, 'cluster');
    mkdirSync(this.manifests);
  }

  get wpNs(): string {
    return this.topo.pod('wp').ns;
  }

  get wpIp(): string {
    return this.topo.pod('wp').ip;
  }

  async build(): Promise<void> {
    const t = this.topo;
    await t.addNode('a');
    await t.addPod('a', 'wp');
    const wpPod = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: waypoint-0\n  namespace: demo\n  labels: { gateway.networking.k8s.io/gateway-name: waypoint, istio.io/dataplane-mode: none }\nspec:\n  nodeName: a\n  serviceAccountName: waypoint\n  containers: [{ name: proxy, image: ambit }]\nstatus:\n  phase: Running\n  podIP: ${this.wpIp}\n`;
    writeFileSync(join(this.manifests, 'cluster.yaml'), `${CLUSTER}---\n${wpPod}`);
    writeMeshTokens(this.dir, [], [{ token: TOKEN, identity: WAYPOINT_ID }]);
    writeFileSync(join(this.dir, 'token-waypoint'), `${TOKEN}\n`, { mode: 0o600 });
    await startMeshCa(t, this.dir, this.manifests);
    const caAddr = `${t.node('a').ip}:15012`;
    this.waypoint = t.spawnNode(this.wpNs, 'cli/ambit.ts', waypointArgs(this.dir, this.manifests, caAddr));
    this.logs = keepLogs(this.waypoint, 200_000);
    await waitReady(this.waypoint, 'waypoint', 20_000).catch((err: unknown) => {
      throw new HarnessError('START', `${(err as Error).message}\n${this.logs().slice(-3000)}`);
    });
  }

  /** curl inside a netns: body and exit code (7 = connection refused). */
  async curl(ns: string, args: string[]): Promise<{ code: number; out: string }> {
    const r = await this.topo.exec(ns, 'sh', [
      '-c',
      `curl -sS --max-time 5 ${args.map((a) => `'${a}'`).join(' ')} 2>&1; echo "exit=$?"`,
    ]);
    const m = /exit=(\d+)\s*$/.exec(r.stdout);
    return { code: Number(m?.[1] ?? -1), out: r.stdout.replace(/exit=\d+\s*$/, '') };
  }

  async configDump(): Promise<ConfigDump> {
    const r = await this.curl(this.wpNs, ['http://127.0.0.1:15000/config_dump']);
    expect(r.code, r.out).toBe(0);
    return JSON.parse(r.out) as ConfigDump;
  }

  async teardown(): Promise<void> {
    if (this.waypoint && this.waypoint.exitCode === null) this.waypoint.kill('SIGKILL');
    await this.topo.teardown();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

interface CertEntry {
  pem: string;
  serialNumber: string;
  validFrom: string;
  expirationTime: string;
}
interface ConfigDump {
  identity: string;
  bound: { services: { name: string; hostname: string }[]; authorities: string[] };
  routes: {
    name: string;
    attachedTo: string[];
    error?: string;
    rules?: { timeoutMs?: number; retry?: { attempts: number; codes: number[] }; matches?: unknown }[];
  }[];
  policies: { name: string; namespace: string; action: string; appliesTo: string[] }[];
  certificates: { identity: string; state: string; certChain: CertEntry[]; rootCerts: CertEntry[] }[];
}

const hexSerial = (s: string) => s.toLowerCase().replace(/^0+/, '');

describe.skipIf(!root)('waypoint admin API (real waypoint in a pod netns, real CA)', () => {
  let w: AdminWorld;

  beforeAll(async () => {
    w = await createWorld(
      'wa12',
      (topo) => new AdminWorld(topo),
      (world) => world.build(),
    );
  }, 120_000);

  afterAll(async () => {
    const prefix = w?.topo.prefix;
    await w?.teardown();
    if (prefix) await assertNoResidue(prefix);
  }, 60_000);

  it('config_dump names the certificate the waypoint presents on HBONE: serial, validity, identity', async () => {
    // What a peer sees: the leaf the waypoint presents on its HBONE port (no client cert → the server
    // then rejects us, but the certificate has already been sent).
    const probe = await w.topo.exec(w.topo.node('a').ns, 'sh', [
      '-c',
      `openssl s_client -connect ${w.wpIp}:15008 -alpn h2 -showcerts </dev/null 2>/dev/null; true`,
    ]);
    const served = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(probe.stdout)?.[0];
    expect(served, probe.stdout).toBeDefined();
    const leaf = new x509.X509Certificate(served!);
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
    expect(san?.names.items.map((n) => n.value)).toEqual([WAYPOINT_ID]);

    const dump = await w.configDump();
    expect(dump.identity).toBe(WAYPOINT_ID);
    expect(dump.certificates).toHaveLength(1);
    const c = dump.certificates[0]!;
    expect(c.identity).toBe(WAYPOINT_ID);
    expect(c.state).toBe('Available');
    expect(hexSerial(c.certChain[0]!.serialNumber)).toBe(hexSerial(leaf.serialNumber));
    expect(c.certChain[0]!.expirationTime).toBe(leaf.notAfter.toISOString());
    expect(c.certChain[0]!.validFrom).toBe(leaf.notBefore.toISOString());
    // The root the dump lists is the CA's root on disk.
    const caRoot = new x509.X509Certificate(readFileSync(join(w.dir, 'ca', 'root-cert.pem'), 'utf8'));
    expect(c.rootCerts.map((r) => hexSerial(r.serialNumber))).toContain(hexSerial(caRoot.serialNumber));
  });

  it('config_dump lists the bound service, the routes it serves as compiled, and the L7 policies in force', async () => {
    const dump = await w.configDump();
    expect(dump.bound.services.map((s) => s.hostname)).toEqual(['users.demo.svc.cluster.local']);
    expect(dump.bound.authorities).toEqual([`${VIP_USERS}:80`, 'users.demo.svc.cluster.local:80']);

    const byName = new Map(dump.routes.map((r) => [r.name, r]));
    // Only routes attached to what this waypoint serves.
    expect([...byName.keys()].sort()).toEqual(['users-broken', 'users-timeouts']);
    const timeouts = byName.get('users-timeouts');
    expect(timeouts?.attachedTo).toEqual(['Service demo/users:80']);
    expect(timeouts?.rules?.[0]).toMatchObject({
      timeoutMs: 250,
      retry: { attempts: 3, codes: [502, 503] },
      matches: [{ path: { type: 'PathPrefix', value: '/slow' } }],
    });
    // The Router leaves a route that does not compile out; the dump says which field is wrong.
    expect(byName.get('users-broken')?.error).toMatch(/spec\.rules\[0\]\.timeouts\.request: "soon"/);

    expect(dump.policies.map((p) => [p.namespace, p.name, p.action, p.appliesTo])).toEqual([
      ['demo', 'no-delete', 'DENY', ['every destination']],
      ['demo', 'users-readers', 'ALLOW', ['Service demo/users']],
    ]);
  });

  it('answers on the pod loopback only: its own pod IP and the node are refused', async () => {
    const ready = await w.curl(w.wpNs, ['http://127.0.0.1:15000/ready']);
    expect(ready).toEqual({ code: 0, out: 'LIVE\n' });
    // Positive control: the pod IP is reachable from the node (the stats port listens on every address).
    const stats = await w.curl(w.topo.node('a').ns, [`http://${w.wpIp}:15020/healthz/ready`]);
    expect(stats.code, stats.out).toBe(0);
    for (const ns of [w.wpNs, w.topo.node('a').ns]) {
      const r = await w.curl(ns, [`http://${w.wpIp}:15000/config_dump`]);
      expect(r.code, r.out).toBe(7); // curl 7: failed to connect (nothing listens there)
      expect(r.out).toMatch(/Failed to connect|refused/i);
    }
  });

  it('ambit status shows the waypoint certificate expiry, read from its admin in the pod netns', async () => {
    const dump = await w.configDump();
    const expires = dump.certificates[0]!.certChain[0]!.expirationTime;
    const state: DemoState = {
      version: 1,
      pid: process.pid,
      startedAt: new Date().toISOString(),
      prefix: w.topo.prefix,
      dir: w.dir,
      manifestsDir: w.manifests,
      fabricNetns: w.topo.fabricNs,
      waypoint: 'running',
      nodes: [],
      pods: [
        {
          name: 'waypoint',
          namespace: 'demo',
          node: 'a',
          ip: w.wpIp,
          netns: w.wpNs,
          enrolled: false,
          identity: WAYPOINT_ID,
          run: 'waypoint',
        },
      ],
      processes: [],
      pinDirs: [],
    };
    const report = await collectStatus(state);
    expect(report.problems.filter((p) => p.includes('waypoint'))).toEqual([]);
    expect(report.certificates).toEqual([
      { identity: WAYPOINT_ID, state: 'Available', node: 'a', reporter: 'waypoint demo/waypoint', expires },
    ]);
    expect(renderStatus(report)).toMatch(
      new RegExp(
        `${WAYPOINT_ID}\\s+a\\s+waypoint demo/waypoint\\s+Available\\s+${expires.replace(/\./g, '\\.')}`,
      ),
    );
  });

  it('POST /quitquitquit stops the waypoint cleanly', async () => {
    const child = w.waypoint!;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const r = await w.curl(w.wpNs, ['-X', 'POST', 'http://127.0.0.1:15000/quitquitquit']);
    expect(r).toEqual({ code: 0, out: 'OK\n' });
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
    expect(code).toBe(0);
  }, 30_000);
});

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, type PolicyCheckOptions, runPolicyCheck } from './policy.js';

const MANIFESTS = `
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: { app: web }
spec:
  nodeName: node-a
  serviceAccountName: web
  containers: [{ name: app }]
status:
  podIP: 10.0.1.5
  phase: Running
  conditions: [{ type: Ready, status: "True" }]
---
apiVersion: v1
kind: Pod
metadata:
  name: backend-1
  namespace: shop
  labels: { app: backend }
spec:
  nodeName: node-a
  serviceAccountName: backend
  containers: [{ name: app, ports: [{ containerPort: 8080 }] }]
status:
  podIP: 10.0.2.7
  phase: Running
  conditions: [{ type: Ready, status: "True" }]
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: shop
spec:
  selector: { app: backend }
  clusterIP: 10.96.0.10
  ports: [{ name: http, port: 80, targetPort: 8080 }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-web
  namespace: shop
spec:
  selector:
    matchLabels: { app: backend }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/web"] } }]
    to: [{ operation: { methods: ["GET"] } }]
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/web"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-plaintext-admin
  namespace: shop
spec:
  action: DENY
  rules:
  - from: [{ source: { notPrincipals: ["*"] } }]
    to: [{ operation: { ports: ["8080"], paths: ["/admin"] } }]
`;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ambit-policy-cli-'));
  writeFileSync(join(dir, 'shop.yaml'), MANIFESTS);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(o: Partial<PolicyCheckOptions>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const code = await runPolicyCheck(
    {
      manifests: dir,
      sourceIdentity: 'shop/web',
      sourceIp: '10.0.1.5',
      destination: 'backend.shop:80',
      output: 'json',
      ...o,
    },
    io,
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('ambit policy check', () => {
  it('allows web → backend over mTLS, naming the policy, rule and the dropped L7 rule (json)', async () => {
    const r = await run({});
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({
      decision: 'ALLOW',
      reason: 'allowed by: shop/allow-web',
      policy: 'shop/allow-web',
      rule: 1,
    });
    expect(j.endpoints).toHaveLength(1);
    expect(j.endpoints[0]).toMatchObject({
      targetPort: 8080,
      workload: { name: 'backend-1', address: '10.0.2.7' },
    });
    expect(j.dropped).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ policy: 'shop/allow-web', rule: 0, kind: 'allow-rule-dropped' }),
        expect.objectContaining({ policy: 'shop/deny-plaintext-admin', rule: 0, kind: 'deny-rule-narrowed' }),
      ]),
    );
  });

  it('denies plaintext: the narrowed DENY now covers all of port 8080 (json)', async () => {
    const r = await run({ sourceIdentity: 'none' });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({
      decision: 'DENY',
      reason: 'explicitly denied by: shop/deny-plaintext-admin',
      policy: 'shop/deny-plaintext-admin',
      rule: 0,
    });
  });

  it('denies another identity with ztunnel\'s "none allowed" reason via the VIP', async () => {
    const r = await run({
      sourceIdentity: 'spiffe://cluster.local/ns/other/sa/x',
      destination: '10.96.0.10:80',
    });
    const j = JSON.parse(r.out);
    expect(r.code).toBe(0);
    expect(j).toMatchObject({
      decision: 'DENY',
      reason: 'allow policies exist, but none allowed',
      policy: null,
    });
  });

  it('prints a readable text report', async () => {
    const r = await run({ output: 'text' });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ALLOW {2}allowed by: shop\/allow-web/);
    expect(r.out).toContain('shop/backend-1 10.0.2.7:8080');
    expect(r.out).toContain('allow-rule-dropped');
  });

  it('a STRICT PeerAuthentication denies plaintext through the static policy; port exceptions apply', async () => {
    const strictDir = mkdtempSync(join(tmpdir(), 'ambit-policy-cli-pa-'));
    try {
      writeFileSync(join(strictDir, 'shop.yaml'), MANIFESTS);
      writeFileSync(
        join(strictDir, 'pa.yaml'),
        `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: istio-system }
spec: { mtls: { mode: STRICT } }
`,
      );
      const r = await run({ manifests: strictDir, sourceIdentity: 'none', destination: '10.0.1.5:9000' });
      expect(JSON.parse(r.out)).toMatchObject({
        decision: 'DENY',
        reason: 'explicitly denied by: istio-system/istio_converted_static_strict',
      });
      const ok = await run({
        manifests: strictDir,
        sourceIdentity: 'shop/backend',
        destination: '10.0.1.5:9000',
      });
      expect(JSON.parse(ok.out)).toMatchObject({ decision: 'ALLOW' });
      writeFileSync(
        join(strictDir, 'web-pa.yaml'),
        `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: web-ports, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  mtls: { mode: STRICT }
  portLevelMtls: { "9000": { mode: PERMISSIVE } }
`,
      );
      const excepted = await run({
        manifests: strictDir,
        sourceIdentity: 'none',
        destination: '10.0.1.5:9000',
      });
      expect(JSON.parse(excepted.out)).toMatchObject({ decision: 'ALLOW' });
      const other = await run({ manifests: strictDir, sourceIdentity: 'none', destination: '10.0.1.5:9001' });
      expect(JSON.parse(other.out)).toMatchObject({
        decision: 'DENY',
        reason: 'explicitly denied by: shop/converted_peer_authentication_web-ports',
      });
    } finally {
      rmSync(strictDir, { recursive: true, force: true });
    }
  });

  it('with a waypoint: L7 targetRefs policy at the waypoint, then L4 sees the waypoint identity', async () => {
    const wpDir = mkdtempSync(join(tmpdir(), 'ambit-policy-cli-wp-'));
    try {
      writeFileSync(
        join(wpDir, 'shop.yaml'),
        MANIFESTS.replace(
          '  name: backend\n  namespace: shop\nspec:',
          '  name: backend\n  namespace: shop\n  labels: { istio.io/use-waypoint: waypoint }\nspec:',
        ),
      );
      writeFileSync(
        join(wpDir, 'waypoint.yaml'),
        `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: waypoint, namespace: shop, labels: { istio.io/waypoint-for: service } }
spec:
  gatewayClassName: istio-waypoint
  listeners: [{ name: mesh, port: 15008, protocol: HBONE }]
---
apiVersion: v1
kind: Pod
metadata:
  name: waypoint-1
  namespace: shop
  labels: { gateway.networking.k8s.io/gateway-name: waypoint }
spec: { nodeName: node-a, serviceAccountName: waypoint, containers: [{ name: istio-proxy }] }
status: { podIP: 10.0.3.3, phase: Running, conditions: [{ type: Ready, status: "True" }] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: backend-l7, namespace: shop }
spec:
  targetRefs: [{ kind: Service, group: "", name: backend }]
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/shop/sa/web"] } }]
    to: [{ operation: { methods: ["GET"], paths: ["/api/*"] } }]
`,
      );
      const denied = await run({ manifests: wpDir, method: 'DELETE', path: '/api/x' });
      expect(JSON.parse(denied.out)).toMatchObject({
        decision: 'DENY',
        enforcedAt: 'waypoint',
        reason: 'allow policies exist, but none allowed',
        waypoint: {
          name: 'shop/waypoint',
          identity: 'spiffe://cluster.local/ns/shop/sa/waypoint',
          policies: ['shop/backend-l7'],
        },
      });
      // GET passes the waypoint; the destination ztunnel then sees the waypoint, which allow-web does not name.
      const l4 = JSON.parse((await run({ manifests: wpDir, method: 'GET', path: '/api/x' })).out);
      expect(l4).toMatchObject({ decision: 'DENY', enforcedAt: 'ztunnel', waypoint: { decision: 'ALLOW' } });
      expect(l4.reason).toBe('allow policies exist, but none allowed');
      // Dialling the pod IP skips a service-scoped waypoint (istio.io: waypoint policies only see traffic that reaches it).
      const direct = JSON.parse((await run({ manifests: wpDir, destination: '10.0.2.7:8080' })).out);
      expect(direct).toMatchObject({
        decision: 'ALLOW',
        enforcedAt: 'ztunnel',
        waypoint: null,
        policy: 'shop/allow-web',
      });
    } finally {
      rmSync(wpDir, { recursive: true, force: true });
    }
  });

  it('exits 2 with a one-line message for bad input', async () => {
    for (const [o, msg] of [
      [{ sourceIdentity: 'spiffe://x' }, /--source-identity/],
      [{ sourceIp: '10.0.1' }, /--source-ip/],
      [{ destination: 'backend.shop' }, /destination/],
      [{ destination: 'missing.shop:80' }, /not found/],
      [{ manifests: join(dir, 'nope') }, /-m/],
      [{ output: 'yaml' }, /-o/],
    ] as const) {
      const r = await run(o);
      expect(r.code, JSON.stringify(o)).toBe(2);
      expect(r.err).toMatch(msg);
      expect(r.err.split('\n')).toHaveLength(1);
      expect(r.out).toBe('');
    }
  });

  // The built binary, as an operator runs it (CI builds before testing): commander wiring and exit codes.
  const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'ambit.js');
  it.skipIf(!existsSync(cli))('the built `ambit policy check` exits 0 on DENY and 2 on usage errors', () => {
    const base = [
      'policy',
      'check',
      '-m',
      dir,
      '--source-ip',
      '10.0.1.5',
      '--destination',
      'backend.shop:80',
    ];
    const deny = spawnSync(process.execPath, [cli, ...base, '--source-identity', 'none', '-o', 'json'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(deny.status).toBe(0);
    expect(JSON.parse(deny.stdout).decision).toBe('DENY');
    const missing = spawnSync(process.execPath, [cli, ...base], { encoding: 'utf8', timeout: 30_000 });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/--source-identity/);
    const bad = spawnSync(process.execPath, [cli, ...base, '--source-identity', 'a/b/c'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });
});

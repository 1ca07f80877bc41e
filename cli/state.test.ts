import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runState } from './state.js';

async function run(manifests: string, output?: string) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runState(
    { manifests, ...(output ? { output } : {}) },
    { out: (l) => out.push(l), err: (l) => err.push(l) },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('ambit state', () => {
  it('prints workloads, services, policies and waypoints of a manifest directory', async () => {
    const r = await run('examples/basic');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /shop\s+backend-1\s+10\.244\.1\.11\s+node-a\s+spiffe:\/\/cluster\.local\/ns\/shop\/sa\/backend\s+HBONE \(enrolled\)/,
    );
    expect(r.out).toMatch(/legacy\s+batch-client\s+10\.244\.2\.20\s+node-b\s+\S+\s+NONE/);
    expect(r.out).toMatch(
      /backend\.shop\.svc\.cluster\.local\s+10\.96\.0\.20\s+8080->http\/HTTP11,9090->9090\/GRPC\s+shop-waypoint\.shop\.svc\.cluster\.local\s+backend-0,backend-1/,
    );
    expect(r.out).toMatch(/shop\/backend-from-frontend\s+WORKLOAD_SELECTOR\(app=backend\)\s+ALLOW\s+1/);
    expect(r.out).toMatch(/shop\/backend-api\s+WAYPOINT\(Service\/backend\)\s+ALLOW\s+2/);
    expect(r.out).toMatch(
      /shop\/shop-waypoint\s+service\s+spiffe:\/\/cluster\.local\/ns\/shop\/sa\/shop-waypoint/,
    );
    expect(r.out).toContain('MANIFEST ERRORS (0)');
  });

  it('prints the snapshot as JSON with -o json', async () => {
    const r = await run('examples/basic', 'json');
    expect(r.code).toBe(0);
    const snap = JSON.parse(r.out);
    expect(Object.keys(snap).sort()).toEqual(
      [
        'authorizations',
        'conditions',
        'errors',
        'l7Policies',
        'namespaces',
        'routes',
        'services',
        'warnings',
        'waypoints',
        'workloads',
      ].sort(),
    );
    expect(snap.workloads.find((w: { name: string }) => w.name === 'backend-1').services).toEqual({
      'shop/backend.shop.svc.cluster.local': [
        { servicePort: 8080, targetPort: 8081 },
        { servicePort: 9090, targetPort: 9090 },
      ],
    });
  });

  it('exits 2 for a missing directory or an unknown format, naming the flag', async () => {
    const missing = await run('/nonexistent/dir');
    expect(missing.code).toBe(2);
    expect(missing.err).toBe('ambit state: -m: manifest directory "/nonexistent/dir": does not exist');
    const fmt = await run('examples/basic', 'xml');
    expect(fmt.code).toBe(2);
    expect(fmt.err).toContain('-o "xml"');
  });

  it('prints YAML with -o yaml', async () => {
    const r = await run('examples/basic', 'yaml');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^workloads:\n/m);
    expect(r.out).toMatch(/name: backend-1/);
  });

  it('lists the status conditions Istio would write; a policy on a missing target is valid but not bound', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-state-'));
    try {
      cpSync('examples/basic', dir, { recursive: true });
      writeFileSync(
        join(dir, 'zz-orphan.yaml'),
        `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: orphan, namespace: shop }
spec:
  targetRefs: [{ kind: Service, group: "", name: no-such-service }]
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin"] } }] }]
`,
      );
      const r = await run(dir);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(
        /shop\/backend-from-frontend\s+ZtunnelAccepted\s+True\s+Accepted\s+attached to ztunnel/,
      );
      expect(r.out).toMatch(
        /AuthorizationPolicy shop\/orphan\s+WaypointAccepted\s+False\s+TargetNotFound\s+Service shop\/no-such-service was not found/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('exits 1 and names the file, object and field when a manifest is invalid (a CI gate)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-state-'));
    try {
      cpSync('examples/basic', dir, { recursive: true });
      writeFileSync(
        join(dir, 'zz-bad.yaml'),
        `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: typo, namespace: shop }
spec:
  action: ALOW
  rules: [{ from: [{ source: { principals: [cluster.local/ns/shop/sa/frontend] } }] }]
`,
      );
      const r = await run(dir);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/MANIFEST ERRORS \(1\)\n.*zz-bad\.yaml.*shop\/typo.*action/);
      expect(r.err).toContain('1 invalid object(s)');
      const j = await run(dir, 'json');
      expect(j.code).toBe(1);
      expect(JSON.parse(j.out).errors[0]).toMatch(/zz-bad\.yaml/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

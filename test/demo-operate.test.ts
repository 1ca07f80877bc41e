// Day-two commands against a running demo, as an operator types them (issue 18): `ambit ztunnel-config
// ... --node`, `ambit observe`, `ambit status` naming a bad policy file within 2 s, `ambit state` as a
// CI gate, and a healthy demo without the waypoint→web tunnel resets (NGHTTP2_INTERNAL_ERROR) it used
// to log every few seconds.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoResidue } from './harness/topology.js';
import { ambit, demoDown, type RunningDemo, startDemo } from './demo-run.js';

const root = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const BAD_POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: typo-policy
  namespace: shop
spec:
  selector:
    matchLabels: { app: catalog }
  action: ALOW
  rules:
    - from: [{ source: { principals: [cluster.local/ns/shop/sa/frontend] } }]
`;

describe.skipIf(!root)('operating the demo with the ambit CLI (needs root)', () => {
  let d: RunningDemo;
  const zc = (...a: string[]) => ambit(['ztunnel-config', ...a, '--dir', d.dir]);

  beforeAll(async () => {
    d = await startDemo();
  }, 150_000);
  afterAll(async () => {
    if (!d) return;
    const r = await demoDown(d);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    await assertNoResidue(d.prefix);
    rmSync(d.dir, { recursive: true, force: true });
  }, 60_000);

  it('ztunnel-config reaches a node’s ztunnel by node or pod name, in table, json and yaml', async () => {
    const w = await zc('workloads', '--node', 'node1');
    expect(w.code, w.stderr).toBe(0);
    expect(w.stdout).toMatch(/^NAMESPACE\s+POD NAME\s+ADDRESS\s+NODE\s+WAYPOINT\s+PROTOCOL/);
    expect(w.stdout).toMatch(/shop\s+frontend\s+10\.244\.1\.10\s+node1\s+None\s+HBONE/);
    const j = await zc('services', '--pod', 'shop/catalog', '-o', 'json');
    expect(j.code, j.stderr).toBe(0);
    expect((JSON.parse(j.stdout) as { name: string }[]).map((s) => s.name)).toContain('catalog');
    const y = await zc('certificates', '--node', 'node2', '-o', 'yaml');
    expect(y.stdout).toMatch(/identity: spiffe:\/\/cluster\.local\/ns\/shop\/sa\/catalog/);
    const log = await zc('log', '--node', 'node2');
    expect(log.stdout).toMatch(/ztunnel on node2\s+info/);
    const all = await zc('all', '--node', 'node1');
    expect(all.stdout).toMatch(/WORKLOADS[\s\S]*SERVICES[\s\S]*POLICIES[\s\S]*CERTIFICATES/);
    // Usage mistakes: exit 2, one line naming the mistake, not the whole help.
    const bad = await zc('workloads', '--node', 'node9');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--node node9: no such node in the demo \(nodes: node1, node2\)/);
    const noNode = await zc('workloads');
    expect(noNode.code).toBe(2);
    expect(noNode.stderr).toMatch(/pass --node \(node1, node2\)/);
  });

  it('observe --verdict denied streams the demo’s denials with their deciding policy', async () => {
    // The waypoint denies frontend's GET /admin by shop/web-no-admin about once a second.
    const r = await ambit(['observe', '--dir', d.dir, '--verdict', 'denied', '-o', 'json', '--last', '500']);
    expect(r.code, r.stderr).toBe(0);
    const rows = r.stdout
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as { verdict: string; policy?: string; reporter: string; l7?: { path?: string } },
      );
    expect(rows.length).toBeGreaterThan(0);
    expect(new Set(rows.map((x) => x.verdict))).toEqual(new Set(['DENIED']));
    expect(
      rows.some(
        (x) =>
          x.policy === 'shop/web-no-admin' &&
          x.reporter === 'waypoint/shop/waypoint' &&
          x.l7?.path === '/admin',
      ),
    ).toBe(true);
    // Follow mode: a new denial arrives within a few seconds.
    const f = await ambit(['observe', '--dir', d.dir, '-f', '--last', '0', '--policy', 'shop/web-no-admin'], {
      timeoutMs: 6000,
    });
    expect(f.stdout).toMatch(
      /waypoint\/shop\/waypoint .* DENIED mTLS HTTP\/1\.1 GET \/admin 403 policy=shop\/web-no-admin/,
    );
    const table = await ambit([
      'observe',
      '--dir',
      d.dir,
      '--workload',
      'shop/frontend',
      '--protocol',
      'grpc',
    ]);
    expect(table.stdout).toMatch(/shop\/frontend .* -> shop\/catalog .* FORWARDED mTLS/);
  });

  it('a healthy demo has no errors: the waypoint’s idle tunnels to web close without a reset', async () => {
    // The sample app's keep-alive is 5 s: the waypoint's pool drops idle tunnels every few seconds.
    await sleep(8000);
    const r = await ambit(['observe', '--dir', d.dir, '--verdict', 'error', '-o', 'json', '--last', '1000']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('');
    const z2 = readFileSync(join(d.dir, 'logs', 'ztunnel-node2.log'), 'utf8');
    expect(z2).not.toContain('NGHTTP2_INTERNAL_ERROR');
    // Positive control: the waypoint did open tunnels to web (otherwise nothing could have been reset).
    expect(z2).toMatch(/"src\.workload":"waypoint".*"dst\.workload":"web"/);
    const st = await ambit(['status', '--dir', d.dir]);
    expect(st.code, st.stdout).toBe(0);
  }, 30_000);

  it('a mistyped policy dropped into the manifests shows in status within 2 s; state exits 1 on it', async () => {
    const tmp = join(d.manifests, '.typo.tmp');
    writeFileSync(tmp, BAD_POLICY);
    renameSync(tmp, join(d.manifests, 'typo-policy.yaml'));
    const t0 = Date.now();
    const s = await ambit(['status', '--dir', d.dir]);
    expect(Date.now() - t0).toBeLessThan(2000 + 3000);
    expect(s.code).toBe(1);
    expect(s.stdout).toMatch(/PROBLEMS \(1\)\n\s+- typo-policy\.yaml.*shop\/typo-policy.*action/);
    // The flow view's data carries the same error within 2 s (its banner shows it; the browser test looks).
    let errors: string[] = [];
    for (let i = 0; i < 20 && errors.length === 0; i++) {
      errors = ((await (await fetch(`${d.url}api/topology`)).json()) as { errors: string[] }).errors;
      if (errors.length === 0) await sleep(100);
    }
    expect(Date.now() - t0).toBeLessThan(2000 + 3000);
    expect(errors.join('\n')).toMatch(/typo-policy\.yaml.*shop\/typo-policy/);
    const state = await ambit(['state', '-m', d.manifests]);
    expect(state.code).toBe(1);
    expect(state.stdout).toMatch(/MANIFEST ERRORS \(1\)/);
    rmSync(join(d.manifests, 'typo-policy.yaml'));
    expect((await ambit(['state', '-m', d.manifests])).code).toBe(0);
  });
});

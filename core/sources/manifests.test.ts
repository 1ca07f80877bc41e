import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadManifestDirectory, ManifestDirectoryError, ManifestSource } from './manifests.js';

const quiet = pino({ level: 'silent' });
const dirs: string[] = [];
const sources: ManifestSource[] = [];

function tempDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'ambit-state-manifests-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Replaces a file atomically (write + rename), as editors and ConfigMap volumes do: the watcher never sees it half written. */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp~`, text);
  renameSync(`${path}.tmp~`, path);
}

/** Polls `cond` every 20 ms, at most `ms` (a bound, not a speed assertion). */
async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const policy = (name: string, action: string, extra = '') => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ${name}
  namespace: shop
spec:
  action: ${action}
${extra}
`;

describe('loadManifestDirectory', () => {
  it('loads the example directory without errors', async () => {
    const r = await loadManifestDirectory('examples/basic', { logger: quiet });
    expect(r.errors).toEqual([]);
    expect(r.state.workloads()).toHaveLength(6);
    expect(r.state.serviceByVip('10.96.0.20', 8080)?.service.waypoint?.hostname).toBe(
      'shop-waypoint.shop.svc.cluster.local',
    );
    expect(r.state.authorizationByKey('shop/backend-from-frontend')?.scope).toBe('WORKLOAD_SELECTOR');
    expect(r.state.l7PolicyByKey('shop/backend-api')).toBeDefined();
  });

  it('refuses a missing directory with a typed error', async () => {
    await expect(loadManifestDirectory('/nonexistent/ambit-manifests')).rejects.toBeInstanceOf(
      ManifestDirectoryError,
    );
  });

  it('rejects each bad document with one line naming file, document, object and field; good ones apply', async () => {
    const dir = tempDir({
      'bad.yaml': [
        policy('good-1', 'DENY', '  rules: [{ from: [{ source: { namespaces: [evil] } }] }]'),
        policy('unknown-action', 'ALOW'),
        policy('bad-cidr', 'DENY', '  rules: [{ from: [{ source: { ipBlocks: [10.0.0.0/40] } }] }]'),
        policy('bad-port', 'ALLOW', '  rules: [{ to: [{ operation: { ports: ["0"] } }] }]'),
        policy(
          'both',
          'ALLOW',
          '  selector: { matchLabels: { app: a } }\n  targetRefs: [{ kind: Service, group: "", name: api }]',
        ),
        'apiVersion: v1\nkind: Service\nmetadata: { name: s, namespace: shop }\nspec: { ports: [{ port: 99999 }] }\n',
        'kind: Namespace\nmetadata: {name: [unclosed\n',
        policy('good-2', 'ALLOW'),
      ].join('---\n'),
    });
    const r = await loadManifestDirectory(dir, { logger: quiet });
    const f = join(dir, 'bad.yaml');
    const lines = r.errors.map((e) => e.message);
    expect(lines).toEqual([
      `${f}: document 2 AuthorizationPolicy shop/unknown-action: spec.action: unknown action "ALOW" (expected ALLOW, DENY, AUDIT or CUSTOM)`,
      `${f}: document 3 AuthorizationPolicy shop/bad-cidr: spec.rules[0].from[0].source.ipBlocks[0]: "10.0.0.0/40" is not an IP address or CIDR`,
      `${f}: document 4 AuthorizationPolicy shop/bad-port: spec.rules[0].to[0].operation.ports[0]: port "0" out of range 1-65535`,
      `${f}: document 5 AuthorizationPolicy shop/both: spec.targetRefs: only one of selector or targetRef(s) may be set`,
      `${f}: document 6 Service shop/s: spec.ports[0].port: port 99999 out of range 1-65535`,
      expect.stringMatching(
        new RegExp(
          `^${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: document 7: line \\d+, column \\d+: invalid YAML: `,
        ),
      ),
    ]);
    for (const l of lines) expect(l).not.toContain('\n');
    expect(r.state.authorizationByKey('shop/good-1')).toBeDefined();
    expect(r.state.authorizationByKey('shop/good-2')).toBeDefined();
    expect(r.state.authorizationByKey('shop/unknown-action')).toBeUndefined();
  });

  it('accepts a spiffe:// principal and warns that it can never match', async () => {
    const dir = tempDir({
      'p.yaml': policy(
        'only-frontend',
        'ALLOW',
        '  rules: [{ from: [{ source: { principals: ["spiffe://cluster.local/ns/shop/sa/frontend"] } }] }]',
      ),
    });
    const r = await loadManifestDirectory(dir, { logger: quiet });
    expect(r.errors).toEqual([]);
    expect(r.state.authorizationByKey('shop/only-frontend')?.rules).toHaveLength(1);
    expect(
      r.warnings.some(
        (w) =>
          w.includes(
            'p.yaml: document 1 AuthorizationPolicy shop/only-frontend: spec.rules[0].from[0].source.principals[0]',
          ) && w.includes('can never match'),
      ),
    ).toBe(true);
  });

  it('reads `kind: List` documents (kubectl get -o yaml) item by item', async () => {
    const dir = tempDir({
      'dump.yaml': `apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata: { name: a, namespace: shop }
    spec: { nodeName: n1 }
    status: { podIP: 10.8.0.1 }
  - apiVersion: v1
    kind: Pod
    metadata: { name: b, namespace: shop }
    spec: { containers: [{ name: c, ports: [{ containerPort: 0 }] }] }
`,
    });
    const r = await loadManifestDirectory(dir, { logger: quiet });
    expect(r.state.workloadByIp('10.8.0.1')?.name).toBe('a');
    expect(r.errors.map((e) => e.message)).toEqual([
      `${join(dir, 'dump.yaml')}: document 1 item 1 Pod shop/b: spec.containers[0].ports[0].containerPort: port 0 out of range 1-65535`,
    ]);
  });

  it('reports an object defined in two files once, and the first file keeps it', async () => {
    const dir = tempDir({ 'a.yaml': policy('dup', 'ALLOW'), 'b.yaml': policy('dup', 'DENY') });
    const r = await loadManifestDirectory(dir, { logger: quiet });
    expect(r.errors.map((e) => e.message)).toEqual([
      expect.stringMatching(
        /b\.yaml: document 1 AuthorizationPolicy shop\/dup: metadata\.name: already defined in a\.yaml; ignored$/,
      ),
    ]);
    expect(r.state.authorizationByKey('shop/dup')?.action).toBe('ALLOW');
  });
});

describe('ManifestSource watching a directory', () => {
  async function started(dir: string): Promise<ManifestSource> {
    const s = new ManifestSource(dir, { logger: quiet, debounceMs: 30 });
    sources.push(s);
    await s.start();
    return s;
  }

  it('keeps the last good version serving through an invalid edit, then applies a valid one', async () => {
    const dir = tempDir({
      'policies.yaml': `${policy('gate', 'DENY', '  rules: [{ from: [{ source: { namespaces: [evil] } }] }]')}---\n${policy('other', 'ALLOW')}`,
    });
    const s = await started(dir);
    expect(s.state.authorizationByKey('shop/gate')?.action).toBe('DENY');

    replaceFile(
      join(dir, 'policies.yaml'),
      `${policy('gate', 'DENYY', '  rules: [{ from: [{ source: { namespaces: [evil] } }] }]')}---\n${policy('other', 'DENY')}`,
    );
    await waitFor(() => s.errors().length > 0);
    // The broken object still serves its last good version; the good document in the same file applied.
    expect(s.state.authorizationByKey('shop/gate')?.action).toBe('DENY');
    expect(s.state.authorizationByKey('shop/other')?.action).toBe('DENY');
    expect(s.errors().map((e) => e.message)).toEqual([
      expect.stringMatching(
        /policies\.yaml: document 1 AuthorizationPolicy shop\/gate: spec\.action: unknown action "DENYY" .*\(the last good version keeps serving\)$/,
      ),
    ]);

    replaceFile(join(dir, 'policies.yaml'), `${policy('gate', 'ALLOW')}---\n${policy('other', 'DENY')}`);
    await waitFor(() => s.errors().length === 0);
    expect(s.state.authorizationByKey('shop/gate')?.action).toBe('ALLOW');
    expect(s.state.authorizationByKey('shop/gate')?.rules).toEqual([]);
  });

  it('keeps every object of a file with a YAML syntax error', async () => {
    const dir = tempDir({ 'p.yaml': `${policy('a', 'DENY')}---\n${policy('b', 'DENY')}` });
    const s = await started(dir);
    replaceFile(join(dir, 'p.yaml'), `${policy('a', 'ALLOW')}---\nkind: [broken\n`);
    await waitFor(() => s.errors().length > 0);
    expect(s.state.authorizationByKey('shop/a')?.action).toBe('ALLOW');
    expect(s.state.authorizationByKey('shop/b')?.action).toBe('DENY');
  });

  it('removes objects dropped from a file, and all objects of a deleted file', async () => {
    const dir = tempDir({
      'p.yaml': `${policy('a', 'DENY')}---\n${policy('b', 'DENY')}`,
      'pods.yaml':
        'apiVersion: v1\nkind: Pod\nmetadata: { name: p, namespace: shop }\nspec: { nodeName: n1 }\nstatus: { podIP: 10.9.0.1 }\n',
    });
    const s = await started(dir);
    expect(s.state.workloadByIp('10.9.0.1')).toBeDefined();
    replaceFile(join(dir, 'p.yaml'), policy('a', 'DENY'));
    await waitFor(() => s.state.authorizationByKey('shop/b') === undefined);
    expect(s.state.authorizationByKey('shop/a')).toBeDefined();
    unlinkSync(join(dir, 'pods.yaml'));
    await waitFor(() => s.state.workloadByIp('10.9.0.1') === undefined);
    // A new file appears and applies.
    replaceFile(join(dir, 'new.yml'), policy('c', 'ALLOW'));
    await waitFor(() => s.state.authorizationByKey('shop/c') !== undefined);
  });

  it('re-reads a file that turns empty once before removing its objects, then removes them', async () => {
    const dir = tempDir({ 'p.yaml': policy('a', 'DENY') });
    const s = await started(dir);
    const syncs: string[][] = [];
    s.onSync((files) => syncs.push(files));
    replaceFile(join(dir, 'p.yaml'), '');
    await waitFor(() => s.state.authorizationByKey('shop/a') === undefined);
    expect(syncs).toEqual([['p.yaml']]);
  });

  it('hands a duplicated object to the other file when its owner drops it', async () => {
    const dir = tempDir({ 'a.yaml': policy('dup', 'ALLOW'), 'b.yaml': policy('dup', 'DENY') });
    const s = await started(dir);
    expect(s.errors()).toHaveLength(1);
    unlinkSync(join(dir, 'a.yaml'));
    await waitFor(() => s.state.authorizationByKey('shop/dup')?.action === 'DENY');
    expect(s.errors()).toEqual([]);
  });
});

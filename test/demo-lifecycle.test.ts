// `ambit demo up` then `ambit demo down` leaves nothing behind — network namespaces, veths, BPF pins,
// tc filters / ip rules / nft tables (all inside the demo's netns), processes — and the same after the
// demo process is killed with SIGKILL (down works from the state file and the name prefix).
import { existsSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertNoResidue } from './harness/topology.js';
import { ambit, demoDown, type RunningDemo, startDemo } from './demo-run.js';

const root = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const REVIEWER = `apiVersion: v1
kind: Pod
metadata:
  name: reviewer
  namespace: shop
  labels: { app: reviewer }
  annotations:
    demo.ambit.dev/run: "traffic.mjs reviewer http://10.96.0.10/api/reviews"
spec:
  nodeName: node2
  serviceAccountName: reviewer
  containers: [{ name: app, image: ambit/demo-traffic:dev }]
status:
  phase: Running
  podIP: 10.244.2.30
`;
const started: RunningDemo[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function netnsOf(prefix: string): string[] {
  return readdirSync('/var/run/netns').filter((n) => n.startsWith(`${prefix}-`));
}

afterAll(async () => {
  // Whatever a failed test left: down by prefix, then remove the temp dirs.
  for (const d of started) {
    if (d.child.exitCode === null) d.child.kill('SIGKILL');
    await demoDown(d);
    rmSync(d.dir, { recursive: true, force: true });
  }
}, 60_000);

describe.skipIf(!root)('ambit demo lifecycle (needs root: netns, BPF)', () => {
  it('refuses to run without root, with a clear message and a non-zero exit', async () => {
    const r = await new Promise<{ code: number | null; err: string }>((resolve) => {
      import('node:child_process').then(({ execFile }) => {
        execFile(
          'setpriv',
          [
            '--reuid=65534',
            '--regid=65534',
            '--clear-groups',
            process.execPath,
            'dist/cli/ambit.js',
            'demo',
            'up',
            '--dir',
            '/tmp/ambit-demo-nonroot',
            '--port',
            '0',
          ],
          { timeout: 20_000 },
          (err, _stdout, stderr) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, err: String(stderr) }),
        );
      });
    });
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/must run as root/);
  });

  it('up builds the mesh and reports it in ambit status; down removes everything', async () => {
    const d = await startDemo();
    started.push(d);
    const st = d.state();
    expect(st.ready).toBe(true);
    // Positive control: while it runs, the residue check finds the demo's objects.
    expect(netnsOf(d.prefix).length).toBeGreaterThanOrEqual(2 + 4 + 1);
    await expect(assertNoResidue(d.prefix)).rejects.toThrow(/netns/);

    const status = await ambit(['status', '--dir', d.dir, '-o', 'json']);
    expect(status.code, status.stderr).toBe(0);
    const report = JSON.parse(status.stdout) as {
      components: { role: string; running: boolean }[];
      capture: { mode: string }[];
      pods: { name: string; enrolled: boolean; capture?: string }[];
      certificates: { identity: string; expires?: string }[];
    };
    for (const role of ['ca', 'bpf-agent-node1', 'bpf-agent-node2', 'ztunnel-node1', 'ztunnel-node2']) {
      expect(report.components.find((c) => c.role === role)?.running, role).toBe(true);
    }
    expect(report.capture.map((c) => c.mode).every((m) => m === 'ebpf' || m === 'nftables')).toBe(true);
    expect(report.pods.find((p) => p.name === 'frontend')).toMatchObject({
      enrolled: true,
      capture: 'CAPTURE',
    });
    expect(report.pods.find((p) => p.name === 'legacy')?.enrolled).toBe(false);
    const cert = report.certificates.find((c) => c.identity === 'spiffe://cluster.local/ns/shop/sa/frontend');
    expect(Date.parse(cert?.expires ?? '')).toBeGreaterThan(Date.now());

    // A Pod dropped into the watched directory gets its namespace and program while the demo runs.
    writeFileSync(join(d.manifests, '.reviewer.tmp'), REVIEWER);
    renameSync(join(d.manifests, '.reviewer.tmp'), join(d.manifests, 'reviewer.yaml'));
    for (let i = 0; i < 100 && !d.output().includes('pod added: shop/reviewer'); i++) await sleep(100);
    expect(d.output()).toContain('pod added: shop/reviewer on node2 (10.244.2.30, in the mesh)');
    expect(netnsOf(d.prefix)).toContain(`${d.prefix}-p-reviewer`);

    const pids = d.state().processes.map((p) => p.pid);
    expect(pids.filter(alive).length).toBe(pids.length);
    const down = await demoDown(d);
    expect(down.code, down.stdout + down.stderr).toBe(0);
    expect(await d.exited).toBe(0); // the demo process stopped cleanly on down's SIGTERM
    expect(pids.filter(alive)).toEqual([]);
    expect(existsSync(d.dir)).toBe(false);
    await assertNoResidue(d.prefix);
  });

  it('down cleans up after kill -9 of the demo process', async () => {
    const d = await startDemo();
    started.push(d);
    const st = d.state();
    const pids = st.processes.map((p) => p.pid);
    d.child.kill('SIGKILL');
    await d.exited;
    // The crash left everything behind: that is what the state file is for.
    expect(netnsOf(d.prefix).length).toBeGreaterThan(0);
    expect(pids.filter(alive).length).toBeGreaterThan(0);
    // `ambit status` sees the dead demo, exits 1 and says what to do.
    const status = await ambit(['status', '--dir', d.dir]);
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/DEMO\s+pid \d+ NOT RUNNING/);
    expect(status.stdout).toMatch(/the demo process \(pid \d+\) is not running.*`sudo ambit demo down`/);
    // Without --purge, down keeps the logs (moved aside), to read what happened.
    const down = await ambit(['demo', 'down', '--dir', d.dir, '--prefix', d.prefix]);
    expect(down.code, down.stdout + down.stderr).toBe(0);
    expect(down.stdout).toMatch(/nothing left/);
    const kept = /logs kept in (\S+) /.exec(down.stdout)?.[1];
    expect(kept).toBeDefined();
    expect(readdirSync(kept!)).toContain('ztunnel-node1.log');
    expect(pids.filter(alive)).toEqual([]);
    await assertNoResidue(d.prefix);
    expect((await demoDown(d)).code).toBe(0); // --purge: the kept logs go too
    expect(existsSync(kept!)).toBe(false);
  });
});

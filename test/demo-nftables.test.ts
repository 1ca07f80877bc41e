// `ambit demo up --capture nftables` serves the waypoint path like eBPF mode (issue 13: requests through
// the waypoint used to fail with 503 there). Read as a user of the flow view would: the waypoint reports
// frontend's HTTP requests to web answered 200, and — once the catalog Service is put behind the
// waypoint too (its manifests are watched) — gRPC calls to catalog answered with gRPC status OK.
// Uses the demo's fixed resources: run under the shared lock (flock /tmp/ambit-heavy.lock).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { FlowRow } from '../cli/demo/flows.js';
import { demoDown, type RunningDemo, startDemo } from './demo-run.js';
import { assertNoResidue } from './harness/topology.js';

const root = process.getuid?.() === 0;

/** Rows of the flow view's event stream until `done` holds or `ms` pass (bounded). */
async function collectFlows(url: string, done: (rows: FlowRow[]) => boolean, ms: number): Promise<FlowRow[]> {
  const rows: FlowRow[] = [];
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    const res = await fetch(new URL('/api/flows', url), { signal: ac.signal });
    const reader = res.body!.getReader();
    let buf = '';
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += Buffer.from(value).toString();
      let i = buf.indexOf('\n\n');
      while (i >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (ev.startsWith('data: ')) rows.push(JSON.parse(ev.slice(6)) as FlowRow);
        i = buf.indexOf('\n\n');
      }
      if (done(rows)) break;
    }
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return rows;
}

const WAYPOINT = 'waypoint/shop/waypoint';
const httpOk = (r: FlowRow) =>
  r.reporter === WAYPOINT &&
  r.src.workload === 'frontend' &&
  r.dst.workload === 'web' &&
  r.l7?.status === 200 &&
  r.verdict === 'FORWARDED';
const grpcOk = (r: FlowRow) =>
  r.reporter === WAYPOINT &&
  r.dst.workload === 'catalog' &&
  r.l7?.grpcStatus === 0 &&
  r.verdict === 'FORWARDED';

describe.skipIf(!root)('ambit demo up --capture nftables: the waypoint path', () => {
  let d: RunningDemo | undefined;

  afterAll(async () => {
    if (!d) return;
    if (d.child.exitCode === null) d.child.kill('SIGKILL');
    await demoDown(d);
    rmSync(d.dir, { recursive: true, force: true });
    await assertNoResidue(d.prefix);
  }, 60_000);

  it('captures with nftables and the waypoint answers HTTP and gRPC', async () => {
    d = await startDemo(undefined, 150_000, ['--capture', 'nftables']);
    expect(d.state().captureMode).toBe('nftables');
    const http = await collectFlows(d.url, (rows) => rows.some(httpOk), 30_000);
    expect(http.some(httpOk), JSON.stringify(http.filter((r) => r.reporter === WAYPOINT).slice(-5))).toBe(
      true,
    );
    // No request through the waypoint failed (the nftables 503 / HBONE reset this guards against).
    expect(http.filter((r) => r.reporter === WAYPOINT && (r.l7?.status ?? 0) >= 500)).toEqual([]);

    // Put catalog behind the waypoint as well: its gRPC now takes the waypoint path, and (as with Istio)
    // catalog's L4 policy must then allow the waypoint's identity, which now opens the connections.
    const policies = join(d.manifests, 'policies.yaml');
    const pol = readFileSync(policies, 'utf8');
    const polAfter = pol.replace(
      'principals: [cluster.local/ns/shop/sa/frontend]',
      'principals: [cluster.local/ns/shop/sa/frontend, cluster.local/ns/shop/sa/waypoint]',
    );
    expect(polAfter).not.toBe(pol);
    writeFileSync(policies, polAfter);
    const services = join(d.manifests, 'services.yaml');
    const before = readFileSync(services, 'utf8');
    const after = before.replace(
      /(metadata:\n {2}name: catalog\n {2}namespace: shop\n)/,
      '$1  labels:\n    istio.io/use-waypoint: waypoint\n',
    );
    expect(after).not.toBe(before);
    writeFileSync(services, after);
    const grpc = await collectFlows(d.url, (rows) => rows.some(grpcOk), 40_000);
    expect(
      grpc.some(grpcOk),
      JSON.stringify(grpc.filter((r) => r.dst.workload === 'catalog').slice(-5)),
    ).toBe(true);
  }, 240_000);
});

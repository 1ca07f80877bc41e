// Standing adversarial suite, part 3: the manifest scenario against a running component. An alias
// bomb (CVE-2019-11253, a few hundred bytes) and a 50 MB file land in the WATCHED manifest directory of a
// real waypoint serving traffic through real HBONE: it keeps serving, both files are named in the errors
// with their reason, and a separate valid policy added afterwards is enforced (the app never sees the
// request it denies). The RSS bound is the (within 50 MB of before); latency figures are printed.
import { closeSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aliasBomb } from './adversarial-client.js';
import { LoopbackWorld, VIP_USERS } from './waypoint-loopback-world.js';

let w: LoopbackWorld;
let base: string;

beforeAll(async () => {
  w = await LoopbackWorld.create({ watch: true });
  const a = await w.clientRelay(`${VIP_USERS}:80`);
  base = `http://${a.host}:${a.port}`;
}, 60_000);

afterAll(async () => {
  await w?.close();
});

const get = async (path: string): Promise<number> => {
  const r = await request(`${base}${path}`);
  await r.body.text();
  return r.statusCode;
};

// A full collection before each RSS reading, so garbage the traffic left behind is not counted.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Requests /ok for `ms` (each bounded by undici's own timeouts); returns the codes and the median latency. */
const serve = async (ms: number): Promise<{ codes: number[]; medianMs: number }> => {
  const codes: number[] = [];
  const took: number[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const t0 = performance.now();
    codes.push(await get('/ok'));
    took.push(performance.now() - t0);
  }
  took.sort((a, b) => a - b);
  return { codes, medianMs: took[Math.floor(took.length / 2)] ?? Number.NaN };
};

const mib = (n: number): string => (n / 1048576).toFixed(1);

const denyAdmin = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin-late, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: users }]
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin"] } }] }]
`;

describe('manifest limits in a watched directory (kube-apiserver CVE-2019-11253 behaviour)', () => {
  it('an alias bomb and a 50 MB file are refused and named; traffic keeps flowing; a later valid policy is enforced', async () => {
    expect(await get('/admin')).toBe(200);
    // Twice the traffic of below first: what the requests themselves warm up (JIT, sessions, pools, about
    // 12 MiB per round here, flat after the second) is in the "before" figure, so the difference is what
    // the two files cost.
    let calm = { codes: [] as number[], medianMs: 0 };
    for (let round = 0; round < 2; round++) {
      calm = await serve(1500);
      expect(calm.codes.every((s) => s === 200)).toBe(true);
    }
    gc();
    const rssBefore = process.memoryUsage().rss;
    writeFileSync(join(w.dir, 'bomb.yaml'), aliasBomb());
    // 50 MB of YAML that would parse (one huge list), the size of a file that must never be read whole.
    const row = '- "0123456789012345678901234567890123456789012345678901234567890123456789"\n';
    // Written in 1 MiB pieces so the test itself never holds the 50 MB (the RSS figure is the component's).
    const piece = Buffer.from(row.repeat(Math.floor((1024 * 1024) / row.length)));
    const fd = openSync(join(w.dir, 'huge.yaml'), 'w');
    writeSync(fd, 'x:\n');
    for (let written = 0; written < 50 * 1024 * 1024; written += piece.length) writeSync(fd, piece);
    closeSync(fd);
    // Keep serving while the directory holds them.
    const attacked = await serve(1500);
    expect(attacked.codes.every((s) => s === 200)).toBe(true);
    const errors = w.source.errors().map((e) => e.message);
    expect(
      errors.some((m) => m.includes('bomb.yaml') && /document 1: .*alias/.test(m)),
      errors.join('\n'),
    ).toBe(true);
    expect(errors.some((m) => m.includes('huge.yaml') && /over the 8 MiB limit; not read/.test(m))).toBe(
      true,
    );
    gc();
    const rssAfter = process.memoryUsage().rss;
    // The process holds the waypoint, both ztunnel relays and the app: none of them grew by more than this.
    expect(rssAfter - rssBefore, `RSS ${mib(rssBefore)} -> ${mib(rssAfter)} MiB`).toBeLessThan(50 * 1048576);

    w.appSaw.length = 0;
    const added = Date.now();
    writeFileSync(join(w.dir, 'deny-admin.yaml'), denyAdmin);
    let status = 200;
    for (let i = 0; i < 200 && status !== 403; i++) {
      status = await get('/admin');
      if (status !== 403) await new Promise((r) => setTimeout(r, 20));
    }
    const enforcedMs = Date.now() - added;
    expect(status).toBe(403);
    const sawAdminAfterEnforced = w.appSaw.filter((s) => s.url === '/admin').length;
    expect(await get('/admin')).toBe(403);
    expect(w.appSaw.filter((s) => s.url === '/admin').length).toBe(sawAdminAfterEnforced);
    expect(await get('/ok')).toBe(200);
    console.log(
      `[adversarial-manifests] policy enforced ${enforcedMs} ms after it was written; RSS ${mib(rssBefore)} -> ${mib(rssAfter)} MiB with the bomb and the 50 MB file in the directory; median /ok latency ${calm.medianMs.toFixed(2)} ms before, ${attacked.medianMs.toFixed(2)} ms with them (${calm.codes.length} and ${attacked.codes.length} requests)`,
    );

    // Later edits still apply: the bomb file fixed into a valid policy takes effect.
    writeFileSync(
      join(w.dir, 'bomb.yaml'),
      denyAdmin.replace('deny-admin-late', 'was-a-bomb').replace('/admin', '/was-bomb'),
    );
    rmSync(join(w.dir, 'huge.yaml'));
    let fixed = 200;
    for (let i = 0; i < 200 && fixed !== 403; i++) {
      fixed = await get('/was-bomb');
      if (fixed !== 403) await new Promise((r) => setTimeout(r, 20));
    }
    expect(fixed).toBe(403);
    expect(w.source.errors()).toEqual([]);
  }, 60_000);
});

// Standing adversarial suite, part 2: path normalization, each of Istio's meshConfig.pathNormalization
// settings (https://istio.io/latest/docs/reference/config/security/normalization/), over HTTP/1.1 and
// HTTP/2, through a real HBONE tunnel to the real waypoint. For every encoding of a denied path the suite
// checks the answer AND what the app received: a refused request never reaches it, and an allowed one
// reaches it with exactly the normalized path that policy and routes matched (Envoy forwards the
// normalized path). BASE and MERGE_SLASHES let `%2F` through unchanged, as Istio documents
// (CVE-2021-31920); only DECODE_AND_MERGE_SLASHES decodes it.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PathNormalization } from '../core/http/request-target.js';
import { badRequestH2, rawExchange, rawH2, statuses } from './adversarial-client.js';
import { LoopbackWorld, VIP_USERS } from './waypoint-loopback-world.js';

const USERS = `${VIP_USERS}:80`;

const policy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: users }]
  action: DENY
  rules:
    - to: [{ operation: { paths: ["/admin", "/admin/*"] } }]
`;
// Routes match the normalized path too: /v2only goes to users-v2.
const route = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: users-v2only, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: users, port: 80 }]
  rules:
    - matches: [{ path: { type: Exact, value: /v2only } }]
      backendRefs: [{ name: users-v2, port: 80 }]
    - backendRefs: [{ name: users, port: 80 }]
`;

type Outcome = 403 | 400 | { path: string; app?: string };
type Row = [target: string, by: Record<PathNormalization, Outcome>];
const all = (o: Outcome): Record<PathNormalization, Outcome> => ({
  NONE: o,
  BASE: o,
  MERGE_SLASHES: o,
  DECODE_AND_MERGE_SLASHES: o,
});
const fwd = (path: string, app?: string): Outcome => (app ? { path, app } : { path });

const ROWS: Row[] = [
  ['/admin', all(403)],
  ['/admin/./secret', all(403)],
  ['/%61dmin', { ...all(403), NONE: fwd('/%61dmin') }],
  ['/%41dmin', { ...all(fwd('/Admin')), NONE: fwd('/%41dmin') }],
  ['/x/../admin', { ...all(403), NONE: fwd('/x/../admin') }],
  ['/x/%2e%2E/admin/secret', { ...all(403), NONE: fwd('/x/%2e%2E/admin/secret') }],
  ['/%2e%2e/admin', { ...all(403), NONE: fwd('/%2e%2e/admin') }],
  ['/x\\..\\admin', { ...all(403), NONE: fwd('/x\\..\\admin') }],
  [
    '//admin',
    { NONE: fwd('//admin'), BASE: fwd('//admin'), MERGE_SLASHES: 403, DECODE_AND_MERGE_SLASHES: 403 },
  ],
  ['/admin//secret', all(403)],
  ['/x%2F..%2Fadmin', { ...all(fwd('/x%2F..%2Fadmin')), DECODE_AND_MERGE_SLASHES: 403 }],
  ['/admin%2Fsecret', { ...all(fwd('/admin%2Fsecret')), DECODE_AND_MERGE_SLASHES: 403 }],
  ['/%2Fadmin', { ...all(fwd('/%2Fadmin')), DECODE_AND_MERGE_SLASHES: 403 }],
  ['/admin%5csecret', { ...all(fwd('/admin%5csecret')), DECODE_AND_MERGE_SLASHES: 403 }],
  ['/a%00b', all(400)],
  ['/a#frag', all(400)],
  ['/a%zz', all(400)],
  ['/ok?next=/admin&x=%2e%2e', all(fwd('/ok?next=/admin&x=%2e%2e'))],
  ['/ok/./x/../%79', { ...all(fwd('/ok/y')), NONE: fwd('/ok/./x/../%79') }],
  ['/%76%32only', { ...all(fwd('/v2only', 'v2')), NONE: fwd('/%76%32only') }],
  ['/x/../v2only', { ...all(fwd('/v2only', 'v2')), NONE: fwd('/x/../v2only') }],
];

for (const mode of ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
  describe(`pathNormalization ${mode}`, () => {
    let w: LoopbackWorld;
    beforeAll(async () => {
      w = await LoopbackWorld.create(mode === 'BASE' ? {} : { waypoint: { pathNormalization: mode } });
      w.write('policy.yaml', policy);
      await w.apply('route.yaml', route);
    }, 60_000);
    afterAll(async () => {
      await w?.close();
    });
    beforeEach(() => {
      w.appSaw.length = 0;
    });

    const check = (target: string, expected: Outcome, status: number | undefined, refusedBelow: boolean) => {
      const label = `${mode} ${target}`;
      if (expected === 403) {
        expect(status, label).toBe(403);
        expect(w.appSaw, label).toEqual([]);
      } else if (expected === 400) {
        expect(status === 400 || refusedBelow, `${label}: ${status}`).toBe(true);
        expect(w.appSaw, label).toEqual([]);
      } else {
        expect(status, label).toBe(200);
        expect(
          w.appSaw.map((s) => s.url),
          label,
        ).toEqual([expected.path]);
        expect(w.appSaw[0]?.app, label).toBe(expected.app ?? 'v1');
      }
    };

    it('HTTP/1.1: every encoding of a denied path is refused or reaches the app exactly as policy saw it', async () => {
      for (const [target, by] of ROWS) {
        w.appSaw.length = 0;
        const text = await rawExchange(
          w,
          USERS,
          `GET ${target} HTTP/1.1\r\nHost: users\r\n\r\n`,
          (t) => /\r\n\r\n/.test(t) && (!t.startsWith('HTTP/1.1 200') || t.includes('"version"')),
        );
        check(target, by[mode], statuses(text)[0], false);
      }
    }, 60_000);

    it('HTTP/2: the same over :path', async () => {
      for (const [target, by] of ROWS) {
        w.appSaw.length = 0;
        const a = await rawH2(w, USERS, [
          [':method', 'GET'],
          [':scheme', 'http'],
          [':path', target],
          [':authority', 'users'],
        ]);
        // The HTTP/2 answer's status is known for 200/400 (static table); 403 is checked through the app log.
        const status = a.status ?? (a.headerByte !== undefined ? 403 : undefined);
        check(target, by[mode], status, badRequestH2(a));
        if (by[mode] !== 400) await expectServed(w, by[mode]);
      }
    }, 60_000);
  });
}

/** After an HTTP/2 answer, the app log settles (the response can overtake the app's log push). */
async function expectServed(w: LoopbackWorld, o: Outcome): Promise<void> {
  if (o === 403 || o === 400) return;
  for (let i = 0; i < 20 && w.appSaw.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(w.appSaw.length).toBe(1);
}

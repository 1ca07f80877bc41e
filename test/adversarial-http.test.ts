// Standing adversarial suite, part 1: upgrades, methods, header hygiene, request smuggling and
// absolute-form targets, sent as an attacker would through a real HBONE tunnel to the real waypoint
// (test/waypoint-loopback-world.ts: real CA, mTLS, HTTP/2 CONNECT, real apps). Every refusal asserts what
// the application received (world.appSaw), not only the status. Each case names the Envoy/Istio behaviour
// it follows.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { badRequestH2, h2Request, rawExchange, rawH2, refusedH2, statuses } from './adversarial-client.js';
import { LoopbackWorld, VIP_PRODUCTS, VIP_USERS } from './waypoint-loopback-world.js';

let w: LoopbackWorld;
let base: string;
const USERS = `${VIP_USERS}:80`;

const denyAdmin = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: users }]
  action: DENY
  rules:
    - to: [{ operation: { paths: ["/admin", "/admin/*"] } }]
    - to: [{ operation: { hosts: ["evil.example", "evil.example:*"] } }]
`;

beforeAll(async () => {
  w = await LoopbackWorld.create();
  await w.apply('policy.yaml', denyAdmin);
  const a = await w.clientRelay(USERS);
  base = `http://${a.host}:${a.port}`;
}, 60_000);

afterAll(async () => {
  await w?.close();
});

beforeEach(() => {
  w.appSaw.length = 0;
});

/** Whether any app received anything naming `needle` (a parsed request URL or raw upgrade bytes). */
const appSawAny = (needle: string): boolean =>
  w.appSaw.some((s) => s.url.includes(needle) || (s.raw ?? '').includes(needle));

const twoResponses = (t: string) => statuses(t).length >= 2;

describe('HTTP/1.1 Upgrade (Envoy upgrade_configs: websocket only, tunnel after the upstream 101)', () => {
  it('h2c is not tunnelled: served as a plain request without Upgrade, and a pipelined denied request is still refused', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'GET /ok HTTP/1.1\r\nHost: users\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n' +
        'GET /admin/secret HTTP/1.1\r\nHost: users\r\n\r\n',
      twoResponses,
    );
    expect(statuses(text)).toEqual([200, 403]);
    expect(text).toContain('RBAC: access denied');
    const ok = w.appSaw.find((s) => s.url === '/ok');
    expect(ok?.upgrade).toBe(false);
    expect(ok?.headers.upgrade).toBeUndefined();
    expect(ok?.headers['http2-settings']).toBeUndefined();
    expect(appSawAny('/admin')).toBe(false);
  });

  it('an unknown upgrade type is a plain request too (its body is read as HTTP, not piped)', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'POST /echo HTTP/1.1\r\nHost: users\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\nContent-Length: 5\r\n\r\nhello' +
        'DELETE /admin/x HTTP/1.1\r\nHost: users\r\n\r\n',
      twoResponses,
    );
    expect(statuses(text)).toEqual([200, 403]);
    expect(text).toContain('"body":"hello"');
    expect(w.appSaw.filter((s) => s.upgrade)).toEqual([]);
    expect(appSawAny('/admin')).toBe(false);
  });

  it('a WebSocket upgrade the upstream answers 404 keeps the connection HTTP: the bytes after it are authorized on their own (403), never piped', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'GET /no-upgrade HTTP/1.1\r\nHost: users\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n' +
        'GET /admin/secret HTTP/1.1\r\nHost: users\r\n\r\n',
      twoResponses,
    );
    expect(statuses(text)).toEqual([404, 403]);
    const refused = w.appSaw.find((s) => s.url === '/no-upgrade');
    expect(refused?.upgrade).toBe(true);
    // Nothing after the upgrade request reached the app, neither as a request nor as raw bytes.
    expect(refused?.raw).toBe('');
    expect(appSawAny('/admin')).toBe(false);
  });

  it('a WebSocket upgrade is tunnelled after 101, with the same sanitation as any request (no client XFCC, Connection-named headers gone)', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'GET /ws HTTP/1.1\r\nHost: users\r\nConnection: Upgrade, X-Drop-Me\r\nUpgrade: websocket\r\nX-Drop-Me: 1\r\nX-Forwarded-Client-Cert: By=spiffe://evil;URI=spiffe://cluster.local/ns/demo/sa/admin\r\n\r\nping',
      (t) => t.endsWith('ping'),
    );
    expect(text).toMatch(/^HTTP\/1\.1 101 /);
    expect(text.endsWith('ping')).toBe(true);
    const saw = w.appSaw.find((s) => s.url === '/ws');
    expect(saw?.upgrade).toBe(true);
    expect(saw?.headers['x-forwarded-client-cert']).toBeUndefined();
    expect(saw?.headers['x-drop-me']).toBeUndefined();
  });

  it('a denied WebSocket upgrade gets 403 and never reaches the app', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'GET /admin/ws HTTP/1.1\r\nHost: users\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
      (t) => statuses(t).length >= 1,
    );
    expect(statuses(text)).toEqual([403]);
    expect(appSawAny('/admin')).toBe(false);
  });

  it('CONNECT (HTTP/1.1) and HTTP/2 extended CONNECT (RFC 8441, not offered) are refused; the app sees nothing', async () => {
    const text = await rawExchange(w, USERS, 'CONNECT users:80 HTTP/1.1\r\nHost: users:80\r\n\r\n', (t) =>
      t.includes('\r\n\r\n'),
    );
    expect(statuses(text)).toEqual([400]);
    const ext = await rawH2(w, USERS, [
      [':method', 'CONNECT'],
      [':protocol', 'websocket'],
      [':scheme', 'http'],
      [':path', '/ws'],
      [':authority', 'users'],
    ]);
    expect(refusedH2(ext), JSON.stringify(ext)).toBe(true);
    const plain = await rawH2(w, USERS, [
      [':method', 'CONNECT'],
      [':authority', 'users:80'],
    ]);
    expect(refusedH2(plain), JSON.stringify(plain)).toBe(true);
    expect(w.appSaw).toEqual([]);
  });
});

describe('methods (Istio normalization: methods are upper-case tokens, else 400)', () => {
  it('HTTP/2 :method that is not an upper-case token gets 400; the app sees nothing', async () => {
    for (const method of ['get', 'Get', 'G@T', 'GET ', 'DEL\tETE', '']) {
      const r = await rawH2(w, USERS, [
        [':method', method],
        [':scheme', 'http'],
        [':path', '/ok'],
        [':authority', 'users'],
      ]);
      expect(badRequestH2(r), `${JSON.stringify(method)}: ${JSON.stringify(r)}`).toBe(true);
    }
    // the same request with a valid method is served (so the refusals above are about the method)
    const ok = await rawH2(w, USERS, [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/ok'],
      [':authority', 'users'],
    ]);
    expect(ok.status).toBe(200);
    w.appSaw.length = 0;
    expect(w.appSaw).toEqual([]);
  });

  it('HTTP/1.1 methods that are not upper case or unknown get 400 (detected as HTTP like Envoy http_inspector, then Node strict parser)', async () => {
    for (const line of ['get /ok HTTP/1.1', 'Get /ok HTTP/1.1', 'GET! /ok HTTP/1.1']) {
      const text = await rawExchange(w, USERS, `${line}\r\nHost: users\r\n\r\n`, (t) =>
        t.includes('\r\n\r\n'),
      );
      expect(statuses(text)).toEqual([400]);
    }
    expect(w.appSaw).toEqual([]);
  });
});

describe('header hygiene (RFC 9110 §7.6.1, RFC 9112 §3.2, RFC 9113 §8.2.2/§8.3.1)', () => {
  it('duplicate Host (HTTP/1.1) gets 400, whichever copy names the denied host', async () => {
    for (const hosts of [
      ['users', 'evil.example'],
      ['evil.example', 'users'],
    ]) {
      const text = await rawExchange(
        w,
        USERS,
        `GET /ok HTTP/1.1\r\nHost: ${hosts[0]}\r\nHost: ${hosts[1]}\r\n\r\n`,
        (t) => t.includes('\r\n\r\n'),
      );
      expect(statuses(text)).toEqual([400]);
    }
    expect(w.appSaw).toEqual([]);
  });

  it('HTTP/1.1 without Host gets 400', async () => {
    const text = await rawExchange(w, USERS, 'GET /ok HTTP/1.1\r\nX: y\r\n\r\n', (t) =>
      t.includes('\r\n\r\n'),
    );
    expect(statuses(text)).toEqual([400]);
    expect(w.appSaw).toEqual([]);
  });

  it('HTTP/2 Host that differs from :authority gets 400; the same one is accepted', async () => {
    const bad = await rawH2(w, USERS, [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/ok'],
      [':authority', 'users'],
      ['host', 'evil.example'],
    ]);
    expect(badRequestH2(bad), JSON.stringify(bad)).toBe(true);
    expect(w.appSaw).toEqual([]);
    const same = await h2Request(base, {
      ':method': 'GET',
      ':path': '/ok',
      ':authority': 'users',
      host: 'USERS',
    });
    expect(same.status).toBe(200);
  });

  it('HTTP/2 TE other than "trailers" and connection-specific headers are refused (never forwarded)', async () => {
    for (const h of [
      ['te', 'gzip'],
      ['connection', 'keep-alive'],
      ['transfer-encoding', 'chunked'],
      ['upgrade', 'websocket'],
      ['keep-alive', 'timeout=5'],
      ['proxy-connection', 'keep-alive'],
      ['X-Upper', 'case'],
    ] as [string, string][]) {
      const r = await rawH2(w, USERS, [
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/ok'],
        [':authority', 'users'],
        h,
      ]);
      expect(badRequestH2(r), `${h[0]}: ${JSON.stringify(r)}`).toBe(true);
    }
    expect(w.appSaw).toEqual([]);
  });

  it('hop-by-hop headers and those named in Connection are stripped; XFCC from the client is removed', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'GET /ok HTTP/1.1\r\nHost: users\r\nConnection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip, trailers\r\nProxy-Authorization: Basic eDp5\r\nX-Forwarded-Client-Cert: URI=spiffe://cluster.local/ns/demo/sa/admin\r\nX-Kept: yes\r\n\r\n',
      (t) => t.includes('"version"'),
    );
    expect(statuses(text)).toEqual([200]);
    const h = w.appSaw[0]?.headers ?? {};
    for (const k of [
      'x-secret-hop',
      'keep-alive',
      'proxy-connection',
      'proxy-authorization',
      'x-forwarded-client-cert',
    ])
      expect(h[k], k).toBeUndefined();
    expect(h.te).toBe('trailers');
    expect(h['x-kept']).toBe('yes');
  });
});

describe('request smuggling (Node strict llhttp, as Envoy: 400 and the connection closes)', () => {
  const smuggled = 'GET /admin/secret HTTP/1.1\r\nHost: users\r\n\r\n';
  const cases: [string, string][] = [
    [
      'CL and TE',
      'POST /ok HTTP/1.1\r\nHost: users\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ],
    [
      'TE not chunked-last',
      'POST /ok HTTP/1.1\r\nHost: users\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
    ],
    ['obfuscated TE', 'POST /ok HTTP/1.1\r\nHost: users\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'],
    [
      'two Content-Length',
      'POST /ok HTTP/1.1\r\nHost: users\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n',
    ],
    [
      'space before colon',
      'POST /ok HTTP/1.1\r\nHost: users\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
    ],
    ['obs-fold', 'GET /ok HTTP/1.1\r\nHost: users\r\nX-A: a\r\n b\r\n\r\n'],
    ['bare LF', 'GET /ok HTTP/1.1\nHost: users\n\n'],
  ];
  for (const [name, head] of cases) {
    it(`${name}: 400, and the smuggled request never reaches the app`, async () => {
      const text = await rawExchange(w, USERS, head + smuggled, (t) => t.includes('\r\n\r\n'), 3000);
      expect(statuses(text)[0]).toBe(400);
      expect(statuses(text)).not.toContain(200);
      expect(appSawAny('/admin')).toBe(false);
    });
  }
});

describe('absolute-form targets (RFC 9112 §3.2.2; Envoy takes path and authority from the URI)', () => {
  it('the path inside an absolute URI is normalized and authorized: 403, app never sees it', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'GET http://users/x/../admin/secret HTTP/1.1\r\nHost: users\r\n\r\n',
      (t) => t.includes('\r\n\r\n'),
    );
    expect(statuses(text)).toEqual([403]);
    expect(appSawAny('admin')).toBe(false);
  });

  it('`hosts` rules are checked against the URI authority, not Host: 403', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'GET http://evil.example/ok HTTP/1.1\r\nHost: users\r\n\r\n',
      (t) => t.includes('\r\n\r\n'),
    );
    expect(statuses(text)).toEqual([403]);
    expect(w.appSaw).toEqual([]);
  });

  it('an allowed absolute-form request reaches the app in origin-form with Host = the URI authority', async () => {
    const text = await rawExchange(
      w,
      USERS,
      'GET http://users.demo:80/a/./b?q=1 HTTP/1.1\r\nHost: ignored\r\n\r\n',
      (t) => t.includes('"version"'),
    );
    expect(statuses(text)).toEqual([200]);
    expect(w.appSaw[0]?.url).toBe('/a/b?q=1');
    expect(w.appSaw[0]?.headers.host).toBe('users.demo:80');
  });
});

describe('gRPC paths are normalized before policy too (Istio BASE; the app answers UNIMPLEMENTED to a path it does not know)', () => {
  it('an encoded DeleteProduct is PERMISSION_DENIED at the waypoint; an encoded GetProduct reaches the app normalized', async () => {
    await w.apply(
      'grpc-policy.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-delete, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: products }]
  action: DENY
  rules:
    - to: [{ operation: { paths: ["/shop.v1.ProductService/DeleteProduct"] } }]
`,
    );
    const a = await w.clientRelay(`${VIP_PRODUCTS}:9000`);
    const client = new grpc.Client(`${a.host}:${a.port}`, grpc.credentials.createInsecure());
    // GetProduct/DeleteProduct({id: "42"}): protobuf field 1 (string) "42"; the answer is kept as bytes.
    const call = (path: string) =>
      new Promise<{ code: number; body?: Buffer }>((resolve) => {
        client.makeUnaryRequest(
          path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from([0x0a, 0x02, 0x34, 0x32]),
          { deadline: Date.now() + 5000 },
          (err, body) => resolve(err ? { code: err.code } : { code: 0, ...(body ? { body } : {}) }),
        );
      });
    try {
      for (const path of [
        '/shop.v1.ProductService/DeleteProduct',
        '/shop.v1.ProductService/%44eleteProduct',
        '/shop.v1.ProductService/x/../DeleteProduct',
        '/shop.v1.%50roductService/%44elete%50roduct',
      ])
        expect((await call(path)).code, path).toBe(grpc.status.PERMISSION_DENIED);
      const ok = await call('/shop.v1.ProductService/%47etProduct');
      expect(ok.code).toBe(grpc.status.OK);
      expect(ok.body?.toString('latin1')).toContain('product 42');
    } finally {
      client.close();
      await w.remove('grpc-policy.yaml');
    }
  });
});

// The waypoint driven directly over loopback: real HBONE (mTLS + HTTP/2 CONNECT) from a client identity,
// real HTTP/1.1 (undici) and gRPC (@grpc/grpc-js) clients and servers, the real L7 engine and routes.
// The through-ztunnel version on network namespaces is test/waypoint-e2e.test.ts.
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { Client, request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { H2_PREFACE } from '../waypoint/detect.js';
import { readAll, withTimeout } from './hbone-fixtures.js';
import { series } from './ztunnel-world.js';
import {
  CLIENT,
  LoopbackWorld,
  OTHER_CLIENT,
  VIP_OTHER,
  VIP_PRODUCTS,
  VIP_TCP,
  VIP_USERS,
  loadProductService,
} from './waypoint-loopback-world.js';

let w: LoopbackWorld;

beforeAll(async () => {
  w = await LoopbackWorld.create();
}, 60_000);

afterAll(async () => {
  await w?.close();
});

afterEach(async () => {
  w.usersDelayMs = 0;
  w.failNext = 0;
  for (const f of ['policy.yaml', 'route.yaml']) await w.remove(f);
});

const users = async () => {
  const a = await w.clientRelay(`${VIP_USERS}:80`);
  return `http://${a.host}:${a.port}`;
};

const seedPolicy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: users-api, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: users }]
  action: ALLOW
  rules:
    - to: [{ operation: { methods: [GET], paths: ["/api/v1/users", "/api/v1/users/*"] } }]
`;

describe('waypoint over loopback HBONE', () => {
  it('allows HTTP GET to /api/v1/users but denies HTTP DELETE with 403 RBAC: access denied', async () => {
    await w.apply('policy.yaml', seedPolicy);
    const base = await users();
    const get = await request(`${base}/api/v1/users`);
    expect(get.statusCode).toBe(200);
    const body = (await get.body.json()) as { method: string; path: string };
    expect(body).toMatchObject({ method: 'GET', path: '/api/v1/users' });
    const del = await request(`${base}/api/v1/users`, { method: 'DELETE' });
    expect(del.statusCode).toBe(403);
    expect(await del.body.text()).toBe('RBAC: access denied');
    const metrics = await w.metrics();
    expect(
      series(metrics, 'istio_requests_total', {
        reporter: 'waypoint',
        response_code: '403',
        response_flags: 'RBAC',
      }).length,
    ).toBe(1);
    expect(
      series(metrics, 'istio_requests_total', {
        reporter: 'waypoint',
        response_code: '200',
        source_principal: 'spiffe://cluster.local/ns/demo/sa/client',
        destination_service: 'users.demo.svc.cluster.local',
        destination_principal: 'spiffe://cluster.local/ns/demo/sa/users',
      })[0]?.value,
    ).toBeGreaterThanOrEqual(1);
    expect(metrics).toContain('istio_request_duration_milliseconds_bucket{');
  });

  it('gRPC: allows ProductService.GetProduct, denies DeleteProduct with PERMISSION_DENIED (7)', async () => {
    await w.apply(
      'policy.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: products, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: products }]
  action: ALLOW
  rules:
    - to: [{ operation: { paths: ["/shop.v1.ProductService/GetProduct"] } }]
`,
    );
    const a = await w.clientRelay(`${VIP_PRODUCTS}:9000`);
    const ProductService = loadProductService();
    const client = new ProductService(
      `${a.host}:${a.port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as grpc.Client & {
      getProduct(
        req: { id: string },
        cb: (err: grpc.ServiceError | null, res?: { id: string; name: string; servedBy: string }) => void,
      ): void;
      deleteProduct(req: { id: string }, cb: (err: grpc.ServiceError | null, res?: unknown) => void): void;
    };
    try {
      const product = await new Promise<{ id: string; name: string; servedBy: string }>((resolve, reject) =>
        client.getProduct({ id: '42' }, (err, res) => (err ? reject(err) : resolve(res!))),
      );
      expect(product).toEqual({ id: '42', name: 'product 42', servedBy: 'products-1' });
      const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
        client.deleteProduct({ id: '42' }, (e) =>
          e ? resolve(e) : reject(new Error('DeleteProduct succeeded')),
        ),
      );
      expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(err.details).toBe('RBAC: access denied');
      const metrics = await w.metrics();
      expect(
        series(metrics, 'istio_requests_total', { request_protocol: 'grpc', grpc_response_status: '7' })
          .length,
      ).toBe(1);
      expect(
        series(metrics, 'istio_requests_total', { request_protocol: 'grpc', grpc_response_status: '0' })
          .length,
      ).toBe(1);
    } finally {
      client.close();
    }
  });

  it("matches a policy naming the client's principal, and the destination sees the waypoint's identity", async () => {
    await w.apply(
      'policy.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: only-client, namespace: demo }
spec:
  targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }]
  action: ALLOW
  rules:
    - from: [{ source: { principals: ["cluster.local/ns/demo/sa/client"] } }]
`,
    );
    const dest = w.destinations.get(w.ip(11))!;
    const before = dest.peers.length;
    const mine = await w.clientRelay(`${VIP_USERS}:80`, CLIENT);
    const theirs = await w.clientRelay(`${VIP_USERS}:80`, OTHER_CLIENT);
    const ok = await request(`http://${mine.host}:${mine.port}/api/v1/users`);
    expect(ok.statusCode).toBe(200);
    await ok.body.text();
    const denied = await request(`http://${theirs.host}:${theirs.port}/api/v1/users`);
    expect(denied.statusCode).toBe(403);
    await denied.body.text();
    // Any new tunnel the destination accepted came from the waypoint's identity, never the client's.
    const seen = dest.peers.slice(before);
    for (const p of seen) expect(p).toBe('spiffe://cluster.local/ns/demo/sa/waypoint');
    expect(dest.peers).toContain('spiffe://cluster.local/ns/demo/sa/waypoint');
    expect(dest.peers).not.toContain('spiffe://cluster.local/ns/demo/sa/client');
  });

  it('serves a workload addressed by pod IP that is bound to the waypoint (waypoint-for: all)', async () => {
    await w.apply(
      'policy.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: gw-no-delete, namespace: demo }
spec:
  targetRefs: [{ kind: Gateway, group: gateway.networking.k8s.io, name: waypoint }]
  action: DENY
  rules:
    - to: [{ operation: { methods: [DELETE] } }]
`,
    );
    const a = await w.clientRelay(`${w.ip(15)}:8080`);
    const get = await request(`http://${a.host}:${a.port}/pod`);
    expect(get.statusCode).toBe(200);
    expect(((await get.body.json()) as { version: string }).version).toBe('direct');
    const del = await request(`http://${a.host}:${a.port}/pod`, { method: 'DELETE' });
    expect(del.statusCode).toBe(403);
    await del.body.text();
    // A pod that is not bound (users-v1 has no use-waypoint label of its own) is refused at CONNECT.
    await expect(w.tunnel(`${w.ip(11)}:8080`)).rejects.toMatchObject({
      message: expect.stringContaining('400'),
    });
  });

  it('refuses a tunnel whose authority is not bound to this waypoint with 400', async () => {
    await expect(w.tunnel(`${VIP_OTHER}:80`)).rejects.toMatchObject({
      message: expect.stringContaining('400'),
    });
    await expect(w.tunnel('10.1.2.3:80')).rejects.toMatchObject({ message: expect.stringContaining('400') });
  });

  it('splits an HTTPRoute 90/10 within 90±5% over 1,000 requests', async () => {
    await w.apply(
      'route.yaml',
      `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: users-split, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: users, port: 80 }]
  rules:
    - backendRefs:
        - { name: users, port: 80, weight: 90 }
        - { name: users-v2, port: 80, weight: 10 }
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [{ name: x-route, value: split }] }
        - type: ResponseHeaderModifier
          responseHeaderModifier: { add: [{ name: x-served-through, value: waypoint }] }
`,
    );
    const base = await users();
    const client = new Client(base);
    try {
      let v1 = 0;
      let v2 = 0;
      const one = async (): Promise<void> => {
        const r = await client.request({
          path: '/split',
          method: 'GET',
          headers: {
            'x-forwarded-client-cert':
              'By=spiffe://forged;URI=spiffe://cluster.local/ns/kube-system/sa/admin',
          },
        });
        expect(r.statusCode).toBe(200);
        expect(r.headers['x-served-through']).toBe('waypoint');
        const b = (await r.body.json()) as { version: string; headers: Record<string, string> };
        expect(b.headers['x-route']).toBe('split');
        expect(b.headers['x-forwarded-client-cert']).toBeUndefined();
        if (b.version === 'v1') v1++;
        else v2++;
      };
      for (let i = 0; i < 100; i++) await Promise.all(Array.from({ length: 10 }, one));
      expect(v1 + v2).toBe(1000);
      expect(v1 / 1000).toBeGreaterThanOrEqual(0.85);
      expect(v1 / 1000).toBeLessThanOrEqual(0.95);
    } finally {
      await client.close();
    }
  }, 60_000);

  it('turns one injected 503 into 200 with 2 retry attempts', async () => {
    await w.apply(
      'route.yaml',
      `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: users-retry, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: users }]
  rules:
    - backendRefs: [{ name: users, port: 80 }]
      retry: { attempts: 2, codes: [503], backoff: 10ms }
`,
    );
    const base = await users();
    w.failNext = 1;
    const r = await request(`${base}/retry-me`);
    expect(r.statusCode).toBe(200);
    await r.body.text();
    expect(w.failNext).toBe(0);
    // Without the retry the same failure reaches the client.
    await w.remove('route.yaml');
    w.failNext = 1;
    const r2 = await request(`${base}/retry-me`);
    expect(r2.statusCode).toBe(503);
    await r2.body.text();
  });

  it('answers 504 when a 100 ms request timeout expires against a slow backend', async () => {
    await w.apply(
      'route.yaml',
      `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: users-timeout, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: users }]
  rules:
    - backendRefs: [{ name: users, port: 80 }]
      timeouts: { request: 100ms }
`,
    );
    const base = await users();
    w.usersDelayMs = 2000;
    const r = await request(`${base}/slow`);
    expect(r.statusCode).toBe(504);
    expect(await r.body.text()).toBe('upstream request timeout');
  });
});

describe('waypoint protections (loopback)', () => {
  it('answers oversized headers with 431 while another client keeps getting 200', async () => {
    const base = await users();
    const big = await request(`${base}/x`, { headers: { 'x-big': 'a'.repeat(20_000) } });
    expect(big.statusCode).toBe(431);
    await big.body.text();
    const ok = await request(`${base}/x`);
    expect(ok.statusCode).toBe(200);
    await ok.body.text();
  });

  it('forwards request bodies, and answers 413 for one larger than the retry buffer (64 KiB here)', async () => {
    const base = await users();
    const small = await request(`${base}/echo`, { method: 'POST', body: 'x'.repeat(1000) });
    expect(small.statusCode).toBe(200);
    expect(((await small.body.json()) as { body: string }).body).toBe('x'.repeat(1000));
    const big = await request(`${base}/echo`, { method: 'POST', body: Buffer.alloc(200 * 1024, 0x61) });
    expect(big.statusCode).toBe(413);
    await big.body.text();
  });

  it('carries an HTTP/1.1 Upgrade (WebSocket-like) after authorizing it, and refuses a denied one with 403', async () => {
    await w.apply(
      'policy.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin-ws, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: users }]
  action: DENY
  rules:
    - to: [{ operation: { paths: ["/admin/*"] } }]
`,
    );
    const upgrade = async (path: string): Promise<string> => {
      const t = await w.tunnel(`${VIP_USERS}:80`);
      const got: Buffer[] = [];
      t.on('data', (c: Buffer) => {
        got.push(c);
        const text = Buffer.concat(got).toString();
        if (text.startsWith('HTTP/1.1 101') && !text.includes('ping')) t.write('ping');
        if (text.includes('ping') || text.startsWith('HTTP/1.1 403')) t.end();
      });
      t.write(`GET ${path} HTTP/1.1\r\nHost: users\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
      await withTimeout(
        new Promise<void>((resolve) => {
          t.once('close', () => resolve());
          t.once('error', () => resolve());
        }),
        8000,
        'upgrade exchange',
      ).finally(() => t.destroy());
      return Buffer.concat(got).toString();
    };
    const ok = await upgrade('/ws');
    expect(ok).toMatch(/^HTTP\/1\.1 101 Switching Protocols/);
    expect(ok.endsWith('ping')).toBe(true);
    const denied = await upgrade('/admin/ws');
    expect(denied).toMatch(/^HTTP\/1\.1 403 /);
    expect(denied).toContain('RBAC: access denied');
  });

  it('answers a malformed request line with 400', async () => {
    const t = await w.tunnel(`${VIP_USERS}:80`);
    t.end('GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n');
    const text = (await readAll(t)).toString();
    expect(text.startsWith('HTTP/1.1 400 Bad Request')).toBe(true);
  });

  it('answers a slowloris client with 408 and cuts it off while others keep succeeding', async () => {
    const t = await w.tunnel(`${VIP_USERS}:80`);
    t.write('GET /slow HTTP/1.1\r\nHost: users\r\n');
    const chunks: Buffer[] = [];
    t.on('data', (c: Buffer) => chunks.push(c));
    // Trickle one header line every 200 ms: the head never completes within headersTimeoutMs (1 s here).
    const trickle = setInterval(() => {
      if (!t.destroyed && t.writable) t.write(`x-${Date.now()}: y\r\n`);
    }, 200);
    try {
      const base = await users();
      const ok = await request(`${base}/x`);
      expect(ok.statusCode).toBe(200);
      await ok.body.text();
      await withTimeout(
        new Promise<void>((resolve) => {
          t.once('close', () => resolve());
          t.once('end', () => resolve());
        }),
        8000,
        'slowloris tunnel to be cut off',
      );
      expect(Buffer.concat(chunks).toString()).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(trickle);
      t.destroy();
    }
  }, 15_000);

  it('cuts off a client that opens more streams than SETTINGS_MAX_CONCURRENT_STREAMS (raw frames) while others keep succeeding', async () => {
    w.usersDelayMs = 500; // every stream stays open on the slow backend
    const t = await w.tunnel(`${VIP_USERS}:80`);
    const frame = (type: number, flags: number, stream: number, payload: Buffer): Buffer => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(stream, 5);
      return Buffer.concat([h, payload]);
    };
    // HPACK: :method GET, :scheme http, :path /, :authority "users" (literal, indexed name 1).
    const block = Buffer.concat([Buffer.from([0x82, 0x86, 0x84, 0x01, 0x05]), Buffer.from('users')]);
    let buf = Buffer.alloc(0);
    let goaway: number | undefined;
    let resets = 0;
    let sentFlood = false;
    t.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3];
        const flags = buf[4] ?? 0;
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === 4 && (flags & 1) === 0 && !sentFlood) {
          // ACK the server's SETTINGS (its limit of 100 is now in force), then open 130 streams at once.
          sentFlood = true;
          const frames = [frame(4, 1, 0, Buffer.alloc(0))];
          for (let i = 0; i < 130; i++) frames.push(frame(1, 0x5, 1 + 2 * i, block));
          t.write(Buffer.concat(frames));
        } else if (type === 3) resets++;
        else if (type === 7) goaway = payload.readUInt32BE(4);
      }
    });
    const cut = new Promise<void>((resolve) => {
      t.once('end', () => resolve());
      t.once('close', () => resolve());
      t.once('error', () => resolve());
    });
    t.write(Buffer.concat([H2_PREFACE, frame(4, 0, 0, Buffer.alloc(0))]));
    try {
      const base = await users();
      const ok = await request(`${base}/during-flood`);
      expect(ok.statusCode).toBe(200);
      await ok.body.text();
      // nghttp2 treats the 101st stream as a protocol error: streams are reset, GOAWAY, the tunnel ends.
      await withTimeout(cut, 10_000, 'flooding client cut off');
      expect(resets > 0 || goaway !== undefined).toBe(true);
    } finally {
      t.destroy();
    }
  }, 20_000);

  it('refuses an HTTP/2 stream flood beyond max concurrent streams and cuts off a rapid-reset client', async () => {
    const t = await w.tunnel(`${VIP_USERS}:80`);
    const session = http2.connect(`http://${VIP_USERS}`, { createConnection: () => t });
    session.on('error', () => undefined);
    const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
    expect(settings.maxConcurrentStreams).toBe(100);
    // Rapid reset: open and cancel streams in a bounded loop until the waypoint sends GOAWAY.
    let gotGoaway = false;
    const goaway = new Promise<number>((resolve) =>
      session.once('goaway', (code) => {
        gotGoaway = true;
        resolve(code);
      }),
    );
    const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
    // Bounded: at most 400 resets (the limit here is 50 per second), stopping at the GOAWAY.
    for (let i = 0; i < 400 && !gotGoaway && !session.destroyed && !session.closed; i++) {
      const s = session.request({ ':path': `/r${i}`, ':method': 'GET' });
      s.on('error', () => undefined);
      s.close(http2.constants.NGHTTP2_CANCEL);
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    const code = await withTimeout(goaway, 5000, 'GOAWAY after rapid reset');
    expect(code).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    await withTimeout(closed, 5000, 'session close');
    // Another client is unaffected.
    const base = await users();
    const ok = await request(`${base}/after-attack`);
    expect(ok.statusCode).toBe(200);
    await ok.body.text();
  }, 20_000);
});

describe('opaque TCP through the waypoint (L4 policy only)', () => {
  /** Connects through the waypoint to the TCP echo, sends a line, returns what came back before close. */
  async function talk(): Promise<string> {
    const t = await w.tunnel(`${VIP_TCP}:7000`);
    const got: Buffer[] = [];
    t.on('data', (c: Buffer) => {
      got.push(c);
      if (Buffer.concat(got).toString().includes('hello')) t.end();
    });
    t.write('hello\n');
    await withTimeout(
      new Promise<void>((resolve) => {
        t.once('close', () => resolve());
        t.once('error', () => resolve());
      }),
      8000,
      'TCP exchange',
    ).finally(() => t.destroy());
    return Buffer.concat(got).toString();
  }

  it('relays bytes that are neither HTTP/1.1 nor HTTP/2 to the service, counted in the TCP metrics', async () => {
    expect(await talk()).toContain('echo ready\nhello');
    // Istio's TCP metrics with reporter="waypoint": the connection, closed, with the bytes each way
    // (received = what the client sent, sent = what went back to it). The close is counted once the
    // waypoint's relay ends, just after the client sees it: bounded wait.
    const want = { reporter: 'waypoint', destination_service_name: 'tcp-echo', response_flags: '-' };
    const total = (text: string, metric: string) =>
      series(text, metric, want).reduce((n, x) => n + x.value, 0);
    let metrics = '';
    for (let i = 0; i < 100; i++) {
      metrics = await w.metrics();
      if (total(metrics, 'istio_tcp_connections_closed_total') >= 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(total(metrics, 'istio_tcp_connections_opened_total')).toBe(1);
    expect(total(metrics, 'istio_tcp_connections_closed_total')).toBe(1);
    expect(total(metrics, 'istio_tcp_received_bytes_total')).toBe('hello\n'.length);
    expect(total(metrics, 'istio_tcp_sent_bytes_total')).toBeGreaterThanOrEqual('echo ready\nhello\n'.length);
    expect(series(metrics, 'istio_tcp_connections_opened_total', want)[0]!.labels).toContain(
      'source_principal="spiffe://cluster.local/ns/demo/sa/client"',
    );
  });

  it('a DENY rule with HTTP-only fields denies TCP (fail closed); an ALLOW that needs HTTP attributes never admits it', async () => {
    await w.apply(
      'policy.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-get, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: tcp-echo }]
  action: DENY
  rules:
    - to: [{ operation: { methods: [GET] } }]
`,
    );
    expect(await talk()).toBe('');
    // The refusal is counted as a TCP connection with response_flags DENY.
    const denied = series(await w.metrics(), 'istio_tcp_connections_failed_total', {
      reporter: 'waypoint',
      destination_service_name: 'tcp-echo',
      response_flags: 'DENY',
    });
    expect(denied.reduce((n, x) => n + x.value, 0)).toBeGreaterThanOrEqual(1);
    await w.apply(
      'policy.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-path, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: tcp-echo }]
  action: ALLOW
  rules:
    - to: [{ operation: { paths: ["/x"] } }]
`,
    );
    expect(await talk()).toBe('');
    await w.apply(
      'policy.yaml',
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-client, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: tcp-echo }]
  action: ALLOW
  rules:
    - from: [{ source: { principals: ["cluster.local/ns/demo/sa/client"] } }]
`,
    );
    expect(await talk()).toContain('hello');
  }, 30_000);

  it('closes an open TCP connection when a policy change denies it (re-check, as ztunnel does)', async () => {
    const t = await w.tunnel(`${VIP_TCP}:7000`);
    const got: Buffer[] = [];
    t.on('data', (c: Buffer) => got.push(c));
    const closed = new Promise<void>((resolve) => {
      t.once('close', () => resolve());
      t.once('error', () => resolve());
    });
    try {
      t.write('hello\n');
      await withTimeout(
        (async () => {
          while (!Buffer.concat(got).toString().includes('hello'))
            await new Promise((r) => setTimeout(r, 20));
        })(),
        8000,
        'echo before the policy change',
      );
      await w.apply(
        'policy.yaml',
        `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-all-tcp, namespace: demo }
spec:
  targetRefs: [{ kind: Service, group: "", name: tcp-echo }]
  action: DENY
  rules: [{}]
`,
      );
      await withTimeout(closed, 8000, 'connection closed by the re-check');
      expect(t.destroyed || t.readableEnded).toBe(true);
    } finally {
      t.destroy();
    }
  }, 30_000);
});

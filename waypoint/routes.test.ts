import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { HttpRoute, Waypoint } from '../core/state/model.js';
import { MeshState } from '../core/state/state.js';
import { WaypointError } from './errors.js';
import { testService } from '../test/mesh-model.js';
import { RouteError, Router, parseDuration, pickBackend } from './routes.js';

const wp: Waypoint = {
  name: 'waypoint',
  namespace: 'shop',
  waypointFor: 'service',
  trafficType: 'service',
  hostname: 'waypoint.shop.svc.cluster.local',
};
const svc = testService('backend', 'shop', '10.96.0.10', {
  ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' }],
});

function router(
  rules: unknown[],
  kind: HttpRoute['kind'] = 'HTTPRoute',
  parent = { kind: 'Service', group: '', name: 'backend' },
) {
  const state = new MeshState();
  state.upsertRoute({ kind, name: 'r', namespace: 'shop', parentRefs: [parent], rules });
  return new Router(state, () => wp, pino({ level: 'silent' }));
}

const get = (path: string, headers: Record<string, string> = {}, method = 'GET') => ({
  method,
  path,
  headers,
});

describe('HTTPRoute / GRPCRoute at the waypoint', () => {
  it('parses Gateway API durations and rejects others with the field named', () => {
    expect(parseDuration('100ms', 'r', 'f')).toBe(100);
    expect(parseDuration('1m30s', 'r', 'f')).toBe(90_000);
    expect(() => parseDuration('1.5s', 'HTTPRoute shop/r', 'spec.rules[0].timeouts.request')).toThrow(
      /HTTPRoute shop\/r: spec.rules\[0\].timeouts.request/,
    );
  });

  it('prefers an exact path over a prefix, and a longer prefix over a shorter one', () => {
    const r = router([
      { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [{ name: 'a', port: 80 }] },
      {
        matches: [{ path: { type: 'PathPrefix', value: '/api/v1' } }],
        backendRefs: [{ name: 'b', port: 80 }],
      },
      {
        matches: [{ path: { type: 'Exact', value: '/api/v1/users' } }],
        backendRefs: [{ name: 'c', port: 80 }],
      },
    ]);
    expect(r.route(svc, 80, false, get('/api/v1/users'))?.backends[0]?.name).toBe('c');
    expect(r.route(svc, 80, false, get('/api/v1/orders?x=1'))?.backends[0]?.name).toBe('b');
    expect(r.route(svc, 80, false, get('/api/x'))?.backends[0]?.name).toBe('a');
    // PathPrefix matches whole segments: /apix is not under /api.
    expect(() => r.route(svc, 80, false, get('/apix'))).toThrow(WaypointError);
  });

  it('matches headers and methods, and answers 404 when routes exist but none matches', () => {
    const r = router([
      {
        matches: [{ method: 'POST', headers: [{ name: 'x-canary', value: 'yes' }] }],
        backendRefs: [{ name: 'canary', port: 80 }],
      },
    ]);
    expect(r.route(svc, 80, false, get('/', { 'x-canary': 'yes' }, 'POST'))?.backends[0]?.name).toBe(
      'canary',
    );
    try {
      r.route(svc, 80, false, get('/', { 'x-canary': 'no' }, 'POST'));
      expect.unreachable();
    } catch (err) {
      expect((err as WaypointError).status).toBe(404);
    }
  });

  it('leaves a destination without routes to its default route', () => {
    const r = router([{ backendRefs: [{ name: 'x', port: 80 }] }], 'HTTPRoute', {
      kind: 'Service',
      group: '',
      name: 'other',
    });
    expect(r.route(svc, 80, false, get('/'))).toBeUndefined();
  });

  it('matches gRPC service and method from the path', () => {
    const r = router(
      [
        {
          matches: [{ method: { service: 'shop.v1.ProductService', method: 'GetProduct' } }],
          backendRefs: [{ name: 'get', port: 80 }],
        },
        {
          matches: [{ method: { service: 'shop.v1.ProductService' } }],
          backendRefs: [{ name: 'any', port: 80 }],
        },
      ],
      'GRPCRoute',
    );
    expect(
      r.route(svc, 80, true, get('/shop.v1.ProductService/GetProduct', {}, 'POST'))?.backends[0]?.name,
    ).toBe('get');
    expect(
      r.route(svc, 80, true, get('/shop.v1.ProductService/DeleteProduct', {}, 'POST'))?.backends[0]?.name,
    ).toBe('any');
  });

  it('compiles timeouts, retry (attempts default 2, codes default 503) and header modifiers', () => {
    const rule = router([
      {
        backendRefs: [{ name: 'a', port: 80 }],
        timeouts: { request: '2s', backendRequest: '500ms' },
        retry: { backoff: '50ms' },
        filters: [
          {
            type: 'RequestHeaderModifier',
            requestHeaderModifier: { set: [{ name: 'X-A', value: '1' }], remove: ['x-b'] },
          },
        ],
      },
    ]).route(svc, 80, false, get('/'));
    expect(rule).toMatchObject({
      timeoutMs: 2000,
      backendTimeoutMs: 500,
      retry: { attempts: 2, backoffMs: 50 },
    });
    expect([...(rule?.retry?.codes ?? [])]).toEqual([503]);
    expect(rule?.requestHeaders).toEqual({ set: [['x-a', '1']], add: [], remove: ['x-b'] });
  });

  it('leaves out a route with a bad field and keeps serving the destination by default', () => {
    const r = router([{ backendRefs: [{ name: 'a', weight: -1 }] }]);
    expect(r.route(svc, 80, false, get('/'))).toBeUndefined();
    expect(
      new RouteError('HTTPRoute shop/r', 'spec.rules[0].backendRefs[0].weight', 'must be an integer').message,
    ).toBe('HTTPRoute shop/r: spec.rules[0].backendRefs[0].weight: must be an integer');
  });

  it('picks weighted backends in proportion, never a weight-0 one', () => {
    const backends = [
      { name: 'v1', namespace: 'shop', weight: 90 },
      { name: 'v2', namespace: 'shop', weight: 10 },
      { name: 'off', namespace: 'shop', weight: 0 },
    ];
    const counts: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const b = pickBackend(backends, () => i / 1000);
      counts[b?.name ?? ''] = (counts[b?.name ?? ''] ?? 0) + 1;
    }
    expect(counts).toEqual({ v1: 900, v2: 100 });
  });
});

import { describe, expect, it } from 'vitest';
import type { FlowEvent } from '../../core/telemetry/flow-events.js';
import { toFlowRow } from './flows.js';

const base: FlowEvent = {
  id: 7,
  phase: 'close',
  time: '2026-01-01T00:00:00.000Z',
  direction: 'inbound',
  path: 'inbound',
  src: {
    addr: '10.244.1.10:40000',
    workload: 'frontend',
    namespace: 'shop',
    identity: 'spiffe://cluster.local/ns/shop/sa/frontend',
  },
  dst: { addr: '10.244.2.11:15008', workload: 'catalog', namespace: 'shop' },
  securityPolicy: 'mutual_tls',
  bytesSent: 10,
  bytesRecv: 20,
  responseFlags: '-',
};

describe('flow rows from the proxies’ admin streams', () => {
  it('a clean mTLS connection is FORWARDED, with no L7 part (ztunnel’s `path` is its listener, not a URL)', () => {
    const r = toFlowRow('ztunnel/node2', base, 1);
    expect(r).toMatchObject({ verdict: 'FORWARDED', mtls: true, reporter: 'ztunnel/node2', bytesSent: 10 });
    expect(r.l7).toBeUndefined();
    expect(r.responseFlags).toBeUndefined();
  });

  it('an L4 policy denial names the deciding policy', () => {
    const r = toFlowRow(
      'ztunnel/node2',
      { ...base, responseFlags: 'DENY', error: 'explicitly denied by: shop/deny-x', policy: 'shop/deny-x' },
      2,
    );
    expect(r).toMatchObject({ verdict: 'DENIED', policy: 'shop/deny-x' });
  });

  it('the source side of a denied tunnel (401 to CONNECT) is DENIED too; a refused upstream is an ERROR', () => {
    expect(
      toFlowRow(
        'z',
        { ...base, responseFlags: 'CONNECT', error: 'http status: 401 for CONNECT 1.2.3.4:80' },
        3,
      ).verdict,
    ).toBe('DENIED');
    expect(
      toFlowRow('z', { ...base, responseFlags: 'CONNECT', error: 'connect ECONNREFUSED 10.0.0.1:15008' }, 4)
        .verdict,
    ).toBe('ERROR');
  });

  it('plaintext is reported as not mTLS', () => {
    expect(toFlowRow('z', { ...base, securityPolicy: 'unknown' }, 5).mtls).toBe(false);
  });

  it('a waypoint request event carries method, path and status; a 403 / gRPC 7 is DENIED', () => {
    const ev = {
      ...base,
      policy: 'shop/web-no-admin',
      request: { protocol: 'HTTP/1.1', method: 'GET', path: '/admin', status: 403 },
    };
    const r = toFlowRow('waypoint/shop/waypoint', ev, 6);
    expect(r.l7).toEqual({ protocol: 'HTTP/1.1', method: 'GET', path: '/admin', status: 403 });
    expect(r.verdict).toBe('DENIED');
    const g = toFlowRow(
      'w',
      {
        ...base,
        request: { protocol: 'GRPC', method: 'POST', path: '/demo.Catalog/List', status: 200, grpcStatus: 7 },
      },
      7,
    );
    expect(g.verdict).toBe('DENIED');
  });
});

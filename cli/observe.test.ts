// `ambit observe --protocol`: a flow only a ztunnel saw is TCP on its hop, and carries the protocol its
// destination port declares (Istio's protocol selection), so `--protocol grpc` finds ztunnel-only gRPC
// flows as well as the requests a waypoint parsed.
import { describe, expect, it } from 'vitest';
import type { Service } from '../core/state/model.js';
import { toFlowRow } from './demo/flows.js';
import { declaredProtocol, matchesFilter } from './observe.js';

const catalog: Service = {
  name: 'catalog',
  namespace: 'shop',
  hostname: 'catalog.shop.svc.cluster.local',
  addresses: ['10.96.0.20'],
  ports: [{ name: 'grpc', servicePort: 9090, targetPort: 9090, appProtocol: 'GRPC' }],
  subjectAltNames: [],
  labels: {},
};

const event = (hboneAddr: string | undefined, request?: { protocol: string; path: string }) => ({
  id: 1,
  phase: 'close' as const,
  time: '2026-12-03T20:00:00.000Z',
  direction: 'outbound' as const,
  path: 'outbound' as const,
  src: { addr: '10.244.1.10:40000', workload: 'frontend', namespace: 'shop' },
  dst: {
    addr: '10.244.2.11:15008',
    workload: 'catalog',
    namespace: 'shop',
    service: 'catalog.shop.svc.cluster.local',
  },
  ...(hboneAddr ? { hboneAddr } : {}),
  securityPolicy: 'mutual_tls' as const,
  ...(request ? { request } : {}),
});

describe('observe --protocol', () => {
  it('gives a ztunnel-only flow the protocol its destination port declares', () => {
    const row = toFlowRow('ztunnel/node1', event('10.244.2.11:9090'), 1);
    expect(row.target).toBe('10.244.2.11:9090');
    row.protocol = declaredProtocol([catalog], row);
    expect(row.protocol).toBe('grpc');
    expect(matchesFilter(row, { protocol: 'grpc' })).toBe(true);
    expect(matchesFilter(row, { protocol: 'tcp' })).toBe(true);
    expect(matchesFilter(row, { protocol: 'http' })).toBe(false);
  });

  it('declares nothing for a port no Service lists, nor for a request a waypoint parsed', () => {
    const other = toFlowRow('ztunnel/node1', event('10.244.2.11:7777'), 1);
    expect(declaredProtocol([catalog], other)).toBeUndefined();
    expect(matchesFilter(other, { protocol: 'grpc' })).toBe(false);
    const l7 = toFlowRow('waypoint/shop/waypoint', event(undefined, { protocol: 'HTTP/1.1', path: '/' }), 2);
    expect(declaredProtocol([catalog], l7)).toBeUndefined();
    expect(matchesFilter(l7, { protocol: 'http' })).toBe(true);
    expect(matchesFilter(l7, { protocol: 'tcp' })).toBe(false);
  });
});

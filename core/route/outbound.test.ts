import { describe, expect, it } from 'vitest';
import { formatSpiffeId } from '../identity/spiffe.js';
import type { Service, Workload } from '../state/model.js';
import { MeshState } from '../state/state.js';
import { selectEndpoint } from './endpoint.js';
import { type OutboundPlan, planOutbound } from './outbound.js';
import { testService, testWorkload } from '../../test/mesh-model.js';

const ids = (plan: OutboundPlan): string[] =>
  plan.kind === 'hbone' ? plan.expectedIdentities.map(formatSpiffeId) : [];

const ILLEGAL = new Set([15001, 15006, 15008]);
const SVC_KEY = 'default/echo.default.svc.cluster.local';

const pod = (name: string, ip: string, node: string, over: Partial<Workload> = {}): Workload =>
  testWorkload(name, ip, { node, ...over });

const echoService = (over: Partial<Service> = {}): Service =>
  testService('echo', 'default', '10.96.0.10', over);

function world(): MeshState {
  const s = new MeshState();
  s.upsertService(echoService());
  s.upsertWorkload(pod('a', '10.244.1.2', 'node-a'));
  s.upsertWorkload(
    pod('b', '10.244.2.2', 'node-b', { services: { [SVC_KEY]: [{ servicePort: 80, targetPort: 8080 }] } }),
  );
  s.upsertWorkload(pod('plain', '10.244.2.3', 'node-b', { tunnelProtocol: 'NONE' }));
  s.upsertWorkload(pod('local', '10.244.1.3', 'node-a'));
  return s;
}

const base = { node: 'node-a', illegalPorts: ILLEGAL };

describe('planOutbound', () => {
  it('sends a VIP connection over HBONE to the endpoint with its target port as authority', () => {
    const s = world();
    const plan = planOutbound(s, {
      ...base,
      source: s.workloadByIp('10.244.1.2'),
      dst: { ip: '10.96.0.10', port: 80 },
    });
    expect(plan.kind).toBe('hbone');
    if (plan.kind !== 'hbone') return;
    expect(plan.nextHop).toEqual({ ip: '10.244.2.2', port: 15008 });
    expect(plan.authority).toBe('10.244.2.2:8080');
    expect(ids(plan)).toEqual(['spiffe://cluster.local/ns/default/sa/b']);
    expect(plan.service?.name).toBe('echo');
  });

  it('refuses a VIP whose endpoints are all unhealthy', () => {
    const s = world();
    s.upsertWorkload({ ...s.workloadByIp('10.244.2.2')!, status: 'UNHEALTHY' });
    const plan = planOutbound(s, { ...base, source: undefined, dst: { ip: '10.96.0.10', port: 80 } });
    expect(plan).toMatchObject({ kind: 'refuse', code: 'NO_HEALTHY_UPSTREAM' });
  });

  it('uses plain TCP to a workload outside the mesh and passthrough to an unknown address', () => {
    const s = world();
    expect(planOutbound(s, { ...base, source: undefined, dst: { ip: '10.244.2.3', port: 9 } })).toMatchObject(
      {
        kind: 'plaintext',
        target: { ip: '10.244.2.3', port: 9 },
      },
    );
    expect(planOutbound(s, { ...base, source: undefined, dst: { ip: '192.0.2.1', port: 443 } })).toEqual({
      kind: 'passthrough',
      target: { ip: '192.0.2.1', port: 443 },
    });
  });

  it('keeps same-node enrolled destinations local and refuses loops to ztunnel ports', () => {
    const s = world();
    expect(
      planOutbound(s, { ...base, source: undefined, dst: { ip: '10.244.1.3', port: 8080 } }),
    ).toMatchObject({
      kind: 'local',
    });
    expect(
      planOutbound(s, { ...base, source: undefined, dst: { ip: '127.0.0.1', port: 15001 } }),
    ).toMatchObject({
      kind: 'refuse',
      code: 'SELF_CALL',
    });
  });

  it('hands a service bound to a waypoint to the waypoint with the original VIP:port as authority', () => {
    const s = world();
    s.upsertService(
      echoService({
        waypoint: { namespace: 'default', hostname: 'wp.default.svc.cluster.local', hboneMtlsPort: 15008 },
      }),
    );
    s.upsertService(
      echoService({
        name: 'wp',
        hostname: 'wp.default.svc.cluster.local',
        addresses: ['10.96.0.20'],
        ports: [],
      }),
    );
    s.upsertWorkload(
      pod('wp-1', '10.244.2.9', 'node-b', {
        serviceAccount: 'wp',
        labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' },
        services: { 'default/wp.default.svc.cluster.local': [] },
      }),
    );
    const plan = planOutbound(s, {
      ...base,
      source: s.workloadByIp('10.244.1.2'),
      dst: { ip: '10.96.0.10', port: 80 },
    });
    expect(plan).toMatchObject({
      kind: 'hbone',
      nextHop: { ip: '10.244.2.9', port: 15008 },
      authority: '10.96.0.10:80',
    });
    expect(ids(plan)).toEqual(['spiffe://cluster.local/ns/default/sa/wp']);
  });

  it('weights endpoint choice by capacity', () => {
    const eps = [
      { workload: pod('x', '1.1.1.1', 'n'), targetPort: 1 },
      { workload: pod('y', '1.1.1.2', 'n', { labels: { 'ambit.dev/capacity': '3' } }), targetPort: 1 },
    ];
    expect(selectEndpoint(eps, () => 0.2)?.workload.name).toBe('x');
    expect(selectEndpoint(eps, () => 0.3)?.workload.name).toBe('y');
  });
});

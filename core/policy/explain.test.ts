import { describe, expect, it } from 'vitest';
import type { Workload } from '../state/model.js';
import { MeshState } from '../state/state.js';
import { compileAuthorizationPolicy } from './compile.js';
import { ExplainInputError, explain } from './explain.js';
import type { AuthorizationPolicySpec } from './istio-api.js';
import { testService, testWorkload } from '../../test/mesh-model.js';

const workload = (
  name: string,
  namespace: string,
  ip: string,
  sa: string,
  extra: Partial<Workload> = {},
): Workload =>
  testWorkload(name, ip, {
    namespace,
    serviceAccount: sa,
    labels: { app: name },
    workloadType: 'DEPLOYMENT',
    ...extra,
  });

function addPolicy(state: MeshState, name: string, namespace: string, spec: AuthorizationPolicySpec): void {
  const c = compileAuthorizationPolicy(
    { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace }, spec },
    { rootNamespace: 'istio-system' },
  );
  if (c.l4) state.upsertAuthorization(c.l4);
}

function fixture(): MeshState {
  const state = new MeshState();
  const svc = testService('backend', 'shop', '10.96.0.10', {
    ports: [{ servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' }],
  });
  state.upsertService(svc);
  const ports = { 'shop/backend.shop.svc.cluster.local': [{ servicePort: 80, targetPort: 8080 }] };
  state.upsertWorkload(workload('backend-1', 'shop', '10.0.2.7', 'backend', { services: ports }));
  state.upsertWorkload(workload('backend-2', 'shop', '10.0.2.8', 'backend', { services: ports }));
  state.upsertWorkload(workload('web', 'shop', '10.0.1.5', 'web'));
  addPolicy(state, 'allow-web', 'shop', {
    rules: [
      {
        from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }],
        to: [{ operation: { methods: ['GET'] } }],
      },
      {
        from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }],
        to: [{ operation: { ports: ['8080'] } }],
      },
    ],
  });
  addPolicy(state, 'deny-admin', 'shop', {
    action: 'DENY',
    rules: [{ to: [{ operation: { paths: ['/admin'] } }] }],
  });
  addPolicy(state, 'other-ns', 'elsewhere', { rules: [{}] });
  return state;
}

const web = { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' };

describe('explain', () => {
  it('a service destination resolves to its endpoints with the target port, and lists dropped rules', () => {
    const e = explain(fixture(), {
      sourceIdentity: web,
      sourceIp: '10.0.1.5',
      destination: 'backend.shop:80',
    });
    expect(e.destination).toMatchObject({ kind: 'service', service: 'shop/backend', servicePort: 80 });
    expect(e.endpoints.map((x) => [x.workload.name, x.targetPort]).sort()).toEqual([
      ['backend-1', 8080],
      ['backend-2', 8080],
    ]);
    expect(e.decision).toMatchObject({ allow: true, policy: 'shop/allow-web', rule: 1 });
    expect(e.source.workload).toBe('shop/web');
    expect(e.dropped.map((d) => [d.policy, d.rule, d.kind])).toEqual([
      ['shop/allow-web', 0, 'allow-rule-dropped'],
      ['shop/deny-admin', 0, 'deny-rule-noop'],
    ]);
    expect(e.dropped[0]?.fields).toEqual(['rules[0].to[0].operation.methods']);
    // Policies of other namespaces never apply.
    expect(e.endpoints[0]?.policies).not.toContain('elsewhere/other-ns');
  });

  it('the VIP form and the pod IP form give the same decision; plaintext is denied by the ALLOW', () => {
    const state = fixture();
    const viaVip = explain(state, { sourceIp: '10.0.1.5', destination: '10.96.0.10:80' });
    expect(viaVip.destination).toMatchObject({ kind: 'service', via: 'VIP' });
    expect(viaVip.decision).toMatchObject({ allow: false, reason: 'allow policies exist, but none allowed' });
    const viaPod = explain(state, { sourceIp: '10.0.1.5', destination: '10.0.2.7:8080' });
    expect(viaPod.destination).toMatchObject({ kind: 'workload', port: 8080 });
    expect(viaPod.endpoints).toHaveLength(1);
    expect(viaPod.decision.allow).toBe(false);
  });

  it('warns when the identity does not belong to the source IP', () => {
    const e = explain(fixture(), {
      sourceIdentity: { ...web, serviceAccount: 'intruder' },
      sourceIp: '10.0.1.5',
      destination: 'backend.shop:80',
    });
    expect(e.warnings.some((w) => w.includes('not to the identity given'))).toBe(true);
  });

  it('bad or unknown destinations are input errors naming what is wrong', () => {
    const state = fixture();
    const bad =
      (destination: string, sourceIp = '10.0.1.5') =>
      () =>
        explain(state, { sourceIp, destination });
    expect(bad('backend.shop')).toThrow(ExplainInputError);
    expect(bad('backend.shop:99')).toThrow(/has no port 99/);
    expect(bad('nope.shop:80')).toThrow(/not found/);
    expect(bad('10.9.9.9:80')).toThrow(/no workload or service VIP/);
    expect(bad('10.0.2.7:0')).toThrow(/not 1-65535/);
    expect(bad('10.0.2.7:80', 'x.y')).toThrow(/source IP/);
  });
});

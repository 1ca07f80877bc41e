import { describe, expect, it } from 'vitest';
import { type InvalidObjectError, validateObject } from './schema.js';

const where = { file: 'policies.yaml', document: 2 };
const ap = (spec: unknown, metadata: Record<string, unknown> = { name: 'p', namespace: 'shop' }) => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata,
  spec,
});

function errorOf(raw: unknown): InvalidObjectError {
  const v = validateObject(raw, where);
  if (v.ok || v.ignored) throw new Error(`expected an error, got ${JSON.stringify(v)}`);
  return v.error;
}

describe('manifest validation: one-line errors naming file, document, object and field', () => {
  it('rejects an unknown action', () => {
    const e = errorOf(ap({ action: 'ALOW' }));
    expect(e.message).toBe(
      'policies.yaml: document 2 AuthorizationPolicy shop/p: spec.action: unknown action "ALOW" (expected ALLOW, DENY, AUDIT or CUSTOM)',
    );
    expect(e.code).toBe('INVALID_OBJECT');
    expect(e.field).toBe('spec.action');
  });

  it('rejects a bad CIDR in ipBlocks and notIpBlocks', () => {
    expect(
      errorOf(ap({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8', '10.0.0.0/33'] } }] }] })).message,
    ).toBe(
      'policies.yaml: document 2 AuthorizationPolicy shop/p: spec.rules[0].from[0].source.ipBlocks[1]: "10.0.0.0/33" is not an IP address or CIDR',
    );
    expect(errorOf(ap({ rules: [{ from: [{ source: { notIpBlocks: ['300.1.1.1'] } }] }] })).field).toBe(
      'spec.rules[0].from[0].source.notIpBlocks[0]',
    );
  });

  it.each([
    '10.1',
    '10.0.0.0/33',
    '10.0.0.0/08',
    '2001:db8::/129',
    'fe80::1%eth0',
    '10.0.0.0/',
    'example.com',
  ])('rejects %s as an ipBlock', (bad) => {
    expect(errorOf(ap({ rules: [{ from: [{ source: { ipBlocks: [bad] } }] }] })).problem).toBe(
      `"${bad}" is not an IP address or CIDR`,
    );
  });

  it('accepts non-canonical CIDRs the way Istio does', () => {
    const v = validateObject(
      ap({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.1/8', '2001:db8::1/32', '10.1.2.3'] } }] }] }),
    );
    expect(v.ok).toBe(true);
  });

  it('rejects ports out of range in policies, services and pods', () => {
    expect(errorOf(ap({ rules: [{ to: [{ operation: { ports: ['8080', '70000'] } }] }] })).message).toBe(
      'policies.yaml: document 2 AuthorizationPolicy shop/p: spec.rules[0].to[0].operation.ports[1]: port "70000" out of range 1-65535',
    );
    expect(
      errorOf({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 's', namespace: 'shop' },
        spec: { ports: [{ port: 0 }] },
      }).message,
    ).toBe('policies.yaml: document 2 Service shop/s: spec.ports[0].port: port 0 out of range 1-65535');
    expect(
      errorOf({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'p' },
        spec: { containers: [{ name: 'a', ports: [{ containerPort: 65536 }] }] },
      }).message,
    ).toBe(
      'policies.yaml: document 2 Pod default/p: spec.containers[0].ports[0].containerPort: port 65536 out of range 1-65535',
    );
  });

  it('rejects selector and targetRefs both set', () => {
    const e = errorOf(
      ap({
        selector: { matchLabels: { app: 'a' } },
        targetRefs: [{ kind: 'Service', group: '', name: 'backend' }],
      }),
    );
    expect(e.message).toBe(
      'policies.yaml: document 2 AuthorizationPolicy shop/p: spec.targetRefs: only one of selector or targetRef(s) may be set',
    );
    expect(errorOf(ap({ selector: {}, targetRef: { kind: 'Gateway', name: 'w' } })).field).toBe(
      'spec.targetRef',
    );
  });

  it('rejects unknown fields in Istio specs (a typo must not widen a policy)', () => {
    expect(errorOf(ap({ rules: [{ from: [{ source: { principal: ['x'] } }] }] })).message).toBe(
      'policies.yaml: document 2 AuthorizationPolicy shop/p: spec.rules[0].from[0].source: unknown field(s) "principal"',
    );
  });

  it('rejects unknown when keys, CUSTOM without provider, serviceAccounts mixed with principals', () => {
    expect(errorOf(ap({ rules: [{ when: [{ key: 'source.ipp', values: ['1.1.1.1'] }] }] })).field).toBe(
      'spec.rules[0].when[0].key',
    );
    expect(errorOf(ap({ action: 'CUSTOM' })).field).toBe('spec.provider');
    expect(
      errorOf(ap({ rules: [{ from: [{ source: { serviceAccounts: ['a/b'], principals: ['x'] } }] }] }))
        .problem,
    ).toBe('serviceAccounts cannot be combined with principals or namespaces');
  });

  it('rejects bad PeerAuthentication modes and ports', () => {
    const pa = (spec: unknown) => ({
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'PeerAuthentication',
      metadata: { name: 'default', namespace: 'shop' },
      spec,
    });
    expect(errorOf(pa({ mtls: { mode: 'STRICTEST' } })).field).toBe('spec.mtls.mode');
    expect(
      errorOf(pa({ selector: { matchLabels: { a: 'b' } }, portLevelMtls: { '99999': { mode: 'DISABLE' } } }))
        .message,
    ).toBe(
      'policies.yaml: document 2 PeerAuthentication shop/default: spec.portLevelMtls["99999"]: port "99999" out of range 1-65535',
    );
    expect(errorOf(pa({ portLevelMtls: { '8080': { mode: 'DISABLE' } } })).problem).toBe(
      'portLevelMtls requires a workload selector',
    );
  });

  it('accepts a spiffe:// principal with a warning (Istio accepts it; it can never match)', () => {
    const v = validateObject(
      ap({ rules: [{ from: [{ source: { principals: ['spiffe://cluster.local/ns/shop/sa/frontend'] } }] }] }),
    );
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(v.warnings).toEqual([
      'spec.rules[0].from[0].source.principals[0]: "spiffe://cluster.local/ns/shop/sa/frontend" starts with spiffe:// and can never match (Istio principals omit the scheme); kept as written',
    ]);
    // Kept as written: dropping it could turn an ALLOW-only-frontend into ALLOW-everyone.
    expect(
      (v.object as { spec: { rules: { from: { source: { principals: string[] } }[] }[] } }).spec.rules[0]!
        .from[0]!.source.principals,
    ).toHaveLength(1);
  });

  it('names the wrong apiVersion and a missing kind', () => {
    expect(errorOf({ apiVersion: 'v2', kind: 'Pod', metadata: { name: 'x' } }).message).toBe(
      'policies.yaml: document 2 Pod default/x: apiVersion: "v2" is not one of v1',
    );
    expect(errorOf({ apiVersion: 'v1', metadata: { name: 'x' } }).message).toBe(
      'policies.yaml: document 2 x: kind: is required',
    );
  });

  it('ignores kinds the mesh does not consume, defaults the namespace, accepts both Istio versions', () => {
    const ignored = validateObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' } });
    expect(ignored).toMatchObject({ ok: false, ignored: true });
    const v = validateObject({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: {} });
    expect(v.ok && v.object.metadata.namespace).toBe('default');
    expect(validateObject(ap({}, { name: 'p' })).ok).toBe(true);
    expect(validateObject({ ...ap({}), apiVersion: 'security.istio.io/v1beta1' }).ok).toBe(true);
    const ns = validateObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } });
    expect(ns.ok && ns.object.metadata.namespace).toBeUndefined();
  });

  it('requires an EndpointSlice to name its Service', () => {
    expect(
      errorOf({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: 'e', namespace: 'a' },
        endpoints: [],
      }).field,
    ).toBe('metadata.labels');
  });
});

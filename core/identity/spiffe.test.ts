import { describe, expect, it } from 'vitest';
import { formatSpiffeId, parseIdentityArg, parseSpiffeId, principalOf } from './spiffe.js';

describe('SPIFFE IDs', () => {
  it('parses and formats an Istio workload identity', () => {
    const id = parseSpiffeId('spiffe://cluster.local/ns/default/sa/bookinfo-productpage');
    expect(id).toEqual({
      trustDomain: 'cluster.local',
      namespace: 'default',
      serviceAccount: 'bookinfo-productpage',
    });
    expect(formatSpiffeId(id)).toBe('spiffe://cluster.local/ns/default/sa/bookinfo-productpage');
    expect(principalOf(id)).toBe('cluster.local/ns/default/sa/bookinfo-productpage');
  });

  it.each([
    ['http://cluster.local/ns/a/sa/b', 'must start with "spiffe://"'],
    ['spiffe://cluster.local', 'no path after the trust domain'],
    ['spiffe:///ns/a/sa/b', 'trust domain is empty'],
    ['spiffe://Cluster.Local/ns/a/sa/b', 'may only hold lowercase'],
    ['spiffe://cluster.local/ns/a/sa', 'exactly /ns/<namespace>/sa/<service-account>'],
    ['spiffe://cluster.local/ns/a/xx/b', 'exactly /ns/<namespace>/sa/<service-account>'],
    ['spiffe://cluster.local/ns/a/sa/b/extra', 'exactly /ns/<namespace>/sa/<service-account>'],
    ['spiffe://cluster.local/ns//sa/b', 'namespace is empty'],
    ['spiffe://cluster.local/ns/a/sa/B_ad', 'service account "B_ad" is not a valid Kubernetes name'],
  ])('rejects %s saying what is malformed', (input, reason) => {
    expect(() => parseSpiffeId(input)).toThrow(reason);
  });

  it('accepts the CLI shorthand forms', () => {
    expect(parseIdentityArg('none')).toBeUndefined();
    expect(parseIdentityArg('ns1/sa1')).toEqual({
      trustDomain: 'cluster.local',
      namespace: 'ns1',
      serviceAccount: 'sa1',
    });
    expect(parseIdentityArg('td/ns/ns1/sa/sa1')?.trustDomain).toBe('td');
    expect(parseIdentityArg('spiffe://x.y/ns/a/sa/b')?.trustDomain).toBe('x.y');
  });
});

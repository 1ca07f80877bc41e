import { describe, expect, it } from 'vitest';
import type { L7AuthorizationPolicy } from '../state/model.js';
import type { Connection } from './evaluate.js';
import type { AuthorizationRule } from './istio-api.js';
import { evaluateRequest } from './l7.js';

const client: Connection = {
  sourceIdentity: { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' },
  sourceIp: '10.0.1.5',
  destinationIp: '10.96.0.10',
  destinationPort: 80,
};
const plaintext: Connection = { sourceIp: '10.0.1.5', destinationIp: '10.96.0.10', destinationPort: 80 };

function pol(
  rules: AuthorizationRule[],
  action: L7AuthorizationPolicy['action'] = 'ALLOW',
  name = 'p',
  dryRun = false,
): L7AuthorizationPolicy {
  return {
    name,
    namespace: 'shop',
    action,
    targetRefs: [{ group: '', kind: 'Service', name: 'backend' }],
    rules,
    dryRun,
  };
}

const get = (path: string, extra: Record<string, unknown> = {}) => ({
  method: 'GET',
  path,
  host: 'backend.shop.svc.cluster.local',
  ...extra,
});

describe('evaluateRequest (waypoint L7)', () => {
  it('methods and paths, with the query ignored', () => {
    const p = pol([{ to: [{ operation: { methods: ['GET'], paths: ['/api/*'] } }] }]);
    expect(evaluateRequest(client, get('/api/items?x=1'), [p])).toMatchObject({
      allow: true,
      policy: 'shop/p',
      rule: 0,
    });
    expect(evaluateRequest(client, get('/admin'), [p]).allow).toBe(false);
    expect(evaluateRequest(client, { ...get('/api/items'), method: 'POST' }, [p]).reason).toBe(
      'allow policies exist, but none allowed',
    );
  });

  it('path templates: {*} is one segment, {**} the rest', () => {
    const p = pol([{ to: [{ operation: { paths: ['/users/{*}/orders/{**}'] } }] }]);
    expect(evaluateRequest(client, get('/users/7/orders/2024/1'), [p]).allow).toBe(true);
    expect(evaluateRequest(client, get('/users/7/8/orders/1'), [p]).allow).toBe(false);
  });

  it('hosts are case-insensitive and match with or without the port', () => {
    const p = pol([{ to: [{ operation: { hosts: ['Backend.shop.svc.cluster.local'] } }] }]);
    expect(evaluateRequest(client, get('/', { host: 'backend.shop.svc.cluster.local:80' }), [p]).allow).toBe(
      true,
    );
    expect(evaluateRequest(client, get('/', { host: 'other' }), [p]).allow).toBe(false);
  });

  it('DENY on a header condition; notValues; absent header', () => {
    const deny = pol(
      [{ when: [{ key: 'request.headers[x-user]', values: ['mallory'] }] }],
      'DENY',
      'deny-mallory',
    );
    expect(evaluateRequest(client, get('/', { headers: { 'x-user': 'mallory' } }), [deny])).toMatchObject({
      allow: false,
      reason: 'explicitly denied by: shop/deny-mallory',
    });
    expect(evaluateRequest(client, get('/'), [deny]).allow).toBe(true);
    const needUser = pol([{ when: [{ key: 'request.headers[x-user]', notValues: [''] }] }], 'DENY');
    // notValues on an absent header: nothing matches, so the negative holds and the DENY fires.
    expect(evaluateRequest(client, get('/'), [needUser]).allow).toBe(false);
  });

  it('source principals and namespaces use the mTLS identity; plaintext never matches them', () => {
    const p = pol([{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'] } }] }]);
    expect(evaluateRequest(client, get('/'), [p]).allow).toBe(true);
    expect(evaluateRequest(plaintext, get('/'), [p]).allow).toBe(false);
    const ns = pol([{ from: [{ source: { notNamespaces: ['shop'] } }] }], 'DENY');
    expect(evaluateRequest(plaintext, get('/'), [ns]).allow).toBe(false);
    expect(evaluateRequest(client, get('/'), [ns]).allow).toBe(true);
  });

  it('requestPrincipals never match without JWT; notRequestPrincipals do', () => {
    const need = pol([{ from: [{ source: { requestPrincipals: ['*'] } }] }]);
    expect(evaluateRequest(client, get('/'), [need]).allow).toBe(false);
    const denyAnon = pol([{ from: [{ source: { notRequestPrincipals: ['*'] } }] }], 'DENY');
    expect(evaluateRequest(client, get('/'), [denyAnon]).allow).toBe(false);
  });

  it('remoteIpBlocks use the forwarded client IP when given', () => {
    const p = pol([{ from: [{ source: { remoteIpBlocks: ['203.0.113.0/24'] } }] }]);
    expect(evaluateRequest(client, get('/', { remoteIp: '203.0.113.9' }), [p]).allow).toBe(true);
    expect(evaluateRequest(client, get('/'), [p]).allow).toBe(false);
  });

  it('CUSTOM denies on match (no external authorizer: fail closed); AUDIT never decides', () => {
    const custom = pol([{ to: [{ operation: { paths: ['/ext'] } }] }], 'CUSTOM', 'ext');
    const audit = pol([{}], 'AUDIT', 'audit');
    expect(evaluateRequest(client, get('/ext'), [custom, audit]).allow).toBe(false);
    expect(evaluateRequest(client, get('/other'), [custom, audit])).toMatchObject({
      allow: true,
      reason: 'no allow policies apply',
    });
  });

  it('an unsupported condition key fails closed for both actions', () => {
    const when = [{ key: 'experimental.envoy.filters.x', values: ['y'] }];
    expect(evaluateRequest(client, get('/'), [pol([{ when }])]).allow).toBe(false);
    expect(evaluateRequest(client, get('/'), [pol([{ when }], 'DENY')]).allow).toBe(false);
  });

  it('dry-run L7 policies are only reported', () => {
    const d = evaluateRequest(client, get('/'), [pol([{}], 'DENY', 'dry', true)]);
    expect(d.allow).toBe(true);
    expect(d.dryRun).toEqual([
      { policy: 'shop/dry', action: 'DENY', matched: true, rule: 0, message: 'dry-run: deny policy match' },
    ]);
  });
});

// The waypoint's path index in l7.ts only skips policies that cannot match: with many policies the
// decision must equal the one of evaluating every policy in turn (the same engine on a short list).
import { describe, expect, it } from 'vitest';
import type { L7AuthorizationPolicy } from '../state/model.js';
import type { Connection } from './evaluate.js';
import type { AuthorizationRule } from './istio-api.js';
import { evaluateRequest } from './l7.js';

const conn: Connection = {
  sourceIdentity: { trustDomain: 'cluster.local', namespace: 'shop', serviceAccount: 'web' },
  sourceIp: '10.0.1.5',
  destinationIp: '10.96.0.10',
  destinationPort: 80,
};

const pol = (
  name: string,
  action: L7AuthorizationPolicy['action'],
  rules: AuthorizationRule[],
  dryRun = false,
) => ({
  name,
  namespace: 'shop',
  action,
  targetRefs: [{ group: '', kind: 'Service', name: 'backend' }],
  rules,
  dryRun,
});

/** Evaluates each policy set in chunks below the index threshold: the plain linear engine. */
function linear(policies: L7AuthorizationPolicy[], path: string, method: string) {
  // The engine's decision order over the whole set, without the index: DENY anywhere wins, then ALLOW.
  const req = { method, path };
  const deny = policies.filter((p) => p.action === 'DENY' && !p.dryRun);
  for (let i = 0; i < deny.length; i += 8) {
    const d = evaluateRequest(conn, req, deny.slice(i, i + 8));
    if (!d.allow) return false;
  }
  const allow = policies.filter((p) => p.action === 'ALLOW' && !p.dryRun);
  if (allow.length === 0) return true;
  for (let i = 0; i < allow.length; i += 8)
    if (evaluateRequest(conn, req, allow.slice(i, i + 8)).allow) return true;
  return false;
}

describe('L7 path index (many policies)', () => {
  const policies: L7AuthorizationPolicy[] = [];
  for (let i = 0; i < 300; i++) {
    policies.push(
      pol(`team${i}`, 'ALLOW', [
        { to: [{ operation: { methods: ['GET'], paths: [`/team${i}/api/*`, `/pkg${i}.Svc/{*}`] } }] },
      ]),
    );
  }
  policies.push(pol('exact', 'ALLOW', [{ to: [{ operation: { paths: ['/healthz'] } }] }]));
  policies.push(pol('short-prefix', 'ALLOW', [{ to: [{ operation: { paths: ['/sta*'] } }] }]));
  policies.push(pol('suffix', 'ALLOW', [{ to: [{ operation: { paths: ['*.png'] } }] }]));
  policies.push(pol('deny-admin', 'DENY', [{ to: [{ operation: { paths: ['/team7/api/admin'] } }] }]));
  policies.push(pol('deny-delete', 'DENY', [{ to: [{ operation: { methods: ['DELETE'] } }] }]));

  const cases: [string, string][] = [
    ['/team7/api/users', 'GET'],
    ['/team7/api/admin', 'GET'],
    ['/team7/api/users', 'POST'],
    ['/team299/api/x?y=1', 'GET'],
    ['/team300/api/x', 'GET'],
    ['/pkg12.Svc/Get', 'GET'],
    ['/pkg12.Svc/a/b', 'GET'],
    ['/healthz', 'GET'],
    ['/healthz/x', 'GET'],
    ['/status', 'GET'],
    ['/img/logo.png', 'GET'],
    ['/team1/api/x', 'DELETE'],
    ['/', 'GET'],
    ['', 'GET'],
  ];
  for (const [path, method] of cases) {
    it(`${method} ${path || '(empty)'} decides as the linear engine does`, () => {
      expect(evaluateRequest(conn, { method, path }, policies).allow).toBe(linear(policies, path, method));
    });
  }

  it('denies when ALLOW policies exist but the index rules all of them out', () => {
    const only = policies.slice(0, 100);
    const d = evaluateRequest(conn, { method: 'GET', path: '/nothing/here' }, only);
    expect(d).toMatchObject({ allow: false, reason: 'allow policies exist, but none allowed' });
    expect(evaluateRequest(conn, { method: 'GET', path: '/team42/api/z' }, only)).toMatchObject({
      allow: true,
      policy: 'shop/team42',
    });
  });
});

import { describe, expect, it } from 'vitest';
import type { SpiffeId } from '../identity/spiffe.js';
import type { Action, Authorization, Match, Rule } from '../state/model.js';
import { compileAuthorizationPolicy, emptyMatch } from './compile.js';
import { type Connection, evaluate, InvalidConnection, matchingRule } from './evaluate.js';
import type { AuthorizationPolicySpec } from './istio-api.js';
import { staticStrictPolicy } from './peer-authentication.js';

const alice: SpiffeId = { trustDomain: 'cluster.local', namespace: 'frontend', serviceAccount: 'alice' };
const mtls: Connection = {
  sourceIdentity: alice,
  sourceIp: '10.0.1.5',
  destinationIp: '10.0.2.7',
  destinationPort: 8080,
};
const plaintext: Connection = { sourceIp: '10.0.1.5', destinationIp: '10.0.2.7', destinationPort: 8080 };

const m = (f: Partial<Match>): Match => ({ ...emptyMatch(), ...f });
function pol(rules: Rule[], action: Action = 'ALLOW', name = 'p', dryRun = false): Authorization {
  return { name, namespace: 'ns', scope: 'NAMESPACE', action, rules, dryRun, notes: [] };
}
/** One rule, one clause, one match. */
const one = (f: Partial<Match>, action: Action = 'ALLOW') =>
  pol([{ clauses: [{ matches: [m(f)] }] }], action);
const hit = (p: Authorization, c: Connection = mtls) => matchingRule(p, c) !== undefined;

function fromSpec(spec: AuthorizationPolicySpec, name = 'p'): Authorization {
  const c = compileAuthorizationPolicy(
    {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name, namespace: 'ns' },
      spec,
    },
    { rootNamespace: 'istio-system' },
  );
  if (!c.l4) throw new Error('no l4');
  return c.l4;
}

describe('matcher structure (rbac.rs)', () => {
  it('a policy with zero rules never matches', () => {
    expect(hit(pol([]))).toBe(false);
  });
  it('a rule with zero clauses matches everything, also plaintext', () => {
    expect(hit(pol([{ clauses: [] }]))).toBe(true);
    expect(hit(pol([{ clauses: [] }]), plaintext)).toBe(true);
  });
  it('a clause with zero matches counts as matched', () => {
    expect(hit(pol([{ clauses: [{ matches: [] }] }]))).toBe(true);
  });
  it('an empty Match is skipped: a clause holding only it never matches', () => {
    expect(hit(pol([{ clauses: [{ matches: [emptyMatch()] }] }]))).toBe(false);
  });
  it('an empty Match next to a matching one does not block the clause', () => {
    expect(hit(pol([{ clauses: [{ matches: [emptyMatch(), m({ destinationPorts: [8080] })] }] }]))).toBe(
      true,
    );
  });
  it('clauses are ANDed, matches ORed, rules ORed', () => {
    const port = m({ destinationPorts: [8080] });
    const wrongPort = m({ destinationPorts: [9] });
    const ns = m({ namespaces: [{ exact: 'frontend' }] });
    expect(hit(pol([{ clauses: [{ matches: [port] }, { matches: [ns] }] }]))).toBe(true);
    expect(hit(pol([{ clauses: [{ matches: [wrongPort] }, { matches: [ns] }] }]))).toBe(false);
    expect(hit(pol([{ clauses: [{ matches: [wrongPort, port] }] }]))).toBe(true);
    expect(hit(pol([{ clauses: [{ matches: [wrongPort] }] }, { clauses: [{ matches: [port] }] }]))).toBe(
      true,
    );
  });
  it('within a Match, families are ANDed and positive/negative both must hold', () => {
    expect(hit(one({ destinationPorts: [8080], namespaces: [{ exact: 'other' }] }))).toBe(false);
    expect(hit(one({ destinationPorts: [8080], notDestinationPorts: [8080] }))).toBe(false);
    expect(hit(one({ destinationPorts: [8080, 9], notDestinationPorts: [9] }))).toBe(true);
  });
});

describe('string matches', () => {
  it('exact / prefix / suffix / presence on namespaces', () => {
    expect(hit(one({ namespaces: [{ exact: 'frontend' }] }))).toBe(true);
    expect(hit(one({ namespaces: [{ exact: 'front' }] }))).toBe(false);
    expect(hit(one({ namespaces: [{ prefix: 'front' }] }))).toBe(true);
    expect(hit(one({ namespaces: [{ prefix: 'end' }] }))).toBe(false);
    expect(hit(one({ namespaces: [{ suffix: 'end' }] }))).toBe(true);
    expect(hit(one({ namespaces: [{ suffix: 'front' }] }))).toBe(false);
    expect(hit(one({ namespaces: [{ presence: true }] }))).toBe(true);
  });
  it('plaintext has namespace "": presence and exact fail, negatives match', () => {
    expect(hit(one({ namespaces: [{ presence: true }] }), plaintext)).toBe(false);
    expect(hit(one({ namespaces: [{ prefix: '' }] }), plaintext)).toBe(true); // "" starts with ""
    expect(hit(one({ notNamespaces: [{ exact: 'frontend' }] }), plaintext)).toBe(true);
    expect(hit(one({ notNamespaces: [{ presence: true }] }), plaintext)).toBe(true);
  });
});

describe('principals', () => {
  it('compare without spiffe://', () => {
    expect(hit(one({ principals: [{ exact: 'cluster.local/ns/frontend/sa/alice' }] }))).toBe(true);
    expect(hit(one({ principals: [{ prefix: 'cluster.local/ns/frontend/' }] }))).toBe(true);
    expect(hit(one({ principals: [{ suffix: '/sa/alice' }] }))).toBe(true);
    expect(hit(one({ principals: [{ suffix: '/sa/bob' }] }))).toBe(false);
  });
  it('a policy value containing spiffe:// never matches', () => {
    expect(hit(one({ principals: [{ exact: 'spiffe://cluster.local/ns/frontend/sa/alice' }] }))).toBe(false);
    expect(hit(one({ principals: [{ prefix: 'spiffe://' }] }))).toBe(false);
  });
  it('no identity: every positive matcher is false, even presence', () => {
    expect(hit(one({ principals: [{ presence: true }] }), plaintext)).toBe(false);
    expect(hit(one({ principals: [{ prefix: '' }] }), plaintext)).toBe(false);
  });
  it('no identity: negative matchers match (not_principals presence = plaintext only)', () => {
    const strict = one({ notPrincipals: [{ presence: true }] }, 'DENY');
    expect(hit(strict, plaintext)).toBe(true);
    expect(hit(strict, mtls)).toBe(false);
  });
});

describe('service accounts', () => {
  it('match namespace and SA; no identity is false; negative matches plaintext', () => {
    expect(hit(one({ serviceAccounts: [{ namespace: 'frontend', serviceAccount: 'alice' }] }))).toBe(true);
    expect(hit(one({ serviceAccounts: [{ namespace: 'frontend', serviceAccount: 'bob' }] }))).toBe(false);
    expect(
      hit(one({ serviceAccounts: [{ namespace: 'frontend', serviceAccount: 'alice' }] }), plaintext),
    ).toBe(false);
    expect(
      hit(one({ notServiceAccounts: [{ namespace: 'frontend', serviceAccount: 'alice' }] }), plaintext),
    ).toBe(true);
    expect(hit(one({ notServiceAccounts: [{ namespace: 'frontend', serviceAccount: 'alice' }] }))).toBe(
      false,
    );
  });
});

describe('IPs and ports', () => {
  it('source and destination CIDRs, positive and negative', () => {
    expect(hit(one({ sourceIps: [{ address: '10.0.1.0', length: 24 }] }))).toBe(true);
    expect(hit(one({ sourceIps: [{ address: '10.0.9.0', length: 24 }] }))).toBe(false);
    expect(hit(one({ notSourceIps: [{ address: '10.0.1.5', length: 32 }] }))).toBe(false);
    expect(hit(one({ destinationIps: [{ address: '10.0.2.7', length: 32 }] }))).toBe(true);
    expect(hit(one({ notDestinationIps: [{ address: '10.0.0.0', length: 8 }] }))).toBe(false);
    expect(hit(one({ destinationIps: [{ address: '0.0.0.0', length: 0 }] }))).toBe(true);
  });
  it('a non-canonical CIDR matches as its network', () => {
    const p = fromSpec({ rules: [{ from: [{ source: { ipBlocks: ['10.200.3.4/8'] } }] }] });
    expect(hit(p)).toBe(true);
    expect(hit(p, { ...mtls, sourceIp: '11.0.0.1' })).toBe(false);
  });
  it('IPv6 CIDRs, and IPv4-mapped peers match IPv4 policies', () => {
    const v6 = one({ sourceIps: [{ address: '2001:db8::', length: 32 }] });
    expect(hit(v6, { ...mtls, sourceIp: '2001:db8:1::9' })).toBe(true);
    expect(hit(v6, { ...mtls, sourceIp: '2001:db9::9' })).toBe(false);
    expect(hit(v6)).toBe(false); // IPv4 peer never in an IPv6 network
    expect(
      hit(one({ sourceIps: [{ address: '10.0.1.0', length: 24 }] }), {
        ...mtls,
        sourceIp: '::ffff:10.0.1.5',
      }),
    ).toBe(true);
  });
  it('an address ztunnel cannot convert is dropped before matching (a Match left empty is skipped)', () => {
    expect(hit(one({ notSourceIps: [{ address: 'bogus', length: 32 }] }))).toBe(false);
    expect(hit(one({ notSourceIps: [{ address: '10.0.0.0', length: 40 }], destinationPorts: [8080] }))).toBe(
      true,
    );
  });
  it('ports compare with the target port', () => {
    expect(hit(one({ destinationPorts: [8080] }))).toBe(true);
    expect(hit(one({ destinationPorts: [80] }))).toBe(false);
    expect(hit(one({ notDestinationPorts: [80] }))).toBe(true);
  });
  it('a connection with a bad IP is a typed error', () => {
    expect(() => evaluate({ ...mtls, sourceIp: 'nope' }, [])).toThrow(InvalidConnection);
  });
});

describe('evaluate: order and reasons (assert_rbac)', () => {
  const allowAlice = fromSpec(
    { rules: [{ from: [{ source: { principals: ['cluster.local/ns/frontend/sa/alice'] } }] }] },
    'allow-alice',
  );
  const allowBob = fromSpec(
    { rules: [{ from: [{ source: { principals: ['cluster.local/ns/x/sa/bob'] } }] }] },
    'allow-bob',
  );
  const denyPort = fromSpec(
    { action: 'DENY', rules: [{ to: [{ operation: { ports: ['8080'] } }] }] },
    'deny-8080',
  );

  it('no policies: allow', () => {
    expect(evaluate(mtls, [])).toMatchObject({ allow: true, reason: 'no allow policies apply' });
  });
  it('a matching DENY wins over a matching ALLOW', () => {
    expect(evaluate(mtls, [allowAlice, denyPort])).toMatchObject({
      allow: false,
      reason: 'explicitly denied by: ns/deny-8080',
      policy: 'ns/deny-8080',
      rule: 0,
    });
  });
  it('only DENY policies that do not match: allow', () => {
    expect(evaluate({ ...mtls, destinationPort: 80 }, [denyPort]).allow).toBe(true);
  });
  it('a matching ALLOW allows and names the policy and rule', () => {
    expect(evaluate(mtls, [allowBob, allowAlice])).toMatchObject({
      allow: true,
      reason: 'allowed by: ns/allow-alice',
      policy: 'ns/allow-alice',
      rule: 0,
    });
  });
  it('ALLOW policies exist but none match: deny', () => {
    const d = evaluate(mtls, [allowBob]);
    expect(d).toMatchObject({ allow: false, reason: 'allow policies exist, but none allowed' });
    expect(d.policy).toBeUndefined();
  });
  it('spec {} ALLOW denies all; rules [{}] allows all; DENY {} has no effect; DENY [{}] denies all', () => {
    expect(evaluate(mtls, [fromSpec({})]).allow).toBe(false);
    expect(evaluate(plaintext, [fromSpec({ rules: [{}] })]).allow).toBe(true);
    expect(evaluate(mtls, [fromSpec({ action: 'DENY' })]).allow).toBe(true);
    expect(evaluate(mtls, [fromSpec({ action: 'DENY', rules: [{}] })]).allow).toBe(false);
  });
  it('the deciding rule is the spec rule index even after dropped L7 rules', () => {
    const p = fromSpec({
      rules: [
        { to: [{ operation: { methods: ['GET'] } }] },
        { from: [{ source: { namespaces: ['frontend'] } }] },
      ],
    });
    expect(evaluate(mtls, [p])).toMatchObject({ allow: true, rule: 1 });
  });
  it('an ALLOW whose only rule holds L7 attributes denies everything (fail closed)', () => {
    const p = fromSpec({ rules: [{ to: [{ operation: { paths: ['/public'] } }] }] });
    expect(evaluate(mtls, [p])).toMatchObject({
      allow: false,
      reason: 'allow policies exist, but none allowed',
    });
  });
  it('a DENY with L7 fields and L4 ports denies all traffic on the port', () => {
    const p = fromSpec(
      { action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'], ports: ['8080'] } }] }] },
      'd',
    );
    expect(evaluate(mtls, [p]).allow).toBe(false);
  });
  it('a DENY made a no-op by L7 removal denies nothing', () => {
    const p = fromSpec({
      action: 'DENY',
      rules: [
        {
          from: [{ source: { principals: ['cluster.local/ns/frontend/sa/alice'] } }],
          to: [{ operation: { methods: ['GET'] } }],
        },
      ],
    });
    expect(evaluate(mtls, [p]).allow).toBe(true);
  });
  it('STRICT (static policy) denies plaintext and lets mTLS through', () => {
    const strict = staticStrictPolicy('istio-system');
    expect(evaluate(plaintext, [strict])).toMatchObject({
      allow: false,
      reason: 'explicitly denied by: istio-system/istio_converted_static_strict',
    });
    expect(evaluate(mtls, [strict]).allow).toBe(true);
  });
  it('dry-run policies are only reported', () => {
    const dryDeny = { ...denyPort, name: 'dry-deny', dryRun: true };
    const dryAllow = { ...allowBob, name: 'dry-allow', dryRun: true };
    const d = evaluate(mtls, [dryDeny, dryAllow]);
    expect(d.allow).toBe(true);
    expect(d.reason).toBe('no allow policies apply');
    expect(d.dryRun).toEqual([
      {
        policy: 'ns/dry-deny',
        action: 'DENY',
        matched: true,
        rule: 0,
        message: 'dry-run: deny policy match',
      },
      { policy: 'ns/dry-allow', action: 'ALLOW', matched: false, message: 'dry-run: allow policy no match' },
    ]);
  });
  it('a replaced policy object is recompiled (no stale cache)', () => {
    const a = one({ destinationPorts: [8080] });
    expect(hit(a)).toBe(true);
    const b = { ...a, rules: [{ clauses: [{ matches: [m({ destinationPorts: [1] })] }] }] };
    expect(hit(b)).toBe(false);
  });
});

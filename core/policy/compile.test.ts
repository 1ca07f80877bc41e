import { describe, expect, it } from 'vitest';
import type { Match } from '../state/model.js';
import { compileAuthorizationPolicy, emptyMatch } from './compile.js';
import type { AuthorizationPolicy, AuthorizationPolicySpec } from './istio-api.js';

const opts = { rootNamespace: 'istio-system' };

function ap(
  spec: AuthorizationPolicySpec,
  namespace = 'ns1',
  annotations?: Record<string, string>,
): AuthorizationPolicy {
  return {
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'p', namespace, ...(annotations ? { annotations } : {}) },
    spec,
  };
}

const m = (fields: Partial<Match>): Match => ({ ...emptyMatch(), ...fields });

describe('compileAuthorizationPolicy: scope', () => {
  it('no selector in a namespace is NAMESPACE scope', () => {
    expect(compileAuthorizationPolicy(ap({}), opts).l4?.scope).toBe('NAMESPACE');
  });
  it('no selector in the root namespace is GLOBAL', () => {
    expect(compileAuthorizationPolicy(ap({}, 'istio-system'), opts).l4?.scope).toBe('GLOBAL');
  });
  it('honours a custom root namespace', () => {
    expect(compileAuthorizationPolicy(ap({}, 'mesh-root'), { rootNamespace: 'mesh-root' }).l4?.scope).toBe(
      'GLOBAL',
    );
  });
  it('a selector is WORKLOAD_SELECTOR and carries the labels, also in the root namespace', () => {
    const c = compileAuthorizationPolicy(
      ap({ selector: { matchLabels: { app: 'b' } } }, 'istio-system'),
      opts,
    );
    expect(c.l4?.scope).toBe('WORKLOAD_SELECTOR');
    expect(c.l4?.selector).toEqual({ app: 'b' });
  });
  it('targetRefs go to the waypoint only (l7, no l4)', () => {
    const c = compileAuthorizationPolicy(
      ap({
        targetRefs: [{ kind: 'Service', group: '', name: 'svc' }],
        rules: [{ to: [{ operation: { methods: ['GET'] } }] }],
      }),
      opts,
    );
    expect(c.l4).toBeUndefined();
    expect(c.l7?.targetRefs).toEqual([{ group: '', kind: 'Service', name: 'svc' }]);
    expect(c.l7?.action).toBe('ALLOW');
    expect(c.l7?.rules).toHaveLength(1);
  });
  it('a singular targetRef is also waypoint-only', () => {
    const c = compileAuthorizationPolicy(
      ap({ targetRef: { kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'wp' } }),
      opts,
    );
    expect(c.l4).toBeUndefined();
    expect(c.l7?.targetRefs[0]?.name).toBe('wp');
  });
  it('AUDIT and CUSTOM never reach ztunnel, with istiod status wording', () => {
    for (const action of ['AUDIT', 'CUSTOM'] as const) {
      const c = compileAuthorizationPolicy(ap({ action, rules: [{}] }), opts);
      expect(c.l4).toBeUndefined();
      expect(c.warnings).toContain(`ztunnel does not support the ${action} action`);
    }
  });
  it('the dry-run annotation marks the policy dryRun; a bad value is enforced with a warning', () => {
    expect(compileAuthorizationPolicy(ap({}, 'ns1', { 'istio.io/dry-run': 'true' }), opts).l4?.dryRun).toBe(
      true,
    );
    expect(compileAuthorizationPolicy(ap({}, 'ns1', { 'istio.io/dry-run': 'false' }), opts).l4?.dryRun).toBe(
      false,
    );
    const bad = compileAuthorizationPolicy(ap({}, 'ns1', { 'istio.io/dry-run': 'yes' }), opts);
    expect(bad.l4?.dryRun).toBe(false);
    expect(bad.warnings[0]).toMatch(/dry-run.*not a boolean/);
  });
});

describe('compileAuthorizationPolicy: rules', () => {
  it('spec {} compiles to an ALLOW with zero rules; rules [{}] to one rule with zero clauses', () => {
    expect(compileAuthorizationPolicy(ap({}), opts).l4?.rules).toEqual([]);
    expect(compileAuthorizationPolicy(ap({ rules: [{}] }), opts).l4?.rules).toEqual([
      { clauses: [], sourceRule: 0 },
    ]);
  });

  it('builds one clause for to, one for from, one per when, in that order', () => {
    const c = compileAuthorizationPolicy(
      ap({
        rules: [
          {
            from: [
              { source: { principals: ['cluster.local/ns/a/sa/x'], namespaces: ['a*'] } },
              { source: { ipBlocks: ['10.0.0.1', '10.1.2.3/8'], notIpBlocks: ['2001:db8::1'] } },
            ],
            to: [{ operation: { ports: ['80', '8080'] } }, { operation: { notPorts: ['9090'] } }],
            when: [
              { key: 'source.namespace', values: ['*-prod'], notValues: ['*'] },
              { key: 'destination.ip', values: ['10.9.9.9'] },
            ],
          },
        ],
      }),
      opts,
    );
    const rule = c.l4?.rules[0];
    expect(rule?.clauses).toHaveLength(4);
    expect(rule?.clauses[0]?.matches).toEqual([
      m({ destinationPorts: [80, 8080] }),
      m({ notDestinationPorts: [9090] }),
    ]);
    expect(rule?.clauses[1]?.matches).toEqual([
      m({ principals: [{ exact: 'cluster.local/ns/a/sa/x' }], namespaces: [{ prefix: 'a' }] }),
      m({
        sourceIps: [
          { address: '10.0.0.1', length: 32 },
          { address: '10.1.2.3', length: 8 },
        ],
        notSourceIps: [{ address: '2001:db8::1', length: 128 }],
      }),
    ]);
    expect(rule?.clauses[2]?.matches).toEqual([
      m({ namespaces: [{ suffix: '-prod' }], notNamespaces: [{ presence: true }] }),
    ]);
    expect(rule?.clauses[3]?.matches).toEqual([m({ destinationIps: [{ address: '10.9.9.9', length: 32 }] })]);
    expect(c.warnings).toEqual([]);
  });

  it('maps all five L4 when keys and their notValues', () => {
    const c = compileAuthorizationPolicy(
      ap({
        rules: [
          {
            when: [
              { key: 'source.principal', values: ['td/ns/a/sa/b'], notValues: ['*x'] },
              { key: 'source.ip', values: ['1.2.3.0/24'], notValues: ['1.2.3.4'] },
              { key: 'destination.port', values: ['443'], notValues: ['444'] },
              { key: 'destination.ip', notValues: ['::1'] },
            ],
          },
        ],
      }),
      opts,
    );
    expect(c.l4?.rules[0]?.clauses.map((cl) => cl.matches[0])).toEqual([
      m({ principals: [{ exact: 'td/ns/a/sa/b' }], notPrincipals: [{ suffix: 'x' }] }),
      m({
        sourceIps: [{ address: '1.2.3.0', length: 24 }],
        notSourceIps: [{ address: '1.2.3.4', length: 32 }],
      }),
      m({ destinationPorts: [443], notDestinationPorts: [444] }),
      m({ notDestinationIps: [{ address: '::1', length: 128 }] }),
    ]);
  });

  it('serviceAccounts: bare SA gets the policy namespace, ns/sa is kept', () => {
    const c = compileAuthorizationPolicy(
      ap({
        rules: [{ from: [{ source: { serviceAccounts: ['web', 'other/db'], notServiceAccounts: ['x'] } }] }],
      }),
      opts,
    );
    expect(c.l4?.rules[0]?.clauses[0]?.matches[0]).toEqual(
      m({
        serviceAccounts: [
          { namespace: 'ns1', serviceAccount: 'web' },
          { namespace: 'other', serviceAccount: 'db' },
        ],
        notServiceAccounts: [{ namespace: 'ns1', serviceAccount: 'x' }],
      }),
    );
  });

  it('drops unparsable ports and IPs like istiod, and reports each', () => {
    const c = compileAuthorizationPolicy(
      ap({
        rules: [
          {
            to: [{ operation: { ports: ['80', 'http', '70000'] } }],
            from: [{ source: { ipBlocks: ['nope'] } }],
          },
        ],
      }),
      opts,
    );
    const rule = c.l4?.rules[0];
    expect(rule?.clauses[0]?.matches[0]?.destinationPorts).toEqual([80]);
    // The source is left empty: ztunnel skips an empty Match, so that clause can never match.
    expect(rule?.clauses[1]?.matches[0]).toEqual(emptyMatch());
    const unparsable = c.l4?.notes.filter((n) => n.kind === 'unparsable-value') ?? [];
    expect(unparsable.map((n) => n.fields[0])).toEqual([
      'rules[0].to[0].operation.ports',
      'rules[0].to[0].operation.ports',
      'rules[0].from[0].source.ipBlocks',
    ]);
  });

  it('keeps a principal written with spiffe:// (it can never match) and warns', () => {
    const c = compileAuthorizationPolicy(
      ap({ rules: [{ from: [{ source: { principals: ['spiffe://cluster.local/ns/a/sa/b'] } }] }] }),
      opts,
    );
    expect(c.l4?.rules[0]?.clauses[0]?.matches[0]?.principals).toEqual([
      { exact: 'spiffe://cluster.local/ns/a/sa/b' },
    ]);
    expect(c.warnings.some((w) => w.includes('can never match'))).toBe(true);
  });
});

describe('compileAuthorizationPolicy: L7 attributes at L4', () => {
  it('ALLOW: a rule holding any L7 attribute is dropped; the policy still exists (deny all)', () => {
    const c = compileAuthorizationPolicy(
      ap({
        rules: [
          { to: [{ operation: { methods: ['GET'], ports: ['80'] } }] },
          { from: [{ source: { namespaces: ['a'] } }] },
        ],
      }),
      opts,
    );
    expect(c.l4?.action).toBe('ALLOW');
    expect(c.l4?.rules).toHaveLength(1);
    expect(c.l4?.rules[0]?.sourceRule).toBe(1);
    const note = c.l4?.notes.find((n) => n.kind === 'allow-rule-dropped');
    expect(note?.rule).toBe(0);
    expect(note?.fields).toEqual(['rules[0].to[0].operation.methods']);
    expect(c.warnings).toContain(
      'ztunnel does not support HTTP attributes (found: methods). In ambient mode you must use a waypoint proxy to enforce HTTP rules. Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested.',
    );
  });

  it('ALLOW: every L7 kind is detected (operation, source, non-L4 when keys, trustDomains)', () => {
    const c = compileAuthorizationPolicy(
      ap({
        rules: [
          {
            to: [
              {
                operation: {
                  hosts: ['a'],
                  notHosts: ['b'],
                  paths: ['/x'],
                  notPaths: ['/y'],
                  notMethods: ['PUT'],
                },
              },
            ],
            from: [
              {
                source: {
                  requestPrincipals: ['*'],
                  notRequestPrincipals: ['x'],
                  remoteIpBlocks: ['1.1.1.1'],
                  notRemoteIpBlocks: ['2.2.2.2'],
                  trustDomains: ['td'],
                },
              },
            ],
            when: [
              { key: 'request.headers[x-user]', values: ['a'] },
              { key: 'source.serviceAccount', values: ['a'] },
            ],
          },
        ],
      }),
      opts,
    );
    expect(c.l4?.rules).toEqual([]);
    const note = c.l4?.notes.find((n) => n.kind === 'allow-rule-dropped');
    expect(note?.fields).toHaveLength(12);
    expect(note?.message).toContain(
      'found: hosts, notHosts, notMethods, notPaths, notRemoteIpBlocks, notRequestPrincipals, paths, remoteIpBlocks, request.headers[x-user], requestPrincipals, source.serviceAccount, trustDomains',
    );
  });

  it('DENY: L7 fields are removed and the L4 part of the rule still denies (narrowed)', () => {
    const c = compileAuthorizationPolicy(
      ap({
        action: 'DENY',
        rules: [{ to: [{ operation: { methods: ['POST'], ports: ['8080'] } }] }],
      }),
      opts,
    );
    expect(c.l4?.rules).toEqual([
      { clauses: [{ matches: [m({ destinationPorts: [8080] })] }], sourceRule: 0 },
    ]);
    expect(c.l4?.notes.map((n) => n.kind)).toEqual(['deny-rule-narrowed']);
    expect(c.warnings[0]).toContain('DENY policy with HTTP attributes is enforced without the HTTP rules.');
  });

  it('DENY: a clause left with only an empty Match makes the whole rule a no-op (dropped)', () => {
    const c = compileAuthorizationPolicy(
      ap({
        action: 'DENY',
        rules: [
          {
            from: [{ source: { principals: ['cluster.local/ns/a/sa/x'] } }],
            to: [{ operation: { methods: ['GET'] } }],
          },
        ],
      }),
      opts,
    );
    expect(c.l4?.rules).toEqual([]);
    expect(c.l4?.notes.map((n) => n.kind)).toEqual(['deny-rule-noop']);
    expect(c.warnings[0]).toBe(
      'ztunnel does not support HTTP attributes (found: methods). In ambient mode you must use a waypoint proxy to enforce HTTP rules. After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce this policy.',
    );
  });

  it('DENY: an L7-only when condition makes the rule a no-op', () => {
    const c = compileAuthorizationPolicy(
      ap({ action: 'DENY', rules: [{ when: [{ key: 'request.auth.principal', values: ['x'] }] }] }),
      opts,
    );
    expect(c.l4?.rules).toEqual([]);
    expect(c.l4?.notes[0]?.kind).toBe('deny-rule-noop');
    expect(c.l4?.notes[0]?.fields).toEqual(['rules[0].when[0].key=request.auth.principal']);
  });

  it('DENY: an L7 operation next to an L4 one in the same clause still denies via the L4 one', () => {
    const c = compileAuthorizationPolicy(
      ap({
        action: 'DENY',
        rules: [{ to: [{ operation: { methods: ['GET'] } }, { operation: { ports: ['22'] } }] }],
      }),
      opts,
    );
    expect(c.l4?.rules).toHaveLength(1);
    expect(c.l4?.notes[0]?.kind).toBe('deny-rule-narrowed');
  });

  it('DENY mixed with an effective rule uses the "more restrictive" status, not "no effect"', () => {
    const c = compileAuthorizationPolicy(
      ap({
        action: 'DENY',
        rules: [
          { to: [{ operation: { paths: ['/admin'] } }] },
          { from: [{ source: { namespaces: ['bad'] } }] },
        ],
      }),
      opts,
    );
    expect(c.l4?.rules.map((r) => r.sourceRule)).toEqual([1]);
    expect(c.warnings[0]).toContain('This will be more restrictive than requested.');
  });
});

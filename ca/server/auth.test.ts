import { describe, expect, it } from 'vitest';
import { parseSpiffeId } from '../../core/identity/spiffe.js';
import { PermissionDenied } from '../errors.js';
import {
  authorizeIdentity,
  bearerToken,
  parseTokenFile,
  parseTrustedNodeAccounts,
  podLocatorOf,
} from './auth.js';

const ztunnel = parseSpiffeId('spiffe://cluster.local/ns/istio-system/sa/ztunnel');
const sleep = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
const locator = podLocatorOf({
  hasWorkloadWithIdentityOnNode: (uri, node) =>
    uri === 'spiffe://cluster.local/ns/default/sa/sleep' && node === 'node-a',
});
const ctx = { trustedNodeAccounts: ['istio-system/ztunnel'], podLocator: locator };

describe('token file', () => {
  it('parses tokens with identity and node', () => {
    const m = parseTokenFile(
      'tokens:\n  - token: aaaaaaaaaaaaaaaa1\n    identity: spiffe://cluster.local/ns/istio-system/sa/ztunnel\n    node: node-a\n',
      't.yaml',
    );
    expect(m.get('aaaaaaaaaaaaaaaa1')).toEqual({ identity: ztunnel, node: 'node-a' });
  });
  it('names the file and field of a bad entry', () => {
    expect(() =>
      parseTokenFile('tokens:\n  - token: aaaaaaaaaaaaaaaa1\n    identity: nope\n', 't.yaml'),
    ).toThrow(/t\.yaml: tokens\.0\.identity: invalid SPIFFE ID/);
    expect(() => parseTokenFile('tokens:\n  - token: short\n    identity: x\n', 't.yaml')).toThrow(
      /tokens\.0\.token: token must be/,
    );
    expect(() => parseTokenFile('tokens: [', 't.yaml')).toThrow(/t\.yaml: not valid YAML/);
  });
});

describe('authorizeIdentity', () => {
  it('gives a caller its own identity without impersonation', () => {
    expect(authorizeIdentity({ identity: sleep }, undefined, ctx)).toEqual(sleep);
  });
  it('lets a trusted node account impersonate a workload on its node only', () => {
    expect(authorizeIdentity({ identity: ztunnel, node: 'node-a' }, sleep, ctx)).toEqual(sleep);
    expect(() => authorizeIdentity({ identity: ztunnel, node: 'node-b' }, sleep, ctx)).toThrow(
      PermissionDenied,
    );
    expect(() => authorizeIdentity({ identity: ztunnel }, sleep, ctx)).toThrow(/no known node/);
  });
  it('refuses impersonation by untrusted accounts and when no pod locator is configured (fail closed)', () => {
    expect(() => authorizeIdentity({ identity: sleep, node: 'node-a' }, sleep, ctx)).toThrow(
      /not a trusted node account/,
    );
    expect(() =>
      authorizeIdentity({ identity: ztunnel, node: 'node-a' }, sleep, {
        trustedNodeAccounts: ['istio-system/ztunnel'],
      }),
    ).toThrow(/does not know where pods run: start it with -m DIR/);
  });
});

describe('helpers', () => {
  it('reads bearer tokens and CA_TRUSTED_NODE_ACCOUNTS', () => {
    expect(bearerToken('Bearer abc.def')).toBe('abc.def');
    expect(bearerToken('bearer  abc ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeUndefined();
    expect(bearerToken(undefined)).toBeUndefined();
    expect(parseTrustedNodeAccounts('istio-system/ztunnel, kube-system/agent')).toEqual([
      'istio-system/ztunnel',
      'kube-system/agent',
    ]);
    expect(() => parseTrustedNodeAccounts('ztunnel')).toThrow(/not <namespace>\/<service-account>/);
  });
});

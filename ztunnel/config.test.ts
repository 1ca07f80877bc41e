import { describe, expect, it } from 'vitest';
import { ConfigError, configFromEnv, illegalPorts, parseConfig } from './config.js';

describe('ztunnel config', () => {
  it("fills Istio's defaults: ports, 5 s drain, 100 streams per connection", () => {
    const c = parseConfig({ node: 'node-a' });
    expect([
      c.outboundPort,
      c.inboundPlaintextPort,
      c.inboundPort,
      c.adminPort,
      c.statsPort,
      c.readinessPort,
    ]).toEqual([15001, 15006, 15008, 15000, 15020, 15021]);
    expect(c.adminAddress).toBe('127.0.0.1');
    expect(c.drainDeadlineMs).toBe(5000);
    expect(c.poolMaxStreamsPerConnection).toBe(100);
    expect([...illegalPorts(c)]).toEqual([15001, 15006, 15008]);
  });

  it("reads ztunnel's environment names, with the termination-grace rule for the drain deadline", () => {
    expect(
      configFromEnv({}, { NODE_NAME: 'n1', TERMINATION_GRACE_PERIOD_SECONDS: '30' }).drainDeadlineMs,
    ).toBe(25_000);
    expect(
      configFromEnv({}, { NODE_NAME: 'n1', TERMINATION_GRACE_PERIOD_SECONDS: '8' }).drainDeadlineMs,
    ).toBe(7000);
    expect(
      configFromEnv({}, { NODE_NAME: 'n1', CONNECTION_TERMINATION_DEADLINE: '2s' }).drainDeadlineMs,
    ).toBe(2000);
    const c = configFromEnv(
      { node: 'flag-wins' },
      { NODE_NAME: 'env', CA_ADDRESS: 'ca:15012', TRUST_DOMAIN: 'example.org' },
    );
    expect([c.node, c.caAddress, c.trustDomain]).toEqual(['flag-wins', 'ca:15012', 'example.org']);
  });

  it('takes the Kubernetes first-sync deadline from KUBERNETES_SYNC_TIMEOUT, explicit input first', () => {
    expect(configFromEnv({ node: 'n' }, {}).kubernetesSyncTimeoutMs).toBeUndefined();
    expect(configFromEnv({ node: 'n' }, { KUBERNETES_SYNC_TIMEOUT: '5m' }).kubernetesSyncTimeoutMs).toBe(
      300_000,
    );
    expect(
      configFromEnv({ node: 'n', kubernetesSyncTimeoutMs: 1000 }, { KUBERNETES_SYNC_TIMEOUT: '5m' })
        .kubernetesSyncTimeoutMs,
    ).toBe(1000);
    expect(() => configFromEnv({ node: 'n' }, { KUBERNETES_SYNC_TIMEOUT: 'later' })).toThrow(
      'ztunnel config: environment KUBERNETES_SYNC_TIMEOUT "later" is not a duration',
    );
  });

  it('rejects bad input with one line naming the field', () => {
    expect(() => parseConfig({ node: '' })).toThrow(ConfigError);
    expect(() => parseConfig({ node: 'n', inboundPort: 70000 })).toThrow(/^ztunnel config: inboundPort: /);
    expect(() => parseConfig({ node: 'n', trustDomain: 'Bad Domain' })).toThrow(
      /trustDomain: trust domain "Bad Domain"/,
    );
    expect(() => configFromEnv({}, { NODE_NAME: 'n', CONNECTION_TERMINATION_DEADLINE: 'soon' })).toThrow(
      /CONNECTION_TERMINATION_DEADLINE="soon" is not a number/,
    );
  });
});

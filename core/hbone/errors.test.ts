import { describe, expect, it } from 'vitest';
import {
  BadAuthority,
  ConnectTimeout,
  HboneStatusError,
  IdentityMismatch,
  IllegalPort,
  IpMismatch,
  NotConnect,
  PolicyDenied,
  UpstreamConnectFailed,
  statusOf,
} from './errors.js';
import { DEFAULT_HBONE_SETTINGS, h2Settings, resolveSettings } from './settings.js';

describe('HBONE errors map to Istio status codes and response flags in one place', () => {
  it.each([
    [new NotConnect('GET'), 400, 'CONNECT'],
    [new BadAuthority('x', 'has no port'), 400, 'CONNECT'],
    [new IpMismatch('10.0.0.9', '10.0.0.2'), 400, 'CONNECT'],
    [new PolicyDenied('allow policies exist, but none allowed'), 401, 'DENY'],
    [new IllegalPort(15008), 503, 'CONNECT'],
    [new UpstreamConnectFailed('10.0.0.2:8080'), 503, 'CONNECT'],
    [new IdentityMismatch(['spiffe://a/ns/b/sa/c'], ['spiffe://a/ns/b/sa/d']), 503, 'IDENTITY_ERROR'],
    [new ConnectTimeout('10.0.0.2:15008', 10_000), 503, 'NETWORK_POLICY'],
    [new HboneStatusError(401, '10.0.0.2:80'), 401, 'DENY'],
    [new HboneStatusError(503, '10.0.0.2:80'), 503, 'CONNECT'],
    [new Error('anything else'), 503, 'CONNECT'],
  ])('%s → %i %s', (err, status, flags) => {
    expect(statusOf(err)).toEqual({ status, responseFlags: flags });
  });

  it('uses Istio wording users search for', () => {
    expect(new IpMismatch('10.0.0.9', '10.0.0.2').message).toBe('ip mismatch: 10.0.0.9 != 10.0.0.2');
    expect(new HboneStatusError(401, 'a:1').message).toMatch(/^http status: 401/);
    expect(new PolicyDenied('explicitly denied by: ns/deny-all').message).toBe(
      'connection closed due to policy rejection: explicitly denied by: ns/deny-all',
    );
    expect(new ConnectTimeout('10.0.0.2:15008', 10_000).message).toMatch(
      /NetworkPolicy is blocking HBONE port 15008/,
    );
  });
});

describe('HBONE settings', () => {
  it('defaults to the Istio values', () => {
    const s = h2Settings(DEFAULT_HBONE_SETTINGS, 'server');
    expect(s).toMatchObject({
      enablePush: false,
      initialWindowSize: 4 * 1024 * 1024,
      maxFrameSize: 1024 * 1024,
      maxConcurrentStreams: 200,
    });
    expect(DEFAULT_HBONE_SETTINGS.connectionWindowBytes).toBe(16 * 1024 * 1024);
    expect(DEFAULT_HBONE_SETTINGS.maxStreamsPerConnection).toBe(100);
    expect(DEFAULT_HBONE_SETTINGS.pingIntervalMs).toBe(10_000);
    expect(DEFAULT_HBONE_SETTINGS.pingTimeoutMs).toBe(20_000);
  });

  it('rejects impossible values naming the setting', () => {
    expect(() => resolveSettings({ maxFrameBytes: 100 })).toThrow(/maxFrameBytes must be 16384/);
    expect(() => resolveSettings({ pingIntervalMs: -1 })).toThrow(/pingIntervalMs must be a positive number/);
  });
});

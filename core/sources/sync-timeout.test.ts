import { describe, expect, it } from 'vitest';
import { parseSyncTimeout, SyncTimeoutConfigError, syncTimeoutFrom } from './sync-timeout.js';

describe('first-sync deadline', () => {
  it('reads Istio-style durations and plain seconds', () => {
    expect(parseSyncTimeout('90s', 'x')).toBe(90_000);
    expect(parseSyncTimeout('5m', 'x')).toBe(300_000);
    expect(parseSyncTimeout('1500ms', 'x')).toBe(1500);
    expect(parseSyncTimeout('45', 'x')).toBe(45_000);
  });

  it('takes the flag over KUBERNETES_SYNC_TIMEOUT, and neither means the default', () => {
    expect(syncTimeoutFrom('10m', { KUBERNETES_SYNC_TIMEOUT: '30s' })).toBe(600_000);
    expect(syncTimeoutFrom(undefined, { KUBERNETES_SYNC_TIMEOUT: '30s' })).toBe(30_000);
    expect(syncTimeoutFrom(undefined, {})).toBeUndefined();
  });

  it('refuses a value that is not a positive duration, naming where it came from', () => {
    expect(() => syncTimeoutFrom(undefined, { KUBERNETES_SYNC_TIMEOUT: 'soon' })).toThrow(
      'KUBERNETES_SYNC_TIMEOUT "soon" is not a duration',
    );
    expect(() => syncTimeoutFrom('0s')).toThrow(SyncTimeoutConfigError);
    expect(() => syncTimeoutFrom('-5s')).toThrow('--sync-timeout "-5s"');
  });
});

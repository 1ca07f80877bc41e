import { describe, expect, it } from 'vitest';
import { defaultConfig, validateConfig } from './config.js';

describe('bpf-agent config', () => {
  it('defaults to Istio ztunnel ports and a mark clear of kube-proxy', () => {
    const c = validateConfig(defaultConfig('node-a'));
    expect([c.outboundPort, c.inboundPort, c.hbonePort]).toEqual([15001, 15006, 15008]);
    expect(c.mark & 0xc000).toBe(0); // kube-proxy uses 0x4000 (masq) and 0x8000 (drop)
    expect(c.failOpen).toBe(false);
    expect(c.mode).toBe('auto');
  });

  it('rejects bad values with the option name', () => {
    expect(() => validateConfig({ ...defaultConfig('a'), mode: 'iptables' as never })).toThrow(/--mode/);
    expect(() => validateConfig({ ...defaultConfig('a'), outboundPort: 70000 })).toThrow(/outboundPort/);
    expect(() => validateConfig({ ...defaultConfig('a'), mark: 0 })).toThrow(/--mark/);
    expect(() => validateConfig({ ...defaultConfig('a'), pinDir: '/tmp/x' })).toThrow(/--pin-dir/);
    expect(() => validateConfig(defaultConfig('Node_A'))).toThrow(/--node "Node_A"/);
    expect(() => validateConfig({ ...defaultConfig('a'), uplinks: ['eth0; rm -rf'] })).toThrow(/--uplink/);
  });
});

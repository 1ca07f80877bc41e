// The nftables fallback's ruleset: TPROXY into the same listeners as eBPF, anti-spoofing, and the
// explicit reject that keeps TPROXY from failing open when no listener exists (docs/capture.md §2).
import { describe, expect, it } from 'vitest';
import type { DesiredPod } from './capture.js';
import { renderUpTable, wantedRedirects } from './bridge-ports.js';
import { defaultConfig } from './config.js';
import { POD_CAPTURE, POD_DRAIN, POD_NONE, POD_PENDING } from './maps.js';
import { renderTproxyTable } from './nft-capture.js';

const pods = [
  { ip: '10.244.1.2', state: POD_CAPTURE, dev: 'h-a', ifindex: 3 },
  { ip: '10.244.1.3', state: POD_DRAIN, dev: 'h-b', ifindex: 4 },
  { ip: '10.244.1.4', state: POD_NONE, dev: 'h-c', ifindex: 5 },
] as const;

describe('nftables TPROXY fallback ruleset', () => {
  const body = renderTproxyTable(defaultConfig('a'), [...pods]);

  it('captures only CAPTURE pods (DRAIN and NONE go direct for new connections)', () => {
    expect(body).toMatch(/set capture \{\s+type ipv4_addr;\s+elements = \{ 10\.244\.1\.2 \}/);
    expect(body).toContain('tproxy ip to :15001');
    expect(body).toContain('tcp dport 15008 tcp flags & (syn | ack) == syn tproxy ip to :15008');
    expect(body).toContain('tproxy ip to :15006');
  });

  it('binds every pod IP to its own veth (anti-spoofing)', () => {
    expect(body).toContain('elements = { 10.244.1.2 . "h-a", 10.244.1.3 . "h-b", 10.244.1.4 . "h-c" }');
    expect(body).toContain('iifname @podifs ip saddr . iifname != @podsrc counter name spoofed drop');
  });

  it('rejects SYNs of enrolled pods that TPROXY did not take (fail closed) unless fail-open', () => {
    expect(body).toMatch(/hook forward[\s\S]*reject with tcp reset/);
    const open = renderTproxyTable({ ...defaultConfig('a'), failOpen: true }, [...pods]);
    expect(open).not.toContain('reject');
  });

  it('renders empty sets without an elements clause (nft rejects `elements = { }`)', () => {
    const empty = renderTproxyTable(defaultConfig('a'), []);
    expect(empty).not.toContain('elements');
  });
});

describe('nftables fallback: flows the proxy owns', () => {
  const body = renderTproxyTable(defaultConfig('a'), [...pods]);
  it("skips the proxy's wildcard listeners before marking transparent sockets' packets", () => {
    const skip = body.indexOf('socket wildcard 1 return');
    const mark = body.indexOf('socket transparent 1 meta mark set 0x400 notrack');
    expect(skip).toBeGreaterThan(0);
    expect(mark).toBeGreaterThan(skip);
  });
});

describe('nftables fallback on a bridge CNI: pods redirected from their veth to the bridge', () => {
  const br = { dev: 'cni0', mac: '02:00:00:00:00:01', ifindex: 2 };
  const bridged: DesiredPod[] = [
    { ip: '10.244.1.2', state: POD_CAPTURE, dev: 'h-a', ifindex: 3, bridge: br },
    { ip: '10.244.1.3', state: POD_NONE, dev: 'h-b', ifindex: 4, bridge: br },
    { ip: '10.244.1.4', state: POD_PENDING, dev: 'h-c', ifindex: 5, bridge: br },
    { ip: '10.244.2.2', state: POD_CAPTURE, dev: 'h-d', ifindex: 6 },
  ];

  it('redirects every known bridged pod (inbound to an enrolled neighbour too), never an unknown one', () => {
    expect(wantedRedirects(bridged)).toEqual([
      { dev: 'h-a', ip: '10.244.1.2', bridge: 'cni0' },
      { dev: 'h-b', ip: '10.244.1.3', bridge: 'cni0' },
    ]);
  });

  it("makes only the redirected pods' otherhost frames local on the bridge device", () => {
    const up = renderUpTable(wantedRedirects(bridged)) ?? '';
    expect(up).toContain('elements = { 10.244.1.2, 10.244.1.3 }');
    expect(up).toContain('type filter hook ingress device "cni0" priority 0;');
    expect(up).toContain('ether type ip ip saddr @routed meta pkttype other meta pkttype set host');
    expect(renderUpTable([])).toBeUndefined();
  });
});

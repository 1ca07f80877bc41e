// The byte layouts the agent writes must match bpf/maps.h exactly, or the kernel reads garbage.
import { describe, expect, it } from 'vitest';
import {
  cfgValue,
  hexArgs,
  ifaceValue,
  ipv4Bytes,
  ipv4FromBytes,
  POD_CAPTURE,
  POD_DRAIN,
  podValue,
} from './maps.js';

describe('pinned map encodings (bpf/maps.h)', () => {
  it('keys pods by the IPv4 address in network order, as read from the IP header', () => {
    expect([...ipv4Bytes('10.244.1.2')]).toEqual([10, 244, 1, 2]);
    expect(ipv4FromBytes(Buffer.from([10, 244, 1, 2]))).toBe('10.244.1.2');
    expect(hexArgs(ipv4Bytes('10.244.1.2'))).toEqual(['hex', '0a', 'f4', '01', '02']);
  });

  it('rejects what is not a dotted IPv4 address, naming it', () => {
    expect(() => ipv4Bytes('10.244.1')).toThrow(/not an IPv4 address: "10.244.1"/);
    expect(() => ipv4Bytes('10.244.1.256')).toThrow(/10.244.1.256/);
    expect(() => ipv4Bytes('fd00::1')).toThrow(/fd00::1/);
  });

  it('lays out struct pod_info {state, ifindex} as two host-order u32', () => {
    expect([...podValue(POD_CAPTURE, 5)]).toEqual([1, 0, 0, 0, 5, 0, 0, 0]);
    expect([...podValue(POD_DRAIN, 0x0102)]).toEqual([2, 0, 0, 0, 2, 1, 0, 0]);
  });

  it('lays out struct redir_cfg {u16 ports x3, pad, u32 mark, u32 fail_open} (16 bytes)', () => {
    const v = cfgValue({
      outboundPort: 15001,
      inboundPort: 15006,
      hbonePort: 15008,
      mark: 0x400,
      failOpen: true,
    });
    expect(v.length).toBe(16);
    expect(v.readUInt16LE(0)).toBe(15001);
    expect(v.readUInt16LE(2)).toBe(15006);
    expect(v.readUInt16LE(4)).toBe(15008);
    expect(v.readUInt32LE(8)).toBe(0x400);
    expect(v.readUInt32LE(12)).toBe(1);
  });

  it('lays out struct iface_info {pod_ip (network order), kind}', () => {
    expect([...ifaceValue('10.0.0.7', 1)]).toEqual([10, 0, 0, 7, 1, 0, 0, 0]);
    expect([...ifaceValue(undefined, 2)]).toEqual([0, 0, 0, 0, 2, 0, 0, 0]);
  });
});

describe('service map encodings (struct svc_key / svc_value)', () => {
  it('keys by VIP and port in network order, values hold a count and up to 8 backends', async () => {
    const { svcKey, svcValue } = await import('./service-lb.js');
    expect([...svcKey('10.96.0.20', 80)]).toEqual([10, 96, 0, 20, 0, 80, 0, 0]);
    const v = svcValue([
      { ip: '10.244.2.2', port: 8080 },
      { ip: '10.244.2.3', port: 8080 },
    ]);
    expect(v.length).toBe(8 + 8 * 8);
    expect(v.readUInt32LE(0)).toBe(2);
    expect([...v.subarray(8, 16)]).toEqual([10, 244, 2, 2, 0x1f, 0x90, 0, 0]);
    expect([...v.subarray(24, 32)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const many = Array.from({ length: 12 }, (_, i) => ({ ip: `10.0.0.${i + 1}`, port: 1 }));
    expect(svcValue(many).readUInt32LE(0)).toBe(8);
  });
});

import { describe, expect, it } from 'vitest';
import {
  baggageFor,
  connectHeaders,
  formatAuthority,
  formatBaggage,
  formatForwarded,
  parseAuthority,
  parseBaggage,
  parseForwarded,
  parseTraceparent,
} from './connect-request.js';
import { BadAuthority } from './errors.js';

describe('CONNECT :authority', () => {
  it('parses ip:port, [v6]:port and hostname:port', () => {
    expect(parseAuthority('10.0.0.2:8080')).toEqual({ kind: 'ip', ip: '10.0.0.2', port: 8080, family: 4 });
    expect(parseAuthority('[fd00::0:1]:80')).toEqual({ kind: 'ip', ip: 'fd00::1', port: 80, family: 6 });
    expect(parseAuthority('httpbin.default.svc.cluster.local:8000')).toEqual({
      kind: 'hostname',
      hostname: 'httpbin.default.svc.cluster.local',
      port: 8000,
    });
  });

  it.each([
    ['', /missing/],
    ['10.0.0.2', /has no port/],
    ['10.0.0.2:', /port "" is not a number/],
    ['10.0.0.2:0', /out of range/],
    ['10.0.0.2:65536', /out of range/],
    ['300.0.0.2:80', /not a valid IPv4/],
    ['fd00::1:80', /must be in brackets/],
    ['[zz::1]:80', /not an IPv6 address/],
    ['bad_host!:80', /not a valid hostname/],
  ])('rejects %j with a reason', (input, reason) => {
    expect(() => parseAuthority(input)).toThrow(BadAuthority);
    expect(() => parseAuthority(input)).toThrow(reason);
  });

  it('formats v6 authorities in brackets', () => {
    expect(formatAuthority('fd00::1', 15008)).toBe('[fd00::1]:15008');
    expect(formatAuthority('10.0.0.2', 15008)).toBe('10.0.0.2:15008');
  });
});

describe('forwarded', () => {
  it('round-trips what ztunnel sends', () => {
    const f = { forIp: '10.0.0.1', forPort: 43512, host: 'httpbin.default.svc.cluster.local' };
    expect(formatForwarded(f)).toBe('for="10.0.0.1:43512";host=httpbin.default.svc.cluster.local');
    expect(parseForwarded(formatForwarded(f))).toEqual(f);
    expect(parseForwarded('for="[fd00::1]:5"')).toEqual({ forIp: 'fd00::1', forPort: 5 });
  });

  it('ignores absent or malformed values instead of trusting them', () => {
    expect(parseForwarded(undefined)).toBeUndefined();
    expect(parseForwarded('for=unknown')).toBeUndefined();
    expect(parseForwarded('for="10.0.0.1:99999"')).toBeUndefined();
    expect(parseForwarded('host=x')).toBeUndefined();
  });
});

describe('baggage and traceparent', () => {
  it('writes only non-empty workload fields, in ztunnel order, and parses them back', () => {
    const b = baggageFor({
      clusterId: 'Kubernetes',
      namespace: 'default',
      workloadType: 'deployment',
      workloadName: 'sleep',
      canonicalName: 'sleep',
      canonicalRevision: 'v1',
    });
    const text = formatBaggage(b);
    expect(text).toBe(
      'k8s.cluster.name=Kubernetes,k8s.namespace.name=default,k8s.deployment.name=sleep,service.name=sleep,service.version=v1',
    );
    expect(parseBaggage(text)).toEqual(b);
    expect(parseBaggage('a=b%2Cc;prop=1,junk, =x')).toEqual({ a: 'b,c' });
  });

  it('sends CONNECT with a fresh traceparent and no :path/:scheme', () => {
    const h = connectHeaders({ authority: '10.0.0.2:8080', forwarded: { forIp: '10.0.0.1', forPort: 1 } });
    expect(h[':method']).toBe('CONNECT');
    expect(h[':authority']).toBe('10.0.0.2:8080');
    expect(h[':path']).toBeUndefined();
    expect(parseTraceparent(h.traceparent)).toBe(h.traceparent);
    expect(h.forwarded).toBe('for="10.0.0.1:1"');
    expect(connectHeaders({ authority: 'a:1' }).traceparent).not.toBe(h.traceparent);
    expect(parseTraceparent('garbage')).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { parseSpiffeId } from '../identity/spiffe.js';
import { type SourceAddressLookup, trustedSourceAddress } from './source-address.js';

const sleep = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');
const other = parseSpiffeId('spiffe://cluster.local/ns/default/sa/other');

// 10.0.1.5 = sleep on node-a; 10.0.2.7 = other on node-b; 192.168.0.10 = node-a's ztunnel.
const lookup: SourceAddressLookup = {
  workloadByIp: (ip) =>
    ({ '10.0.1.5': { identity: sleep, node: 'node-a' }, '10.0.2.7': { identity: other, node: 'node-b' } })[
      ip
    ],
  nodeOfProxyIp: (ip) => (ip === '192.168.0.10' ? 'node-a' : undefined),
};

describe('trustedSourceAddress', () => {
  it('uses the TCP peer when there is no forwarded header', () => {
    expect(trustedSourceAddress({ peerIdentity: sleep, tcpPeer: '10.0.1.5' }, lookup)).toMatchObject({
      address: '10.0.1.5',
      fromForwarded: false,
    });
  });

  it('unwraps v4-mapped peers', () => {
    expect(trustedSourceAddress({ peerIdentity: sleep, tcpPeer: '::ffff:10.0.1.5' }, lookup).address).toBe(
      '10.0.1.5',
    );
  });

  it("believes forwarded from the source node's ztunnel for a pod of the peer's identity", () => {
    const d = trustedSourceAddress(
      { peerIdentity: sleep, tcpPeer: '192.168.0.10', forwarded: { forIp: '10.0.1.5', forPort: 4000 } },
      lookup,
    );
    expect(d).toMatchObject({ address: '10.0.1.5', fromForwarded: true });
  });

  it("refuses a forwarded address of another identity's pod (cannot borrow someone's IP)", () => {
    const d = trustedSourceAddress(
      { peerIdentity: sleep, tcpPeer: '192.168.0.10', forwarded: { forIp: '10.0.2.7' } },
      lookup,
    );
    expect(d).toMatchObject({ address: '192.168.0.10', fromForwarded: false });
    expect(d.reason).toMatch(/another identity/);
  });

  it('refuses a forwarded address sent from a node that does not run that pod', () => {
    const d = trustedSourceAddress(
      { peerIdentity: sleep, tcpPeer: '10.9.9.9', forwarded: { forIp: '10.0.1.5' } },
      lookup,
    );
    expect(d).toMatchObject({ address: '10.9.9.9', fromForwarded: false });
  });

  it('refuses a forwarded address no workload owns', () => {
    const d = trustedSourceAddress(
      { peerIdentity: sleep, tcpPeer: '192.168.0.10', forwarded: { forIp: '8.8.8.8' } },
      lookup,
    );
    expect(d).toMatchObject({ address: '192.168.0.10', fromForwarded: false });
  });
});

// Which client address the inbound side believes (docs/architecture.md §7 "Source IP").
// Istio: the TCP peer of an HBONE connection IS the source pod's IP (ztunnel dials from the pod's
// netns, or spoofs it with a transparent socket), and `ipBlocks` / telemetry use that peer. A
// `forwarded: for=` header is client-supplied: believing it blindly would let any mesh identity
// claim any source IP and walk through `ipBlocks` allow-lists. We accept it only when it is
// consistent with what mTLS proved:
//   - it names the TCP peer itself (nothing new is claimed), or
//   - the address belongs to a workload whose identity IS the verified peer identity, and the TCP
//     peer is either that workload's own IP or the node proxy (ztunnel) of that workload's node
//     (a per-node proxy that could not preserve the source IP).
// Anything else falls back to the TCP peer (fail closed: the address we can prove).
import { canonicalIp } from '../route/address.js';
import { type SpiffeId, sameIdentity } from '../identity/spiffe.js';
import type { Forwarded } from './connect-request.js';

/** What the check needs from the mesh state; ztunnel wires MeshState here. Pure lookups, no I/O. */
export interface SourceAddressLookup {
  /** The workload owning `ip`, with its identity and node; undefined when unknown. */
  workloadByIp(ip: string): { identity: SpiffeId; node?: string } | undefined;
  /** The node whose node proxy (ztunnel) sends from `ip`; undefined when `ip` is no node proxy. */
  nodeOfProxyIp(ip: string): string | undefined;
}

export interface SourceAddressDecision {
  /** The address policy and telemetry use. */
  address: string;
  /** True when `address` came from the forwarded header and was found consistent. */
  fromForwarded: boolean;
  /** Why; for the debug log. */
  reason: string;
}

// One spelling per address (unwraps ::ffff:a.b.c.d to a.b.c.d): core/route/address.ts.
const canonical = canonicalIp;

/** Decides the client address of an inbound HBONE tunnel. Pure: same inputs, same answer. */
export function trustedSourceAddress(
  input: { peerIdentity: SpiffeId; tcpPeer: string; forwarded?: Forwarded },
  lookup: SourceAddressLookup,
): SourceAddressDecision {
  const tcpPeer = canonical(input.tcpPeer);
  if (!input.forwarded) return { address: tcpPeer, fromForwarded: false, reason: 'no forwarded header' };
  const claimed = canonical(input.forwarded.forIp);
  if (claimed === tcpPeer) {
    return { address: tcpPeer, fromForwarded: false, reason: 'forwarded names the TCP peer' };
  }
  const owner = lookup.workloadByIp(claimed);
  if (!owner) {
    return { address: tcpPeer, fromForwarded: false, reason: `forwarded ${claimed} is no known workload` };
  }
  if (!sameIdentity(owner.identity, input.peerIdentity)) {
    return {
      address: tcpPeer,
      fromForwarded: false,
      reason: `forwarded ${claimed} belongs to another identity than the peer's certificate`,
    };
  }
  const proxyNode = lookup.nodeOfProxyIp(tcpPeer);
  if (proxyNode !== undefined && owner.node !== undefined && proxyNode === owner.node) {
    return {
      address: claimed,
      fromForwarded: true,
      reason: `TCP peer is the node proxy of ${owner.node}, where ${claimed} runs`,
    };
  }
  return {
    address: tcpPeer,
    fromForwarded: false,
    reason: `TCP peer ${tcpPeer} is neither ${claimed} nor its node's proxy`,
  };
}

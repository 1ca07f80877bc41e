// How ztunnel receives captured connections, and what it learns with each one (docs/architecture.md §5, §7).
//
// Every capture mechanism — tc `bpf_sk_assign` steering (bpf-redirect), nftables TPROXY (the
// fallback), or anything later — ends in the same place: a connection accepted by one of ztunnel's
// three listeners, with
//   - the ORIGINAL DESTINATION (what the app dialled, or the pod it targeted), and
//   - the SOURCE address (the real client: the pod for outbound, the remote peer for inbound).
// For transparent listeners both come from the socket itself (`localAddress` IS the original
// destination, `remoteAddress` the real client), so a capture mechanism owes ztunnel nothing
// beyond delivering the SYN to the listener. The source WORKLOAD is then a state lookup by source
// IP (outbound: trustworthy because bpf-redirect drops packets whose source IP does not match the
// pod's veth), unless the capture knows it directly (`sourceWorkloadUid`, e.g. an in-pod listener).
import type { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import {
  HBONE_PORT,
  INBOUND_PLAINTEXT_PORT,
  LOOP_GUARD_PORTS,
  OUTBOUND_CAPTURE_PORT,
} from '../core/hbone/settings.js';

/** Which ztunnel path a listener feeds (istio/ztunnel proxy/outbound.rs, inbound_passthrough.rs, inbound.rs). */
export type CaptureKind = 'outbound' | 'inbound-plaintext' | 'inbound-hbone';

/** ztunnel's well-known port per path. */
export const CAPTURE_PORTS: Readonly<Record<CaptureKind, number>> = Object.freeze({
  outbound: OUTBOUND_CAPTURE_PORT,
  'inbound-plaintext': INBOUND_PLAINTEXT_PORT,
  'inbound-hbone': HBONE_PORT,
});

export interface SocketAddress {
  address: string;
  port: number;
  family: 4 | 6;
}

/** What ztunnel knows about a captured connection the moment it is accepted. */
export interface CaptureContext {
  kind: CaptureKind;
  /** Where the client was going: the original destination (a VIP or pod IP and its port). */
  originalDst: SocketAddress;
  /** The real client (pod IP for outbound; the peer — pod or remote ztunnel — for inbound). */
  source: SocketAddress;
  /** Set only by captures that know the source pod without a lookup (in-pod listeners). */
  sourceWorkloadUid?: string;
}

export type CapturedConnectionHandler = (socket: net.Socket, ctx: CaptureContext) => void;

/** Why a captured connection was refused before reaching a handler. */
export interface CaptureRejection {
  kind: CaptureKind;
  reason: 'loop' | 'no-original-destination';
  message: string;
  originalDst?: SocketAddress;
  source?: SocketAddress;
}

/**
 * One ztunnel capture listener. Events:
 *  - 'connection' (socket, ctx: CaptureContext): a captured connection for this path;
 *  - 'rejected' (r: CaptureRejection): refused by the listener itself (loop guard), socket reset;
 *  - 'error' (err): the listener failed (it keeps no other state).
 */
export interface CaptureListener extends EventEmitter {
  readonly kind: CaptureKind;
  /** Bound address once started (0.0.0.0:1500x for a transparent listener). */
  readonly address: SocketAddress | undefined;
  start(): Promise<void>;
  /** Stops accepting new connections; accepted sockets are the handler's (drain owns them). */
  close(): Promise<void>;
  on(event: 'connection', listener: CapturedConnectionHandler): this;
  on(event: 'rejected', listener: (r: CaptureRejection) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

/**
 * The loop guard (docs/architecture.md §4: ports 15001/15006/15008 are never valid targets). On the outbound and
 * plaintext paths an original destination on one of ztunnel's own ports means the connection came
 * from ztunnel (or straight at it) and would loop. Inbound HBONE legitimately arrives on 15008.
 */
export function loopGuard(kind: CaptureKind, originalDst: SocketAddress): string | undefined {
  if (kind === 'inbound-hbone') return undefined;
  if (LOOP_GUARD_PORTS.has(originalDst.port)) {
    return `original destination ${originalDst.address}:${originalDst.port} is a ztunnel port; refusing a ${kind} loop`;
  }
  return undefined;
}

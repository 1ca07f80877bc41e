// Inbound plaintext (15006): a non-HBONE connection to a local pod, captured transparently so the
// socket's local address is the original destination (istio/ztunnel src/proxy/inbound_passthrough.rs).
// Policy runs with no source identity — a PeerAuthentication STRICT compiles to a DENY with
// `notPrincipals: [presence]` that matches exactly this case, so STRICT refuses here and PERMISSIVE
// falls through to the ordinary L4 policies. There is no HTTP answer: a denial closes the connection.
import type net from 'node:net';
import { peerLabels } from './proxy-context.js';
import type { ProxyContext } from './proxy-context.js';
import { hostPort } from './proxy-context.js';
import { deliver } from './deliver.js';
import type { SocketAddr } from '../core/route/address.js';

export interface CapturedConnection {
  socket: net.Socket;
  /** Where the client meant to go (the transparent socket's local address). */
  originalDst: SocketAddr;
  /** The client (the socket's remote address). */
  source: SocketAddr;
}

export async function handleInboundPlaintext(ctx: ProxyContext, c: CapturedConnection): Promise<void> {
  const { socket, originalDst: dst, source } = c;
  socket.setNoDelay(true);
  // Until the relay owns the socket, a client reset must not become an unhandled 'error'.
  socket.on('error', (err) => ctx.log.debug({ err: err.message }, 'inbound plaintext client error'));
  const destination = ctx.state.workloadByIp(dst.ip);
  const srcWorkload = ctx.state.workloadByIp(source.ip);
  const report = ctx.telemetry.begin({
    reporter: 'destination',
    path: 'inbound-passthrough',
    srcAddr: hostPort(source.ip, source.port),
    dstAddr: hostPort(dst.ip, dst.port),
    // Plaintext: no principal, whatever the source workload is (principal only comes from mTLS).
    source: { ...peerLabels(srcWorkload, ctx.config.clusterId), principal: undefined },
    destination: peerLabels(destination, ctx.config.clusterId),
    securityPolicy: 'unknown',
  });
  if (!ctx.accepting()) {
    socket.resetAndDestroy();
    report.finish('ztunnel is draining', 'CONNECT');
    return;
  }
  if (!destination || destination.node !== ctx.config.node) {
    // istio/ztunnel: the destination must be a pod this ztunnel serves; otherwise refuse.
    socket.resetAndDestroy();
    report.finish(
      `unknown destination ${hostPort(dst.ip, dst.port)}: not a workload on node ${ctx.config.node}`,
    );
    return;
  }
  await deliver(
    ctx,
    {
      destination,
      target: dst,
      source,
      sourceIdentity: undefined,
      report,
      podIp: dst.ip,
      direction: 'inbound',
    },
    {
      accepted: () => socket,
      refused: () => socket.resetAndDestroy(),
    },
  );
}

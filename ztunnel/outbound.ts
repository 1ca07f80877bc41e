// Outbound (15001): a connection captured from an enrolled pod on this node, whose original
// destination D is the transparent socket's local address. istio/ztunnel src/proxy/outbound.rs:
// identify the source workload, decide where D goes (core/route/outbound.ts planOutbound), then HBONE to the peer
// ztunnel or waypoint, plain TCP to a non-mesh pod, passthrough for unknown D, or — for a pod on this
// node — apply the destination's inbound policy here and connect directly.
import type { Duplex } from 'node:stream';
import type { HboneDialer } from '../core/hbone/client-pool.js';
import { type HboneError, UpstreamConnectFailed } from '../core/hbone/errors.js';
import { formatSpiffeId } from '../core/identity/spiffe.js';
import { formatAddr } from '../core/route/address.js';
import { planOutbound } from '../core/route/outbound.js';
import { identityOf } from '../core/state/state.js';
import { deliver } from './deliver.js';
import { dial } from './dial.js';
import { ProxyError, messageOf, responseFlagsOf } from './errors.js';
import type { CapturedConnection } from './inbound-passthrough.js';
import { type ProxyContext, baggageOf, hostPort, peerLabels } from './proxy-context.js';
import { relayTracked } from './tracked-relay.js';

export type { HboneDialer };

export interface OutboundContext extends ProxyContext {
  hbone: HboneDialer;
}

export async function handleOutbound(ctx: OutboundContext, c: CapturedConnection): Promise<void> {
  const { socket, originalDst: dst, source } = c;
  socket.setNoDelay(true);
  socket.on('error', (err) => ctx.log.debug({ err: err.message }, 'outbound client error'));
  const cluster = ctx.config.clusterId;
  const src = ctx.state.workloadByIp(source.ip);
  const report = ctx.telemetry.begin({
    reporter: 'source',
    path: 'outbound',
    srcAddr: hostPort(source.ip, source.port),
    dstAddr: hostPort(dst.ip, dst.port),
    source: peerLabels(src, cluster),
    destination: {},
    securityPolicy: 'unknown',
  });
  const refuse = (err: ProxyError | HboneError): void => {
    socket.resetAndDestroy();
    report.finish(err.message, responseFlagsOf(err));
  };
  if (!ctx.accepting()) return refuse(new ProxyError('DRAINING', 'ztunnel is draining'));
  // istio/ztunnel: the source workload must be known (it waits up to 5 s for WDS, then refuses); a
  // connection from a pod this node does not serve is never proxied with someone else's identity.
  if (!src || src.node !== ctx.config.node) {
    return refuse(
      new ProxyError(
        'UNKNOWN_SOURCE',
        `unknown source ${source.ip}: not an enrolled workload on ${ctx.config.node}`,
      ),
    );
  }
  const plan = planOutbound(ctx.state, {
    source: src,
    dst,
    node: ctx.config.node,
    illegalPorts: ctx.illegalPorts,
  });
  const service = plan.kind !== 'passthrough' ? plan.service : undefined;
  if (service) {
    report.update({
      service: { hostname: service.hostname, namespace: service.namespace, name: service.name },
    });
  }
  switch (plan.kind) {
    case 'refuse':
      return refuse(new ProxyError(plan.code, plan.reason));
    case 'passthrough':
    case 'plaintext': {
      if (plan.kind === 'plaintext') {
        report.update({ destination: peerLabels(plan.destination, cluster, '') });
      }
      report.update({ dstAddr: hostPort(plan.target.ip, plan.target.port) });
      let upstream: Duplex;
      try {
        upstream = await dial({
          target: plan.target,
          sourceIp: ctx.config.preserveSourceIp ? source.ip : undefined,
          timeoutMs: ctx.config.connectTimeoutMs,
        });
      } catch (err) {
        return refuse(
          err instanceof UpstreamConnectFailed
            ? err
            : new UpstreamConnectFailed(formatAddr(plan.target.ip, plan.target.port), err),
        );
      }
      return relayTracked(ctx, report, { direction: 'outbound', podIp: source.ip }, socket, upstream);
    }
    case 'local': {
      // Same node: no tunnel, but the destination's inbound policy still applies, with the source's
      // identity as this ztunnel knows it (the capture proved which pod sent it).
      report.update({
        reporter: 'destination',
        dstAddr: hostPort(plan.target.ip, plan.target.port),
        destination: peerLabels(plan.destination, cluster),
        securityPolicy: 'mutual_tls',
      });
      return deliver(
        ctx,
        {
          destination: plan.destination,
          target: plan.target,
          source,
          sourceIdentity: identityOf(src),
          report,
          podIp: plan.target.ip,
          direction: 'inbound',
        },
        { accepted: () => socket, refused: () => socket.resetAndDestroy() },
      );
    }
    case 'hbone': {
      const peer = plan.waypoint?.pod ?? plan.destination;
      report.update({
        dstAddr: hostPort(plan.nextHop.ip, plan.nextHop.port),
        hboneAddr: plan.authority,
        destination: peerLabels(
          peer,
          cluster,
          plan.expectedIdentities[0] && formatSpiffeId(plan.expectedIdentities[0]),
        ),
        securityPolicy: 'mutual_tls',
      });
      let stream: Duplex;
      try {
        stream = await ctx.hbone.connect({
          sourceIdentity: identityOf(src),
          expectedIdentities: plan.expectedIdentities,
          nextHop: { host: plan.nextHop.ip, port: plan.nextHop.port },
          // The pool key includes the source IP; the peer sees it as the TCP client (ENABLE_ORIG_SRC).
          ...(ctx.config.preserveSourceIp ? { sourceIp: source.ip } : {}),
          authority: plan.authority,
          // istio/ztunnel: host= names the intended service when service-addressed (telemetry only).
          forwarded: {
            forIp: source.ip,
            forPort: source.port,
            ...(service ? { host: service.hostname } : {}),
          },
          baggage: baggageOf(src, cluster),
        });
      } catch (err) {
        // Any non-200 (401 policy, 503, TLS/identity failure) fails the app's connection with a reset.
        socket.resetAndDestroy();
        report.finish(messageOf(err), responseFlagsOf(err));
        return;
      }
      return relayTracked(ctx, report, { direction: 'outbound', podIp: source.ip }, socket, stream);
    }
  }
}

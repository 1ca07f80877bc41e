// Opaque TCP inside a tunnel (neither HTTP/1.1 nor HTTP/2): only the L4 parts of policy can apply, and
// the bytes are relayed to an endpoint of the destination over HBONE with the waypoint's identity
// (Istio's waypoint does the same with a TCP proxy filter chain). The relay is the one every ztunnel path
// uses (core/relay/relay.ts: half-close and reset semantics of istio/ztunnel src/copy.rs), and, as in
// ztunnel's connection manager, a policy change re-checks an open connection and closes it when denied.
// Each connection is counted in Istio's TCP metrics with reporter="waypoint" (istio.io Istio Standard
// Metrics: istio_tcp_connections_opened/closed_total, istio_tcp_sent/received_bytes_total), a refused
// one with response_flags DENY (policy) or CONNECT (no upstream), as ztunnel flags its own.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { relay } from '../core/relay/relay.js';
import type { MeshState } from '../core/state/state.js';
import { type ResponseFlags, type TrafficMetrics, trafficLabels } from '../core/telemetry/metrics.js';
import type { RequestAuthorizer } from './authz.js';
import { asWaypointError } from './errors.js';
import { type TunnelContext, peerOf } from './request.js';
import { type Upstream, type UpstreamEndpoint, endpointOf, selectEndpoint } from './upstream.js';

export async function relayOpaque(
  deps: {
    state: MeshState;
    authorizer: RequestAuthorizer;
    upstream: Upstream;
    log: Logger;
    traffic: TrafficMetrics;
  },
  ctx: TunnelContext,
  client: Duplex,
  head: Buffer,
  ended: boolean,
): Promise<void> {
  const dst = ctx.destination;
  const svc = dst.service;
  let ep: UpstreamEndpoint | undefined;
  const labels = (responseFlags: ResponseFlags) =>
    trafficLabels({
      reporter: 'waypoint',
      source: ctx.source,
      destination: peerOf(ep),
      ...(svc ? { service: { hostname: svc.hostname, namespace: svc.namespace, name: svc.name } } : {}),
      securityPolicy: 'mutual_tls',
      responseFlags,
    });
  const refused = (flags: ResponseFlags): void => {
    const l = labels(flags);
    deps.traffic.connectionOpened(l);
    deps.traffic.connectionClosed(l, 0, 0);
    client.destroy();
  };
  const decision = deps.authorizer.authorizeTcp(ctx.conn, svc);
  if (!decision.allow) {
    deps.log.info({ src: ctx.sourcePrincipal, reason: decision.reason }, 'TCP connection denied');
    refused('DENY');
    return;
  }
  let upstream: Duplex;
  try {
    ep = svc
      ? selectEndpoint(deps.state, svc, dst.port, deps.upstream.random)
      : dst.workload
        ? endpointOf(dst.workload, dst.port)
        : undefined;
    if (!ep) throw new Error('destination has no service or workload');
    upstream = await deps.upstream.dial(ep);
  } catch (err) {
    deps.log.info({ err: asWaypointError(err).message }, 'TCP upstream failed');
    refused('CONNECT');
    return;
  }
  const opened = labels('-');
  deps.traffic.connectionOpened(opened);
  // istio/ztunnel connection_manager.rs: a policy change re-evaluates open connections.
  let closedBy: string | undefined;
  const unsubscribe = deps.state.onChange((changes) => {
    if (!changes.some((c) => c.kind === 'l7policy' || c.kind === 'waypoint' || c.kind === 'service')) return;
    const again = deps.authorizer.authorizeTcp(ctx.conn, dst.service);
    if (again.allow || closedBy) return;
    closedBy = `policy re-check: ${again.reason}`;
    client.destroy();
    upstream.destroy();
  });
  // detectProtocol puts the bytes it read back into the stream, except after the client's FIN, when a
  // readable refuses unshift and they are only in `head` (writing both sent them twice).
  let requestBytes = ended ? head.length : 0;
  let responseBytes = 0;
  if (ended && head.length > 0) upstream.write(head);
  const result = await relay(
    client,
    upstream,
    {
      onRequestBytes: (n) => {
        requestBytes += n;
      },
      onResponseBytes: (n) => {
        responseBytes += n;
      },
    },
    { downstreamEnded: ended },
  );
  unsubscribe();
  deps.traffic.connectionClosed(opened, requestBytes, responseBytes);
  deps.log.info(
    {
      src: ctx.sourcePrincipal,
      dst: `${dst.ip}:${dst.port}`,
      requestBytes,
      responseBytes,
      ...(closedBy ? { reason: closedBy } : result.error ? { err: result.error.message } : {}),
    },
    'TCP connection closed',
  );
}

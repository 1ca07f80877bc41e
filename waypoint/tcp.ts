// Opaque TCP inside a tunnel (neither HTTP/1.1 nor HTTP/2): only the L4 parts of policy can apply, and
// the bytes are relayed to an endpoint of the destination over HBONE with the waypoint's identity
// (Istio's waypoint does the same with a TCP proxy filter chain). The relay is the one every ztunnel path
// uses (core/relay/relay.ts: half-close and reset semantics of istio/ztunnel src/copy.rs), and, as in
// ztunnel's connection manager, a policy change re-checks an open connection and closes it when denied.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { relay } from '../core/relay/relay.js';
import type { MeshState } from '../core/state/state.js';
import type { RequestAuthorizer } from './authz.js';
import { asWaypointError } from './errors.js';
import type { TunnelContext } from './request.js';
import { type Upstream, endpointOf, selectEndpoint } from './upstream.js';

export async function relayOpaque(
  deps: { state: MeshState; authorizer: RequestAuthorizer; upstream: Upstream; log: Logger },
  ctx: TunnelContext,
  client: Duplex,
  head: Buffer,
  ended: boolean,
): Promise<void> {
  const dst = ctx.destination;
  const decision = deps.authorizer.authorizeTcp(ctx.conn, dst.service);
  if (!decision.allow) {
    deps.log.info({ src: ctx.sourcePrincipal, reason: decision.reason }, 'TCP connection denied');
    client.destroy();
    return;
  }
  let upstream: Duplex;
  try {
    const ep = dst.service
      ? selectEndpoint(deps.state, dst.service, dst.port, deps.upstream.random)
      : dst.workload
        ? endpointOf(dst.workload, dst.port)
        : undefined;
    if (!ep) throw new Error('destination has no service or workload');
    upstream = await deps.upstream.dial(ep);
  } catch (err) {
    deps.log.info({ err: asWaypointError(err).message }, 'TCP upstream failed');
    client.destroy();
    return;
  }
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

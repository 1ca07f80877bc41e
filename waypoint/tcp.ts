// Opaque TCP inside a tunnel (neither HTTP/1.1 nor HTTP/2): only the L4 parts of policy can apply, and
// the bytes are relayed to an endpoint of the destination over HBONE with the waypoint's identity
// (Istio's waypoint does the same with a TCP proxy filter chain).
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { RequestAuthorizer } from './authz.js';
import { asWaypointError } from './errors.js';
import type { TunnelContext } from './request.js';
import { type Upstream, endpointOf, selectEndpoint } from './upstream.js';
import type { MeshState } from '../core/state/state.js';

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
  if (head.length > 0) upstream.write(head);
  if (ended) upstream.end();
  await Promise.allSettled([
    ended ? Promise.resolve() : pipeline(client, upstream, { end: true }),
    pipeline(upstream, client, { end: true }),
  ]);
  client.destroy();
  upstream.destroy();
}

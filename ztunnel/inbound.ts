// Inbound HBONE (15008): one CONNECT stream of a verified mTLS connection to a pod on this node.
// istio/ztunnel src/proxy/inbound.rs, per stream:
//   not CONNECT → 400; unparsable :authority → 400; authority IP ≠ the pod the connection reached →
//   400 ("ip mismatch"); a service-hostname authority is resolved to a target port here
//   (core/route/inbound.ts; unknown → 503); target port in {15001,15006,15008} → 503 — these checks, the TLS layer
//   (certificate chosen by destination pod IP, no SNI; client chain + trust domain) and the status
//   answers are core/hbone's HboneServer. This file takes over from there: destination workload
//   unknown → 503; L4 policy with the peer's SPIFFE ID denied → 401; upstream connect failed → 503;
//   else 200 (+ the destination's baggage) and bytes flow.
import type * as http2 from 'node:http2';
import type { Baggage } from '../core/hbone/connect-request.js';
import { type HboneError, UnknownDestination } from '../core/hbone/errors.js';
import { type AuthorityCheck, type InboundConnect, defaultAuthorityCheck } from '../core/hbone/server.js';
import { trustedSourceAddress } from '../core/hbone/source-address.js';
import { formatSpiffeId } from '../core/identity/spiffe.js';
import { type InboundTarget, inboundTarget } from '../core/route/inbound.js';
import type { Service, Workload } from '../core/state/model.js';
import { identityOf } from '../core/state/state.js';
import type { PeerLabels } from '../core/telemetry/metrics.js';
import { deliver } from './deliver.js';
import { type ProxyContext, baggageOf, hostPort, peerLabels } from './proxy-context.js';

/** The HBONE server's authority check for ztunnel: an IP must be this pod; a hostname is resolved later. */
export const ztunnelAuthorityCheck: AuthorityCheck = (authority, conn) => {
  if (authority.kind === 'hostname') return;
  defaultAuthorityCheck(authority, conn);
};

/** The service to attribute in telemetry: `forwarded host=` only if it is one of the pod's services. */
function attributedService(
  ctx: ProxyContext,
  destination: Workload,
  host: string | undefined,
): Service | undefined {
  if (!host) return undefined;
  for (const k of Object.keys(destination.services)) {
    if (k.endsWith(`/${host}`)) return ctx.state.serviceByKey(k);
  }
  return undefined;
}

/** Source labels from the request's baggage when the source IP is no known workload (ztunnel fallback). */
function labelsFromBaggage(b: Baggage, principal: string): PeerLabels {
  const typeKey = Object.keys(b).find(
    (k) => /^k8s\.[a-z]+\.name$/.test(k) && k !== 'k8s.namespace.name' && k !== 'k8s.cluster.name',
  );
  return {
    principal,
    workload: typeKey ? b[typeKey] : undefined,
    namespace: b['k8s.namespace.name'],
    canonicalService: b['service.name'],
    canonicalRevision: b['service.version'],
    cluster: b['k8s.cluster.name'],
  };
}

/** The HboneServer `onConnect` handler. Throws an HboneError to refuse (the server answers its status). */
export async function handleInbound(
  ctx: ProxyContext,
  _stream: http2.ServerHttp2Stream,
  info: InboundConnect,
): Promise<void> {
  const cluster = ctx.config.clusterId;
  const peer = formatSpiffeId(info.peerIdentity);
  const destination = ctx.state.workloadByIp(info.localAddress);
  // Which client address to believe: the TCP peer, or `forwarded` only when consistent with the
  // verified identity and node (core/hbone/source-address.ts; docs/architecture.md §7 "Source IP").
  const decision = trustedSourceAddress(
    { peerIdentity: info.peerIdentity, tcpPeer: info.remoteAddress, forwarded: info.forwarded },
    {
      workloadByIp: (ip) => {
        const w = ctx.state.workloadByIp(ip);
        return w ? { identity: identityOf(w), node: w.node } : undefined;
      },
      // Every ztunnel here preserves the pod IP, so no node proxy address is trusted to speak for pods.
      nodeOfProxyIp: () => undefined,
    },
  );
  const sourceIp = decision.address;
  const sourcePort =
    decision.fromForwarded && info.forwarded?.forPort ? info.forwarded.forPort : info.remotePort;
  const srcWorkload = ctx.state.workloadByIp(sourceIp);
  // The port to dial (and, for a service-hostname authority, the service), or why there is none (503).
  let target: InboundTarget | Error | undefined;
  if (destination) {
    try {
      target = inboundTarget(ctx.state, destination, info.authority);
    } catch (err) {
      target = err as Error;
    }
  }
  const svc =
    (target instanceof Error ? undefined : target?.service) ??
    (destination ? attributedService(ctx, destination, info.forwarded?.host) : undefined);
  const report = ctx.telemetry.begin({
    reporter: 'destination',
    path: 'inbound',
    srcAddr: hostPort(sourceIp, sourcePort),
    dstAddr: hostPort(info.localAddress, info.localPort),
    hboneAddr: info.authorityText,
    // The source principal comes only from the mTLS peer certificate.
    source: srcWorkload ? peerLabels(srcWorkload, cluster, peer) : labelsFromBaggage(info.baggage, peer),
    destination: peerLabels(destination, cluster),
    ...(svc ? { service: { hostname: svc.hostname, namespace: svc.namespace, name: svc.name } } : {}),
    securityPolicy: 'mutual_tls',
  });
  if (!ctx.accepting() || !destination || destination.node !== ctx.config.node) {
    const err = new UnknownDestination(
      ctx.accepting()
        ? `no workload with IP ${info.localAddress} on node ${ctx.config.node}`
        : 'ztunnel is draining',
    );
    report.finish(err.message, 'CONNECT');
    throw err;
  }
  if (!target || target instanceof Error) {
    const err = target ?? new UnknownDestination(`no port for ${info.authorityText}`);
    report.finish(err.message, 'CONNECT');
    throw err;
  }
  let refusal: HboneError | undefined;
  await deliver(
    ctx,
    {
      destination,
      // The server already checked that an IP authority is this pod (ztunnelAuthorityCheck).
      target: { ip: info.localAddress, port: target.port },
      source: { ip: sourceIp, port: sourcePort },
      sourceIdentity: info.peerIdentity,
      report,
      podIp: info.localAddress,
      direction: 'inbound',
    },
    {
      // istio/ztunnel ENABLE_RESPONSE_BAGGAGE (default on): the 200 describes the destination.
      accepted: () => info.accept(baggageOf(destination, cluster)),
      refused: (err) => {
        refusal = err;
      },
    },
  );
  if (refusal) throw refusal;
}

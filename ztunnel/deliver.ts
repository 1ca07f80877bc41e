// The last hop into a pod on this node, shared by inbound HBONE (15008), inbound plaintext (15006) and
// same-node outbound: L4 policy of the destination (istio/ztunnel state.rs assert_rbac), connect to
// podIP:targetPort keeping the client's IP as source, copy bytes, and stay tracked so a policy change
// can re-check and close the connection (connection_manager.rs).
import type { Duplex } from 'node:stream';
import type { SpiffeId } from '../core/identity/spiffe.js';
import { type Connection, type PolicyDecision, evaluate } from '../core/policy/evaluate.js';
import type { Workload } from '../core/state/model.js';
import type { ConnectionReport } from '../core/telemetry/connection-report.js';
import { dial } from './dial.js';
import { type HboneError, IllegalPort, PolicyDenied, UpstreamConnectFailed } from '../core/hbone/errors.js';
import { formatAddr } from '../core/route/address.js';
import { messageOf } from './errors.js';
import type { ProxyContext } from './proxy-context.js';
import { relayTracked } from './tracked-relay.js';
import type { SocketAddr } from '../core/route/address.js';

/** Evaluates the destination's L4 policies; an evaluation error denies (fail closed). */
export function authorize(
  ctx: Pick<ProxyContext, 'state' | 'log'>,
  destination: Workload,
  conn: Connection,
): PolicyDecision {
  let decision: PolicyDecision;
  try {
    decision = evaluate(conn, ctx.state.policiesFor(destination));
  } catch (err) {
    decision = { allow: false, reason: `policy evaluation failed: ${messageOf(err)}`, dryRun: [] };
  }
  for (const d of decision.dryRun) {
    // istio/ztunnel: dry-run policies only log.
    ctx.log.info(
      { policy: d.policy, matched: d.matched, rule: d.rule, destination: destination.name },
      d.message,
    );
  }
  ctx.log.debug(
    { allow: decision.allow, reason: decision.reason, policy: decision.policy },
    'policy decision',
  );
  return decision;
}

export interface DeliveryInput {
  destination: Workload;
  /** podIP:targetPort. */
  target: SocketAddr;
  source: SocketAddr;
  /** Verified peer identity (HBONE) or the local source workload's (same-node); undefined = plaintext. */
  sourceIdentity: SpiffeId | undefined;
  report: ConnectionReport;
  /** The local pod this connection is tracked under. */
  podIp: string;
  direction: 'inbound' | 'outbound';
}

export interface DeliveryHooks {
  /** Upstream connected and policy passed: answer 200 / start forwarding. Returns the downstream. */
  accepted(): Duplex;
  /** Refused before forwarding (policy, illegal port, connect failure). */
  refused(err: HboneError): void;
}

/**
 * Runs the delivery to completion (resolves when the connection is closed). Never throws: every
 * failure is reported through `hooks.refused` and telemetry.
 */
export async function deliver(ctx: ProxyContext, input: DeliveryInput, hooks: DeliveryHooks): Promise<void> {
  const { report } = input;
  const conn: Connection = {
    sourceIdentity: input.sourceIdentity,
    sourceIp: input.source.ip,
    destinationIp: input.target.ip,
    destinationPort: input.target.port,
  };
  if (ctx.illegalPorts.has(input.target.port)) {
    const err = new IllegalPort(input.target.port);
    hooks.refused(err);
    report.finish(err.message, err.responseFlags);
    return;
  }
  const decision = authorize(ctx, input.destination, conn);
  report.policy = decision.policy;
  if (!decision.allow) {
    const err = new PolicyDenied(decision.reason);
    hooks.refused(err);
    report.finish(err.message, err.responseFlags);
    return;
  }
  let upstream: Duplex;
  try {
    upstream = await dial({
      target: input.target,
      sourceIp: ctx.config.preserveSourceIp ? input.source.ip : undefined,
      timeoutMs: ctx.config.connectTimeoutMs,
    });
  } catch (err) {
    const e =
      err instanceof UpstreamConnectFailed
        ? err
        : new UpstreamConnectFailed(formatAddr(input.target.ip, input.target.port), err);
    hooks.refused(e);
    report.finish(e.message, e.responseFlags);
    return;
  }
  let downstream: Duplex;
  try {
    downstream = hooks.accepted();
  } catch (err) {
    upstream.destroy();
    report.finish(messageOf(err), 'CONNECT');
    return;
  }
  await relayTracked(
    ctx,
    report,
    {
      direction: input.direction,
      podIp: input.podIp,
      recheck: () => {
        // Re-read the destination: its policy bindings may have changed with the state.
        const current =
          ctx.state.workloadByIp(input.destination.addresses[0] ?? input.target.ip) ?? input.destination;
        const d = authorize(ctx, current, conn);
        return d.allow ? undefined : d.reason;
      },
    },
    downstream,
    upstream,
  );
}

// "Explain before you apply": what the mesh would decide for a connection. The route is the data path's
// own (core/route: the same lookup order, waypoint choice and endpoint policy ztunnel and the waypoint
// use), the verdicts come from the same evaluators, plus every rule the L4 compilation dropped or
// narrowed among the policies that apply (why a policy with HTTP fields does not do at ztunnel what it
// says). Used by `ambit policy check` and the demo's "what if" box.
import { LOOP_GUARD_PORTS } from '../hbone/settings.js';
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.js';
import { socketAddr } from '../route/address.js';
import { candidateEndpoints, selectEndpoint } from '../route/endpoint.js';
import { lookupDestination, type OutboundPlan, planOutbound, planToService } from '../route/outbound.js';
import { gatewayNameOf, type WaypointChoice } from '../route/waypoint.js';
import type { CompileNote, Service, Waypoint, Workload } from '../state/model.js';
import type { MeshState } from '../state/state.js';
import { parseIp } from './convert.js';
import { evaluate, type PolicyDecision, type RequestContext } from './evaluate.js';
import { evaluateRequest } from './l7.js';
import { splitAudit, waypointPolicies } from './waypoint-policies.js';

/** Bad explain input (unknown destination, malformed address); the CLI maps it to exit code 2. */
export class ExplainInputError extends Error {
  readonly code = 'EXPLAIN_BAD_INPUT';
  constructor(message: string) {
    super(message);
    this.name = 'ExplainInputError';
  }
}

export interface ExplainRequest {
  /** undefined = plaintext (no mTLS identity). */
  sourceIdentity?: SpiffeId;
  sourceIp: string;
  /** `ip:port`, `[v6]:port`, `svc.ns:port` or `svc.ns.svc.<domain>:port` (service port). */
  destination: string;
  /** HTTP request attributes, for the waypoint's targetRefs policies (ignored when no waypoint is in the path). */
  request?: RequestContext;
  /**
   * The load-balancing draw in [0,1) (core/route/endpoint.ts): which endpoint and waypoint pod the
   * data path would pick. Default: always 0, the first candidate, so the answer is stable.
   */
  random?: () => number;
}

export interface WaypointVerdict {
  /** `ns/name` of the waypoint Gateway. */
  name: string;
  /** The waypoint's SPIFFE ID: what the destination ztunnel sees as the client. */
  identity: string;
  address: string | null;
  /** targetRefs policies enforced at the waypoint (`ns/name`). */
  policies: string[];
  decision: PolicyDecision;
  /** Whether request attributes (method, path, host, headers) were given. */
  requestGiven: boolean;
}

export interface EvaluatedEndpoint {
  workload: { uid: string; name: string; namespace: string; address: string; enrolled: boolean };
  /** The target port the connection reaches (service port mapped per endpoint). */
  targetPort: number;
  /** Keys (`ns/name`) of the L4 policies that apply to this workload, in evaluation input order. */
  policies: string[];
  decision: PolicyDecision;
}

export interface DroppedRule {
  /** `ns/name` */
  policy: string;
  /** Index in the policy's `spec.rules`. */
  rule: number;
  kind: CompileNote['kind'];
  message: string;
  fields: string[];
}

export interface Explanation {
  destination:
    | { kind: 'workload'; address: string; port: number }
    | { kind: 'service'; service: string; hostname: string; servicePort: number; via: string };
  source: { identity: string | null; ip: string; workload?: string };
  /** The decision for the endpoint the data path picks (see ExplainRequest.random), or the waypoint's deny. */
  decision: PolicyDecision;
  /** Which endpoint decided (`ns/name`), `waypoint ns/name` when the waypoint denied, or why ztunnel refuses. */
  decidingEndpoint: string;
  /** Where the deciding check runs: the waypoint (L7, targetRefs) or the destination ztunnel (L4). */
  enforcedAt: 'waypoint' | 'ztunnel';
  /** The waypoint hop, when the destination sends traffic through one. */
  waypoint?: WaypointVerdict;
  endpoints: EvaluatedEndpoint[];
  /** L7 rules dropped (ALLOW) or narrowed / made no-ops (DENY) at L4, among the applicable policies. */
  dropped: DroppedRule[];
  /** Other compile notes (unparsable values, principals that can never match) and context warnings. */
  warnings: string[];
}

const L7_KINDS: ReadonlySet<CompileNote['kind']> = new Set([
  'allow-rule-dropped',
  'deny-rule-narrowed',
  'deny-rule-noop',
]);

/** Splits `host:port` / `[v6]:port`; the port must be 1-65535. */
export function splitHostPort(text: string): { host: string; port: number } {
  let host: string;
  let portText: string;
  const v6 = /^\[([^\]]+)\]:(.+)$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2]!;
  } else {
    const i = text.lastIndexOf(':');
    if (i <= 0)
      throw new ExplainInputError(`destination ${JSON.stringify(text)}: expected <ip:port> or <svc.ns:port>`);
    host = text.slice(0, i);
    portText = text.slice(i + 1);
    if (host.includes(':')) {
      throw new ExplainInputError(`destination ${JSON.stringify(text)}: write IPv6 addresses as [addr]:port`);
    }
  }
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw new ExplainInputError(
      `destination ${JSON.stringify(text)}: port ${JSON.stringify(portText)} is not 1-65535`,
    );
  }
  return { host, port: Number(portText) };
}

function describeWorkload(w: Workload, address: string): EvaluatedEndpoint['workload'] {
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    address,
    enrolled: w.tunnelProtocol === 'HBONE',
  };
}

function resolveServiceByName(state: MeshState, host: string): Service {
  // `svc.ns` or a full `svc.ns.svc.<cluster domain>`.
  const parts = host.split('.');
  if (parts.length < 2)
    throw new ExplainInputError(`destination host ${JSON.stringify(host)}: expected svc.ns`);
  const candidates =
    parts.length === 2
      ? state.servicesByHostname(`${host}.svc.cluster.local`)
      : state.servicesByHostname(host);
  const svc =
    candidates[0] ??
    state.services().find((s) => s.name === parts[0] && s.namespace === parts[1] && parts.length === 2);
  if (!svc)
    throw new ExplainInputError(`destination service ${JSON.stringify(host)} not found in the manifests`);
  return svc;
}

/** Evaluates one connection against the state; throws ExplainInputError for bad or unknown input. */
export function explain(state: MeshState, req: ExplainRequest): Explanation {
  if (!parseIp(req.sourceIp)) {
    throw new ExplainInputError(`source IP ${JSON.stringify(req.sourceIp)} is not an IP address`);
  }
  const { host, port } = splitHostPort(req.destination);
  const random = req.random ?? (() => 0);
  const warnings: string[] = [];
  const sourceWorkload = state.workloadByIp(req.sourceIp);
  // The source ztunnel's view: the source pod, its node, ztunnel's own ports never a target.
  const planInput = {
    source: sourceWorkload,
    node: sourceWorkload?.node ?? '',
    illegalPorts: LOOP_GUARD_PORTS,
    random,
  };

  // 1. Where the connection goes: the data path's lookup (a Service VIP before a workload IP).
  let service: Service | undefined;
  let destination: Explanation['destination'];
  let plan: OutboundPlan;
  let dst = socketAddr(host, port);
  const isIp = parseIp(host) !== undefined;
  if (isIp) {
    const target = lookupDestination(state, dst);
    if (target.kind === 'unknown') {
      const vips = state.servicesByVip(host);
      if (vips.length > 0) {
        const ports = vips[0]!.ports.map((p) => p.servicePort);
        throw new ExplainInputError(
          `destination ${host}:${port}: the service at ${host} has no port ${port} (ports: ${ports.join(', ')})`,
        );
      }
      throw new ExplainInputError(
        `destination ${host}: no workload or service VIP has this address (ztunnel would pass the connection through without policy)`,
      );
    }
    if (target.kind === 'service') service = target.service;
    destination =
      target.kind === 'service'
        ? serviceDestination(target.service, port, 'VIP')
        : { kind: 'workload', address: dst.ip, port };
    plan = planOutbound(state, { ...planInput, dst });
  } else {
    service = resolveServiceByName(state, host);
    if (!service.ports.some((p) => p.servicePort === port)) {
      throw new ExplainInputError(
        `destination ${req.destination}: service ${service.namespace}/${service.name} has no port ${port} (ports: ${service.ports.map((p) => p.servicePort).join(', ') || 'none'})`,
      );
    }
    destination = serviceDestination(service, port, 'name');
    dst = socketAddr(service.addresses[0] ?? host, port);
    plan = planToService(state, service, dst, planInput);
  }
  if (plan.kind === 'passthrough') {
    throw new ExplainInputError(
      `destination ${host}: ztunnel would pass the connection through without policy`,
    );
  }
  if (plan.kind === 'refuse' && plan.code === 'SELF_CALL') throw new ExplainInputError(plan.reason);
  if (plan.kind === 'refuse' && plan.code === 'NO_HEALTHY_UPSTREAM') {
    throw new ExplainInputError(
      `destination service ${service?.namespace}/${service?.name} has no healthy endpoints for port ${port}`,
    );
  }

  if (sourceWorkload && req.sourceIdentity) {
    const sid = req.sourceIdentity;
    if (sid.namespace !== sourceWorkload.namespace || sid.serviceAccount !== sourceWorkload.serviceAccount) {
      warnings.push(
        `source IP ${req.sourceIp} belongs to ${sourceWorkload.namespace}/${sourceWorkload.name} (service account ${sourceWorkload.serviceAccount}), not to the identity given`,
      );
    }
  }

  // 2. The endpoints the connection may reach, and the one the data path picks.
  const targets: { workload: Workload; address: string; targetPort: number }[] = [];
  let chosen: Workload | undefined;
  const wp = plan.kind === 'hbone' ? plan.waypoint : undefined;
  if (service) {
    for (const ep of candidateEndpoints(state, service, port)) {
      targets.push({ workload: ep.workload, address: ep.workload.addresses[0]!, targetPort: ep.targetPort });
    }
    // Without a waypoint the source ztunnel picked it; with one, the waypoint picks by the same policy.
    chosen =
      plan.kind === 'refuse'
        ? undefined
        : wp
          ? selectEndpoint(candidateEndpoints(state, service, port), random)?.workload
          : plan.destination;
  } else {
    const w = plan.kind === 'refuse' ? (state.workloadByIp(dst.ip) as Workload) : plan.destination;
    targets.push({ workload: w, address: dst.ip, targetPort: port });
    chosen = w;
  }

  // 3. The waypoint in the path: it checks targetRefs policies against the client; the destination
  // ztunnel then sees the waypoint as the client (istio.io "Where each policy is enforced").
  let waypoint: WaypointVerdict | undefined;
  let l4Identity = req.sourceIdentity;
  let l4SourceIp = req.sourceIp;
  if (wp) {
    const gateway = gatewayOf(wp);
    const policies = splitAudit(waypointPolicies(state, gateway, service)).deciding;
    const requestGiven = req.request !== undefined && Object.keys(req.request).length > 0;
    const decision = evaluateRequest(
      {
        ...(req.sourceIdentity ? { sourceIdentity: req.sourceIdentity } : {}),
        sourceIp: req.sourceIp,
        // The waypoint receives the original destination (`:authority` VIP:port) and checks ports against it.
        destinationIp: dst.ip,
        destinationPort: port,
      },
      req.request ?? {},
      policies,
    );
    waypoint = {
      name: `${gateway.namespace}/${gateway.name}`,
      identity: formatSpiffeId(wp.identity),
      address: wp.nextHop.ip,
      policies: policies.map((p) => `${p.namespace}/${p.name}`),
      decision,
      requestGiven,
    };
    if (!requestGiven && policies.length > 0) {
      warnings.push(
        'no request attributes given (method, path, host, headers): waypoint rules that need them are evaluated as for a request without them',
      );
    }
    l4Identity = wp.identity;
    l4SourceIp = wp.nextHop.ip;
  } else if (req.request && Object.keys(req.request).length > 0 && plan.kind !== 'refuse') {
    warnings.push(
      'request attributes are ignored: no waypoint is in the path, so ztunnel decides on L4 attributes only',
    );
  }
  if (plan.kind === 'refuse') {
    warnings.push(
      `the destination uses waypoint ${plan.waypoint?.hostname}, which has no healthy pod in the manifests: ztunnel could not forward to it`,
    );
  }

  // 4. The destination ztunnel's L4 verdict for each endpoint.
  const endpoints: EvaluatedEndpoint[] = [];
  const dropped = new Map<string, DroppedRule>();
  const seenWarnings = new Set<string>();
  for (const t of targets) {
    const policies = state.policiesFor(t.workload);
    if (t.workload.tunnelProtocol !== 'HBONE') {
      warnings.push(
        `destination ${t.workload.namespace}/${t.workload.name} is not enrolled in ambient (tunnel protocol NONE): no ztunnel enforces L4 policy for it; the endpoint shows what would apply once enrolled`,
      );
    }
    const decision = evaluate(
      {
        ...(l4Identity ? { sourceIdentity: l4Identity } : {}),
        sourceIp: l4SourceIp,
        destinationIp: t.address,
        destinationPort: t.targetPort,
      },
      policies,
    );
    endpoints.push({
      workload: describeWorkload(t.workload, t.address),
      targetPort: t.targetPort,
      policies: policies.map((p) => `${p.namespace}/${p.name}`),
      decision,
    });
    for (const p of policies) {
      const key = `${p.namespace}/${p.name}`;
      for (const n of p.notes) {
        if (L7_KINDS.has(n.kind)) {
          dropped.set(`${key}#${n.rule}#${n.kind}`, {
            policy: key,
            rule: n.rule,
            kind: n.kind,
            message: n.message,
            fields: n.fields,
          });
        } else if (!seenWarnings.has(`${key}: ${n.message}`)) {
          seenWarnings.add(`${key}: ${n.message}`);
          warnings.push(`${key}: ${n.message}`);
        }
      }
    }
  }
  if (endpoints.some((e) => e.decision.allow !== endpoints[0]!.decision.allow)) {
    warnings.push('the endpoints disagree: the connection outcome depends on which endpoint is picked');
  }

  // 5. The verdict, where the data path decides it.
  const source = {
    identity: req.sourceIdentity ? formatSpiffeId(req.sourceIdentity) : null,
    ip: req.sourceIp,
    ...(sourceWorkload ? { workload: `${sourceWorkload.namespace}/${sourceWorkload.name}` } : {}),
  };
  const common = {
    destination,
    source,
    ...(waypoint ? { waypoint } : {}),
    endpoints,
    dropped: [...dropped.values()],
    warnings: [...new Set(warnings)],
  };
  if (plan.kind === 'refuse') {
    return {
      ...common,
      decision: { allow: false, reason: plan.reason, dryRun: [] },
      decidingEndpoint: `source ztunnel: ${plan.code}`,
      enforcedAt: 'ztunnel',
    };
  }
  if (waypoint && !waypoint.decision.allow) {
    return {
      ...common,
      decision: waypoint.decision,
      decidingEndpoint: `waypoint ${waypoint.name}`,
      enforcedAt: 'waypoint',
    };
  }
  const picked = endpoints.find((e) => e.workload.uid === chosen?.uid) ?? endpoints[0];
  if (!picked) {
    // Only reachable through a waypoint: it accepts the tunnel, then has no endpoint to send it to (503).
    return {
      ...common,
      decision: {
        allow: false,
        reason: `no healthy upstream for ${destination.kind === 'service' ? destination.service : host}:${port}`,
        dryRun: [],
      },
      decidingEndpoint: `waypoint ${waypoint?.name}`,
      enforcedAt: 'waypoint',
    };
  }
  const enrolled = picked.workload.enrolled;
  return {
    ...common,
    // A destination outside ambient is reached over plain TCP: no ztunnel enforces anything there.
    decision: enrolled
      ? picked.decision
      : {
          allow: true,
          reason: `destination ${picked.workload.namespace}/${picked.workload.name} is not enrolled in ambient: no L4 policy is enforced`,
          dryRun: [],
        },
    decidingEndpoint: `${picked.workload.namespace}/${picked.workload.name}`,
    enforcedAt: 'ztunnel',
  };
}

function serviceDestination(service: Service, servicePort: number, via: string): Explanation['destination'] {
  return {
    kind: 'service',
    service: `${service.namespace}/${service.name}`,
    hostname: service.hostname,
    servicePort,
    via,
  };
}

/** The Gateway behind a waypoint choice; when the state lacks it, the name its address implies. */
function gatewayOf(wp: WaypointChoice): Waypoint {
  return (
    wp.gateway ?? {
      name: gatewayNameOf(wp.address),
      namespace: wp.address.namespace,
      waypointFor: 'service',
      trafficType: 'service',
      hostname: wp.address.hostname,
    }
  );
}

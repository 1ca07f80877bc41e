// "Explain before you apply": what the destination ztunnel would decide for a connection, from the same
// MeshState and the same evaluator the data path uses, plus every rule the L4 compilation dropped or narrowed
// among the policies that apply (why a policy with HTTP fields does not do at ztunnel what it says).
// Used by `ambit policy check` and the demo's "what if" box.
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.js';
import type { CompileNote, Service, Workload } from '../state/model.js';
import type { MeshState } from '../state/state.js';
import { parseIp } from './convert.js';
import { evaluate, type PolicyDecision, type RequestContext } from './evaluate.js';
import { evaluateRequest } from './l7.js';
import { waypointHop } from './waypoint-hop.js';

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
  /** The deciding endpoint's decision (the first endpoint that denies, else the first endpoint). */
  decision: PolicyDecision;
  /** Which endpoint decided (`ns/name`), or `waypoint ns/name` when the waypoint denied. */
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
  const warnings: string[] = [];
  const targets: { workload: Workload; address: string; targetPort: number }[] = [];
  let destination: Explanation['destination'] | undefined;

  const isIp = parseIp(host) !== undefined;
  let service: Service | undefined;
  let servicePort = port;
  if (isIp) {
    const w = state.workloadByIp(host);
    const vip = w ? undefined : state.serviceByVip(host, port);
    if (w) {
      destination = { kind: 'workload', address: host, port };
      targets.push({ workload: w, address: host, targetPort: port });
    } else if (vip) {
      service = vip.service;
    } else if (state.servicesByVip(host).length > 0) {
      const ports = state.servicesByVip(host)[0]!.ports.map((p) => p.servicePort);
      throw new ExplainInputError(
        `destination ${host}:${port}: the service at ${host} has no port ${port} (ports: ${ports.join(', ')})`,
      );
    } else {
      throw new ExplainInputError(
        `destination ${host}: no workload or service VIP has this address (ztunnel would pass the connection through without policy)`,
      );
    }
  } else {
    service = resolveServiceByName(state, host);
  }

  if (service) {
    const sp = service.ports.find((p) => p.servicePort === port);
    if (!sp) {
      throw new ExplainInputError(
        `destination ${req.destination}: service ${service.namespace}/${service.name} has no port ${port} (ports: ${service.ports.map((p) => p.servicePort).join(', ') || 'none'})`,
      );
    }
    servicePort = sp.servicePort;
    destination = {
      kind: 'service',
      service: `${service.namespace}/${service.name}`,
      hostname: service.hostname,
      servicePort,
      via: isIp ? 'VIP' : 'name',
    };
    const eps = state.endpointsOf(service, servicePort);
    if (eps.length === 0) {
      throw new ExplainInputError(
        `destination service ${service.namespace}/${service.name} has no healthy endpoints for port ${servicePort}`,
      );
    }
    for (const ep of eps)
      targets.push({
        workload: ep.workload,
        address: ep.workload.addresses[0] ?? '',
        targetPort: ep.targetPort,
      });
  }

  const sourceWorkload = state.workloadByIp(req.sourceIp);
  if (sourceWorkload && req.sourceIdentity) {
    const sid = req.sourceIdentity;
    if (sid.namespace !== sourceWorkload.namespace || sid.serviceAccount !== sourceWorkload.serviceAccount) {
      warnings.push(
        `source IP ${req.sourceIp} belongs to ${sourceWorkload.namespace}/${sourceWorkload.name} (service account ${sourceWorkload.serviceAccount}), not to the identity given`,
      );
    }
  }

  // A waypoint in the path: it checks targetRefs policies against the client; the destination ztunnel then
  // sees the waypoint as the client (istio.io "Where each policy is enforced").
  const hop = waypointHop(
    state,
    service ? { service } : targets[0] ? { workload: targets[0].workload } : {},
    req.sourceIp,
  );
  const dangling = service ? service.waypoint : targets[0]?.workload.waypoint;
  if (dangling && !hop && !state.waypointByAddress(req.sourceIp)) {
    warnings.push(
      `the destination uses waypoint ${dangling.hostname}, which is not in the manifests: ztunnel could not forward to it`,
    );
  }
  let waypoint: WaypointVerdict | undefined;
  let l4Identity = req.sourceIdentity;
  let l4SourceIp = req.sourceIp;
  if (hop) {
    const requestGiven = req.request !== undefined && Object.keys(req.request).length > 0;
    const decision = evaluateRequest(
      {
        ...(req.sourceIdentity ? { sourceIdentity: req.sourceIdentity } : {}),
        sourceIp: req.sourceIp,
        // The waypoint receives the original destination (`:authority` VIP:port) and checks ports against it.
        destinationIp: service ? (service.addresses[0] ?? targets[0]?.address ?? host) : host,
        destinationPort: service ? servicePort : port,
      },
      req.request ?? {},
      hop.policies,
    );
    waypoint = {
      name: `${hop.waypoint.namespace}/${hop.waypoint.name}`,
      identity: formatSpiffeId(hop.identity),
      address: hop.address ?? null,
      policies: hop.policies.map((p) => `${p.namespace}/${p.name}`),
      decision,
      requestGiven,
    };
    if (!requestGiven && hop.policies.length > 0) {
      warnings.push(
        'no request attributes given (method, path, host, headers): waypoint rules that need them are evaluated as for a request without them',
      );
    }
    l4Identity = hop.identity;
    if (hop.address) l4SourceIp = hop.address;
    else
      warnings.push(
        `waypoint ${waypoint.name} has no known pod address: L4 ipBlocks are checked against the source IP given`,
      );
  } else if (req.request && Object.keys(req.request).length > 0) {
    warnings.push(
      'request attributes are ignored: no waypoint is in the path, so ztunnel decides on L4 attributes only',
    );
  }

  const endpoints: EvaluatedEndpoint[] = [];
  const dropped = new Map<string, DroppedRule>();
  const seenWarnings = new Set<string>();
  for (const t of targets) {
    const policies = state.policiesFor(t.workload);
    if (t.workload.tunnelProtocol !== 'HBONE') {
      warnings.push(
        `destination ${t.workload.namespace}/${t.workload.name} is not enrolled in ambient (tunnel protocol NONE): no ztunnel enforces L4 policy for it; the decision shows what would apply once enrolled`,
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

  if (!destination) throw new ExplainInputError(`destination ${req.destination} could not be resolved`);
  const deciding = endpoints.find((e) => !e.decision.allow) ?? endpoints[0]!;
  if (endpoints.some((e) => e.decision.allow !== deciding.decision.allow)) {
    warnings.push('the endpoints disagree: the connection outcome depends on which endpoint is picked');
  }
  const waypointDenies = waypoint !== undefined && !waypoint.decision.allow;
  return {
    destination,
    source: {
      identity: req.sourceIdentity ? formatSpiffeId(req.sourceIdentity) : null,
      ip: req.sourceIp,
      ...(sourceWorkload ? { workload: `${sourceWorkload.namespace}/${sourceWorkload.name}` } : {}),
    },
    decision: waypointDenies ? waypoint!.decision : deciding.decision,
    decidingEndpoint: waypointDenies
      ? `waypoint ${waypoint!.name}`
      : `${deciding.workload.namespace}/${deciding.workload.name}`,
    enforcedAt: waypointDenies ? 'waypoint' : 'ztunnel',
    ...(waypoint ? { waypoint } : {}),
    endpoints,
    dropped: [...dropped.values()],
    warnings: [...new Set(warnings)],
  };
}

// Request authorization at the waypoint: AuthorizationPolicies attached with `targetRefs` to this
// waypoint's Gateway, to the destination Service, or to GatewayClass istio-waypoint in the root
// namespace (istio.io AuthorizationPolicy reference, `targetRefs`), decided by THE L7 engine core/policy/l7.ts — never a second one.
// AUDIT policies never decide (istio/api authorization_policy.proto): a match is logged only.
import type { Logger } from 'pino';
import { evaluateRequest } from '../core/policy/l7.js';
import { splitAudit, waypointPolicies } from '../core/policy/waypoint-policies.js';
import type { Connection, PolicyDecision, RequestContext } from '../core/policy/evaluate.js';
import type { L7AuthorizationPolicy, Service, Waypoint } from '../core/state/model.js';
import type { MeshState } from '../core/state/state.js';

interface PolicySet {
  deciding: L7AuthorizationPolicy[];
  audit: L7AuthorizationPolicy[];
}

// HTTP-only attributes: they do not exist on opaque TCP.
const HTTP_OPERATION_FIELDS = ['methods', 'notMethods', 'paths', 'notPaths', 'hosts', 'notHosts'] as const;
const HTTP_CONDITION = /^request\./;

type Rule = { from?: unknown[]; to?: { operation?: Record<string, unknown> }[]; when?: { key: string }[] };

/**
 * A policy as it applies to opaque TCP (Istio's TCP filter chain; ztunnel does the same at L4): an ALLOW
 * rule that needs HTTP attributes can never match (dropped: fail closed); a DENY rule loses only its HTTP
 * attributes, so it denies MORE (fail closed), never less.
 */
function tcpForm(p: L7AuthorizationPolicy): L7AuthorizationPolicy {
  const rules: Rule[] = [];
  for (const r of p.rules as Rule[]) {
    const usesHttp =
      (r?.to ?? []).some((t) => HTTP_OPERATION_FIELDS.some((f) => t?.operation?.[f] !== undefined)) ||
      (r?.when ?? []).some((c) => HTTP_CONDITION.test(c?.key ?? ''));
    if (!usesHttp) {
      rules.push(r);
      continue;
    }
    if (p.action !== 'DENY') continue;
    const to = (r.to ?? []).map((t) => {
      const op = { ...(t?.operation ?? {}) };
      for (const f of HTTP_OPERATION_FIELDS) delete op[f];
      return { operation: op };
    });
    // An operation left with no field matches any connection (Envoy permission `any`), so the whole `to`
    // no longer constrains the rule.
    const anyOp = to.some((t) => Object.keys(t.operation).length === 0);
    const when = (r.when ?? []).filter((c) => !HTTP_CONDITION.test(c?.key ?? ''));
    rules.push({
      ...(r.from ? { from: r.from } : {}),
      ...(to.length > 0 && !anyOp ? { to } : {}),
      ...(when.length > 0 ? { when } : {}),
    });
  }
  return { ...p, rules };
}

export class RequestAuthorizer {
  private readonly tcpSets = new WeakMap<L7AuthorizationPolicy[], L7AuthorizationPolicy[]>();

  // Per destination service, the policies that apply: recomputed only when policies or waypoints change,
  // so a request costs O(applicable policies), not O(all L7 policies in the mesh).
  private readonly sets = new Map<string, PolicySet>();
  // AUDIT policies are evaluated as if they were ALLOW to learn whether they match; one copy per object.
  private readonly auditAsAllow = new WeakMap<L7AuthorizationPolicy, L7AuthorizationPolicy>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly state: MeshState,
    private readonly waypoint: () => Waypoint,
    private readonly log: Logger,
    private readonly rootNamespace = 'istio-system',
  ) {
    this.unsubscribe = state.onChange((changes) => {
      if (changes.some((c) => c.kind === 'l7policy' || c.kind === 'waypoint' || c.kind === 'service')) {
        this.sets.clear();
      }
    });
  }

  close(): void {
    this.unsubscribe();
  }

  policiesFor(service: Service | undefined): PolicySet {
    const key = service ? `${service.namespace}/${service.hostname}` : '';
    let set = this.sets.get(key);
    if (!set) {
      set = splitAudit(waypointPolicies(this.state, this.waypoint(), service, this.rootNamespace));
      this.sets.set(key, set);
    }
    return set;
  }

  /** Opaque TCP inside the tunnel: only the L4 parts of the policies decide (see tcpForm). */
  authorizeTcp(conn: Connection, service: Service | undefined): PolicyDecision {
    const set = this.policiesFor(service);
    let tcp = this.tcpSets.get(set.deciding);
    if (!tcp) {
      tcp = set.deciding.map(tcpForm);
      this.tcpSets.set(set.deciding, tcp);
    }
    return evaluateRequest(conn, {}, tcp);
  }

  authorize(conn: Connection, request: RequestContext, service: Service | undefined): PolicyDecision {
    const set = this.policiesFor(service);
    for (const p of set.audit) {
      let asAllow = this.auditAsAllow.get(p);
      if (!asAllow) {
        asAllow = { ...p, action: 'ALLOW' };
        this.auditAsAllow.set(p, asAllow);
      }
      const d = evaluateRequest(conn, request, [asAllow]);
      if (d.allow) {
        this.log.info(
          { policy: `${p.namespace}/${p.name}`, rule: d.rule, method: request.method, path: request.path },
          'AUDIT policy matched',
        );
      }
    }
    const decision = evaluateRequest(conn, request, set.deciding);
    for (const dr of decision.dryRun) {
      if (dr.matched) this.log.info({ policy: dr.policy, rule: dr.rule }, dr.message);
    }
    return decision;
  }
}

// AuthorizationPolicy → compiled L4 Authorization, exactly as istiod builds it for ztunnel
// (istio/istio pilot/pkg/serviceregistry/ambient/authorization.go: convertAuthorizationPolicy, handleRule).
// Policies with targetRefs go to waypoints (l7) only; AUDIT/CUSTOM never reach ztunnel. Whatever had to be
// dropped or narrowed to fit L4 is recorded in `Authorization.notes` so `ambit policy check` can explain it.
import type {
  Action,
  Authorization,
  Clause,
  CompileNote,
  L7AuthorizationPolicy,
  Match,
  Rule,
  Scope,
  TargetRef,
} from '../state/model.js';
import type { AuthorizationPolicy, AuthorizationRule, Operation, Source } from './istio-api.js';
import {
  type Converted,
  parseGoBool,
  toCidrs,
  toPorts,
  toServiceAccountMatches,
  toStringMatches,
} from './convert.js';

export interface CompileOptions {
  rootNamespace: string;
  trustDomain?: string;
}

export interface CompiledPolicy {
  l4?: Authorization;
  l7?: L7AuthorizationPolicy;
  warnings: string[];
}

// istiod's status texts, verbatim (authorization.go httpRuleFmt and the three boilerplates).
export const HTTP_RULE_FMT =
  'ztunnel does not support HTTP attributes (found: %s). In ambient mode you must use a waypoint proxy to enforce HTTP rules. %s';
export const HTTP_DENY_NO_EFFECT =
  'After omitting unsupported HTTP attributes, this DENY policy has no enforceable rules at ztunnel and will have no effect. Deploy a waypoint proxy and use a targetRef to enforce this policy.';
export const HTTP_DENY_MIXED =
  'DENY policy with HTTP attributes is enforced without the HTTP rules. This will be more restrictive than requested.';
export const HTTP_ALLOW_RULE =
  'Within an ALLOW policy, rules matching HTTP attributes are omitted. This will be more restrictive than requested.';

/** The five `when` keys ztunnel can evaluate (authorization.go l4WhenAttributes); any other key is L7. */
export const L4_WHEN_KEYS: ReadonlySet<string> = new Set([
  'source.ip',
  'source.namespace',
  'source.principal',
  'destination.ip',
  'destination.port',
]);

export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';

export function emptyMatch(): Match {
  return {
    namespaces: [],
    notNamespaces: [],
    principals: [],
    notPrincipals: [],
    sourceIps: [],
    notSourceIps: [],
    destinationIps: [],
    notDestinationIps: [],
    destinationPorts: [],
    notDestinationPorts: [],
    serviceAccounts: [],
    notServiceAccounts: [],
  };
}

/** A Match with no field set; ztunnel skips it (match-none, not match-all). */
export function isMatchEmpty(m: Match): boolean {
  return (
    m.namespaces.length === 0 &&
    m.notNamespaces.length === 0 &&
    m.principals.length === 0 &&
    m.notPrincipals.length === 0 &&
    m.sourceIps.length === 0 &&
    m.notSourceIps.length === 0 &&
    m.destinationIps.length === 0 &&
    m.notDestinationIps.length === 0 &&
    m.destinationPorts.length === 0 &&
    m.notDestinationPorts.length === 0 &&
    m.serviceAccounts.length === 0 &&
    m.notServiceAccounts.length === 0
  );
}

/** istiod hasEffectiveRules for one group: no clauses = match-all; a clause of only empty matches never fires. */
export function isRuleEffective(rule: Rule): boolean {
  return rule.clauses.every((c) => c.matches.some((m) => !isMatchEmpty(m)));
}

function format(fmt: string, ...args: string[]): string {
  let i = 0;
  return fmt.replace(/%s/g, () => args[i++] ?? '');
}

/** Per-rule bookkeeping: the L7 attribute names istiod reports, and our field paths for explain. */
interface RuleScan {
  l7Names: string[];
  l7Paths: string[];
  notes: CompileNote[];
}

function operationL7(op: Operation, path: string, scan: RuleScan): void {
  const fields: (keyof Operation)[] = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];
  for (const f of fields) {
    if ((op[f]?.length ?? 0) > 0) {
      scan.l7Names.push(f);
      scan.l7Paths.push(`${path}.${f}`);
    }
  }
}

function sourceL7(src: Source, path: string, scan: RuleScan): void {
  // trustDomains/notTrustDomains: a Match has no trust-domain field and folding them into principals would
  // widen the source, so current istiod reports them as unsupported (fail closed) like source.trustDomain.
  const fields: (keyof Source)[] = [
    'remoteIpBlocks',
    'notRemoteIpBlocks',
    'requestPrincipals',
    'notRequestPrincipals',
    'trustDomains',
    'notTrustDomains',
  ];
  for (const f of fields) {
    if ((src[f]?.length ?? 0) > 0) {
      scan.l7Names.push(f);
      scan.l7Paths.push(`${path}.${f}`);
    }
  }
}

function noteRejected<T>(c: Converted<T>, path: string, ruleIndex: number, scan: RuleScan): T[] {
  for (const r of c.rejected) {
    scan.notes.push({
      rule: ruleIndex,
      kind: 'unparsable-value',
      message: `${path} value ${JSON.stringify(r.value)} is ignored (${r.reason}); istiod drops it the same way`,
      fields: [path],
    });
  }
  return c.values;
}

function notePrincipals(values: string[] | undefined, path: string, ruleIndex: number, scan: RuleScan): void {
  (values ?? []).forEach((v, i) => {
    // istio/ztunnel rbac.rs matches_principal strips "spiffe://" from the peer identity before comparing,
    // so a policy value that still carries it can never match. Kept (not dropped), as Istio keeps it:
    // dropping it would turn a deny-all ALLOW into allow-all.
    if (v.includes('spiffe://')) {
      scan.notes.push({
        rule: ruleIndex,
        kind: 'warning',
        message: `${path}[${i}] ${JSON.stringify(v)} can never match: principals are written without "spiffe://"`,
        fields: [`${path}[${i}]`],
      });
    }
  });
}

function compileRule(
  rule: AuthorizationRule,
  ruleIndex: number,
  policyNamespace: string,
  scan: RuleScan,
): Rule {
  const clauses: Clause[] = [];
  const base = `rules[${ruleIndex}]`;

  const toMatches: Match[] = [];
  (rule.to ?? []).forEach((to, i) => {
    const op = to.operation ?? {};
    const path = `${base}.to[${i}].operation`;
    operationL7(op, path, scan);
    const m = emptyMatch();
    m.destinationPorts = noteRejected(toPorts(op.ports), `${path}.ports`, ruleIndex, scan);
    m.notDestinationPorts = noteRejected(toPorts(op.notPorts), `${path}.notPorts`, ruleIndex, scan);
    toMatches.push(m);
  });

  const fromMatches: Match[] = [];
  (rule.from ?? []).forEach((from, i) => {
    const src = from.source ?? {};
    const path = `${base}.from[${i}].source`;
    sourceL7(src, path, scan);
    notePrincipals(src.principals, `${path}.principals`, ruleIndex, scan);
    notePrincipals(src.notPrincipals, `${path}.notPrincipals`, ruleIndex, scan);
    const m = emptyMatch();
    m.sourceIps = noteRejected(toCidrs(src.ipBlocks), `${path}.ipBlocks`, ruleIndex, scan);
    m.notSourceIps = noteRejected(toCidrs(src.notIpBlocks), `${path}.notIpBlocks`, ruleIndex, scan);
    m.namespaces = toStringMatches(src.namespaces);
    m.notNamespaces = toStringMatches(src.notNamespaces);
    m.serviceAccounts = toServiceAccountMatches(src.serviceAccounts, policyNamespace);
    m.notServiceAccounts = toServiceAccountMatches(src.notServiceAccounts, policyNamespace);
    m.principals = toStringMatches(src.principals);
    m.notPrincipals = toStringMatches(src.notPrincipals);
    fromMatches.push(m);
  });

  // Clause order as istiod: `to`, then `from`, then one per `when` condition.
  if (toMatches.length > 0) clauses.push({ matches: toMatches });
  if (fromMatches.length > 0) clauses.push({ matches: fromMatches });

  (rule.when ?? []).forEach((cond, i) => {
    const path = `${base}.when[${i}]`;
    const m = emptyMatch();
    switch (cond.key) {
      case 'source.namespace':
        m.namespaces = toStringMatches(cond.values);
        m.notNamespaces = toStringMatches(cond.notValues);
        break;
      case 'source.principal':
        notePrincipals(cond.values, `${path}.values`, ruleIndex, scan);
        notePrincipals(cond.notValues, `${path}.notValues`, ruleIndex, scan);
        m.principals = toStringMatches(cond.values);
        m.notPrincipals = toStringMatches(cond.notValues);
        break;
      case 'source.ip':
        m.sourceIps = noteRejected(toCidrs(cond.values), `${path}.values`, ruleIndex, scan);
        m.notSourceIps = noteRejected(toCidrs(cond.notValues), `${path}.notValues`, ruleIndex, scan);
        break;
      case 'destination.port':
        m.destinationPorts = noteRejected(toPorts(cond.values), `${path}.values`, ruleIndex, scan);
        m.notDestinationPorts = noteRejected(toPorts(cond.notValues), `${path}.notValues`, ruleIndex, scan);
        break;
      case 'destination.ip':
        m.destinationIps = noteRejected(toCidrs(cond.values), `${path}.values`, ruleIndex, scan);
        m.notDestinationIps = noteRejected(toCidrs(cond.notValues), `${path}.notValues`, ruleIndex, scan);
        break;
      default:
        // Any other key (request.*, source.serviceAccount, source.trustDomain, remote.ip, connection.sni,
        // experimental.*) is an HTTP attribute for istiod; the clause keeps an empty Match.
        scan.l7Names.push(cond.key);
        scan.l7Paths.push(`${path}.key=${cond.key}`);
    }
    clauses.push({ matches: [m] });
  });

  return { clauses, sourceRule: ruleIndex };
}

function scopeOf(ap: AuthorizationPolicy, rootNamespace: string): Scope {
  // istiod: `pol.GetSelector() == nil` → NAMESPACE (GLOBAL in the root namespace); a present selector, even
  // one with no labels, is WORKLOAD_SELECTOR.
  if (ap.spec.selector === undefined || ap.spec.selector === null) {
    return ap.metadata.namespace === rootNamespace ? 'GLOBAL' : 'NAMESPACE';
  }
  return 'WORKLOAD_SELECTOR';
}

function targetRefsOf(ap: AuthorizationPolicy): TargetRef[] {
  const refs = [...(ap.spec.targetRef ? [ap.spec.targetRef] : []), ...(ap.spec.targetRefs ?? [])];
  return refs.map((r) => ({ group: r.group ?? '', kind: r.kind, name: r.name }));
}

/** Compiles one AuthorizationPolicy. Never throws on semantic oddities; they become notes and warnings. */
export function compileAuthorizationPolicy(ap: AuthorizationPolicy, opts: CompileOptions): CompiledPolicy {
  const warnings: string[] = [];
  const { name, namespace } = ap.metadata;
  const specAction = ap.spec.action ?? 'ALLOW';

  let dryRun = false;
  const dryRunText = ap.metadata.annotations?.[DRY_RUN_ANNOTATION];
  if (dryRunText !== undefined && dryRunText !== '') {
    const parsed = parseGoBool(dryRunText);
    // istiod logs the parse error and proceeds with dry_run=false (enforced): the fail-closed reading.
    if (parsed === undefined) {
      warnings.push(
        `annotation ${DRY_RUN_ANNOTATION}=${JSON.stringify(dryRunText)} is not a boolean; the policy is enforced`,
      );
    } else dryRun = parsed;
  }

  const targetRefs = targetRefsOf(ap);
  if (targetRefs.length > 0) {
    // istiod: "TargetRef is not intended for ztunnel"; the waypoint enforces it with full L7 semantics.
    return {
      l7: { name, namespace, action: specAction, targetRefs, rules: ap.spec.rules ?? [], dryRun },
      warnings,
    };
  }

  if (specAction !== 'ALLOW' && specAction !== 'DENY') {
    warnings.push(`ztunnel does not support the ${specAction} action`);
    return { warnings };
  }
  const action: Action = specAction;

  const rules: Rule[] = [];
  const notes: CompileNote[] = [];
  const allL7 = new Set<string>();
  (ap.spec.rules ?? []).forEach((specRule, ruleIndex) => {
    const scan: RuleScan = { l7Names: [], l7Paths: [], notes: [] };
    const rule = compileRule(specRule ?? {}, ruleIndex, namespace, scan);
    notes.push(...scan.notes);
    for (const n of scan.l7Names) allL7.add(n);
    const found = [...new Set(scan.l7Names)].sort().join(', ');
    if (scan.l7Names.length === 0) {
      rules.push(rule);
      return;
    }
    if (action === 'ALLOW') {
      // Fail closed: an ALLOW rule ztunnel cannot fully check is omitted; if it was the only rule the policy
      // still exists and matches nothing, so its workloads deny everything (istio.io l4-policy docs).
      notes.push({
        rule: ruleIndex,
        kind: 'allow-rule-dropped',
        message: `${format(HTTP_RULE_FMT, found, HTTP_ALLOW_RULE)} Rule ${ruleIndex} is omitted at ztunnel.`,
        fields: scan.l7Paths,
      });
      return;
    }
    if (!isRuleEffective(rule)) {
      // A clause left with only empty Matches never matches, and clauses are ANDed, so the whole rule is a
      // no-op at ztunnel (istio/istio#61126). Dropping it changes nothing in evaluation and keeps it visible.
      notes.push({
        rule: ruleIndex,
        kind: 'deny-rule-noop',
        message: `${format(HTTP_RULE_FMT, found, '')}After omitting them, rule ${ruleIndex} can never match at ztunnel and has no effect. Deploy a waypoint proxy and use a targetRef to enforce it.`,
        fields: scan.l7Paths,
      });
      return;
    }
    notes.push({
      rule: ruleIndex,
      kind: 'deny-rule-narrowed',
      message: `${format(HTTP_RULE_FMT, found, HTTP_DENY_MIXED)} Rule ${ruleIndex} denies on its L4 fields alone.`,
      fields: scan.l7Paths,
    });
    rules.push(rule);
  });

  if (allL7.size > 0) {
    const found = [...allL7].sort().join(', ');
    let boilerplate = HTTP_ALLOW_RULE;
    if (action === 'DENY') boilerplate = rules.some(isRuleEffective) ? HTTP_DENY_MIXED : HTTP_DENY_NO_EFFECT;
    warnings.push(format(HTTP_RULE_FMT, found, boilerplate));
  }
  for (const n of notes) if (n.kind === 'unparsable-value' || n.kind === 'warning') warnings.push(n.message);

  const l4: Authorization = {
    name,
    namespace,
    scope: scopeOf(ap, opts.rootNamespace),
    action,
    rules,
    dryRun,
    notes,
  };
  if (l4.scope === 'WORKLOAD_SELECTOR') l4.selector = { ...(ap.spec.selector?.matchLabels ?? {}) };
  return { l4, warnings };
}

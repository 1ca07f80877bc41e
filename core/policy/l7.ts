// The waypoint's request-level authorization: AuthorizationPolicies attached with targetRefs, with full
// L7 semantics as Istio gives them at a waypoint (Envoy RBAC built by istiod pilot/pkg/security/authz):
// principals / namespaces / serviceAccounts / ipBlocks / remoteIpBlocks / requestPrincipals from the
// source, hosts / ports / methods / paths (with `{*}` and `{**}` templates) from the operation, and `when`
// conditions including `request.headers[...]`. It is the same engine as L4 (evaluate.ts): a policy compiles
// to CompiledPolicyMatcher — rules of AND'ed clauses of OR'ed matches of AND'ed families — and the decision
// order is `decide`. Only the families differ.
//
// Order at the waypoint (istio/api authorization_policy.proto): CUSTOM → DENY → ALLOW; AUDIT never decides.
// CUSTOM needs an external authorizer, which Ambit does not have: a matching CUSTOM policy denies (Envoy's
// ext_authz default when the provider is unreachable is to deny: failure_mode_allow=false).
import type { Action, L7AuthorizationPolicy, StringMatch } from '../state/model.js';
import { toCidrs, toPorts, toServiceAccountMatches, toStringMatch } from './convert.js';
import {
  type CompiledMatch,
  type CompiledPolicyMatcher,
  type CompiledRule,
  type Connection,
  compileCidr,
  contextOf,
  decide,
  type EvalContext,
  type Family,
  family,
  firstMatchingRule,
  type PolicyDecision,
  type Predicate,
  principalPredicate,
  type RequestContext,
  serviceAccountPredicate,
  stringMatches,
} from './evaluate.js';
import type { AuthorizationRule, Condition, Operation, Source } from './istio-api.js';

/** `/a/{*}/b` and `/a/{**}` path templates (Istio 1.22+ uri_template): `{*}` one segment, `{**}` the rest. */
function pathPredicate(value: string): (path: string) => boolean {
  if (value.includes('{*}') || value.includes('{**}')) {
    const re = new RegExp(
      `^${value
        .split(/(\{\*\*\}|\{\*\})/)
        .map((part) => {
          if (part === '{**}') return '.*';
          if (part === '{*}') return '[^/]+';
          return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        })
        .join('')}$`,
    );
    return (p) => re.test(p);
  }
  const m = toStringMatch(value);
  return (p) => stringMatches(m, p);
}

/** The request path without query or fragment (indexOf, not a regex: it runs once per path matcher). */
function stripQuery(p: string): string {
  const q = p.indexOf('?');
  const h = p.indexOf('#');
  const cut = q < 0 ? h : h < 0 ? q : Math.min(q, h);
  return cut >= 0 ? p.slice(0, cut) : p;
}

const pathOf = (ctx: EvalContext): string => stripQuery(ctx.request?.path ?? '');

/** Hosts compare case-insensitively; a host without a port also matches the authority `host:port`. */
function hostPredicate(value: string): Predicate {
  const m = lowerMatch(toStringMatch(value));
  return (ctx) => {
    const authority = (ctx.request?.host ?? '').toLowerCase();
    if (stringMatches(m, authority)) return true;
    const noPort = authority.replace(/:\d+$/, '');
    return noPort !== authority && stringMatches(m, noPort);
  };
}

function lowerMatch(m: StringMatch): StringMatch {
  if ('exact' in m) return { exact: m.exact.toLowerCase() };
  if ('prefix' in m) return { prefix: m.prefix.toLowerCase() };
  if ('suffix' in m) return { suffix: m.suffix.toLowerCase() };
  return m;
}

function headerValues(ctx: EvalContext, name: string): string[] {
  const v = ctx.request?.headers?.[name.toLowerCase()];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

const ipPredicate =
  (which: 'source' | 'remote' | 'destination') =>
  (c: { address: string; length: number }): Predicate => {
    const p = compileCidr(c);
    if (which === 'source') return (ctx) => p(ctx.sourceIp);
    if (which === 'destination') return (ctx) => p(ctx.destinationIp);
    return (ctx) => p(ctx.remoteIp ?? ctx.sourceIp);
  };

const portPredicate =
  (port: number): Predicate =>
  (ctx) =>
    ctx.destinationPort === port;

/** No JWT authentication in Ambit: request principals and claims are absent, so positive matchers fail. */
const noRequestAuth: Predicate = () => false;

function families(parts: (Family | null)[]): CompiledMatch | null {
  const f = parts.filter((x): x is Family => x !== null);
  return f.length === 0 ? null : f;
}

function sourceMatch(src: Source, policyNamespace: string): CompiledMatch | null {
  const sm = (v: string[] | undefined) => (v ?? []).map(toStringMatch);
  return families([
    family(sm(src.principals), sm(src.notPrincipals), principalPredicate),
    family(sm(src.namespaces), sm(src.notNamespaces), (m) => (ctx) => stringMatches(m, ctx.namespace)),
    family(
      toServiceAccountMatches(src.serviceAccounts, policyNamespace),
      toServiceAccountMatches(src.notServiceAccounts, policyNamespace),
      serviceAccountPredicate,
    ),
    family(toCidrs(src.ipBlocks).values, toCidrs(src.notIpBlocks).values, ipPredicate('source')),
    family(toCidrs(src.remoteIpBlocks).values, toCidrs(src.notRemoteIpBlocks).values, ipPredicate('remote')),
    family(src.requestPrincipals ?? [], src.notRequestPrincipals ?? [], () => noRequestAuth),
    family(
      sm(src.trustDomains),
      sm(src.notTrustDomains),
      (m) => (ctx) => ctx.identity !== undefined && stringMatches(m, ctx.identity.trustDomain),
    ),
  ]);
}

function operationMatch(op: Operation): CompiledMatch | null {
  const method = (v: string): Predicate => {
    const m = toStringMatch(v);
    return (ctx) => stringMatches(m, ctx.request?.method ?? '');
  };
  const path = (v: string): Predicate => {
    const p = pathPredicate(v);
    return (ctx) => p(pathOf(ctx));
  };
  return families([
    family(op.hosts ?? [], op.notHosts ?? [], hostPredicate),
    family(toPorts(op.ports).values, toPorts(op.notPorts).values, portPredicate),
    family(op.methods ?? [], op.notMethods ?? [], method),
    family(op.paths ?? [], op.notPaths ?? [], path),
  ]);
}

function conditionMatch(cond: Condition, action: Action | 'CUSTOM'): CompiledMatch | null {
  const values = cond.values ?? [];
  const notValues = cond.notValues ?? [];
  const str = (read: (ctx: EvalContext) => string | undefined) => (v: string) => {
    const m = toStringMatch(v);
    return (ctx: EvalContext) => {
      const x = read(ctx);
      return x !== undefined && stringMatches(m, x);
    };
  };
  const header = /^request\.headers\[(.+)\]$/.exec(cond.key);
  let f: Family | null;
  if (header) {
    const name = header[1]!;
    f = family(values, notValues, (v) => {
      const m = toStringMatch(v);
      return (ctx) => headerValues(ctx, name).some((h) => stringMatches(m, h));
    });
  } else {
    switch (cond.key) {
      case 'source.ip':
        f = family(toCidrs(values).values, toCidrs(notValues).values, ipPredicate('source'));
        break;
      case 'remote.ip':
        f = family(toCidrs(values).values, toCidrs(notValues).values, ipPredicate('remote'));
        break;
      case 'destination.ip':
        f = family(toCidrs(values).values, toCidrs(notValues).values, ipPredicate('destination'));
        break;
      case 'destination.port':
        f = family(toPorts(values).values, toPorts(notValues).values, portPredicate);
        break;
      case 'source.namespace':
        f = family(
          values,
          notValues,
          str((ctx) => ctx.namespace),
        );
        break;
      case 'source.principal':
        f = family(values.map(toStringMatch), notValues.map(toStringMatch), principalPredicate);
        break;
      case 'source.serviceAccount':
        f = family(
          values,
          notValues,
          str((ctx) =>
            ctx.identity ? `${ctx.identity.namespace}/${ctx.identity.serviceAccount}` : undefined,
          ),
        );
        break;
      case 'source.trustDomain':
        f = family(
          values,
          notValues,
          str((ctx) => ctx.identity?.trustDomain),
        );
        break;
      case 'connection.sni':
        f = family(
          values,
          notValues,
          str((ctx) => ctx.request?.sni),
        );
        break;
      default:
        if (cond.key.startsWith('request.auth.')) {
          // No JWT: the attribute is absent, as for an unauthenticated request in Istio.
          f = family(values, notValues, () => noRequestAuth);
        } else {
          // A key Ambit cannot evaluate (experimental.*): fail closed — it holds for DENY/CUSTOM, never for ALLOW.
          const holds = action !== 'ALLOW';
          f = { positive: [() => holds], negative: [] };
        }
    }
  }
  return f ? [f] : null;
}

function compileRule(
  rule: AuthorizationRule,
  index: number,
  ns: string,
  action: Action | 'CUSTOM',
): CompiledRule {
  const clauses: (CompiledMatch | null)[][] = [];
  if (rule.from && rule.from.length > 0) clauses.push(rule.from.map((f) => sourceMatch(f.source ?? {}, ns)));
  if (rule.to && rule.to.length > 0) clauses.push(rule.to.map((t) => operationMatch(t.operation ?? {})));
  for (const c of rule.when ?? []) clauses.push([conditionMatch(c, action)]);
  return { clauses, index };
}

interface CompiledL7 extends CompiledPolicyMatcher {
  specAction: L7AuthorizationPolicy['action'];
}

const cache = new WeakMap<L7AuthorizationPolicy, CompiledL7>();

function compiledL7(p: L7AuthorizationPolicy): CompiledL7 {
  let c = cache.get(p);
  if (!c) {
    const rules = (p.rules as AuthorizationRule[]).map((r, i) =>
      compileRule(r ?? {}, i, p.namespace, p.action === 'AUDIT' ? 'ALLOW' : p.action),
    );
    c = {
      key: `${p.namespace}/${p.name}`,
      // CUSTOM is evaluated first and denies on match (see the file comment); it is not part of `decide`.
      action: p.action === 'DENY' || p.action === 'CUSTOM' ? 'DENY' : 'ALLOW',
      dryRun: p.dryRun,
      rules,
      specAction: p.action,
    };
    cache.set(p, c);
  }
  return c;
}

// --- Path index ---------------------------------------------------------------------------------------
// A waypoint may carry thousands of targetRefs policies for one service; evaluating each for every request
// costs ~1 µs a policy. Most rules name `paths`, and a policy all of whose rules require a path can only
// match a request whose path satisfies one of them. The index keeps, per policy set, the policies with such
// a necessary path condition keyed by exact path or by complete first segment of a literal prefix, so a
// request only evaluates the policies that could match it (plus those the index cannot rule out). It only
// SKIPS policies that cannot match: the decision is unchanged (l7.test.ts checks both ways agree).

type PathNeed = { exact: string } | { prefix: string };

/** Necessary path conditions of a policy, or undefined when some rule can match without a path. */
function pathNeeds(p: L7AuthorizationPolicy): PathNeed[] | undefined {
  const needs: PathNeed[] = [];
  for (const r of p.rules as (AuthorizationRule | null)[]) {
    const ops = r?.to ?? [];
    if (ops.length === 0) return undefined;
    for (const t of ops) {
      const paths = t?.operation?.paths ?? [];
      if (paths.length === 0) return undefined;
      for (const v of paths) {
        const brace = v.search(/\{\*\*?\}/);
        if (brace >= 0) needs.push({ prefix: v.slice(0, brace) });
        else if (v === '*' || v.startsWith('*'))
          return undefined; // presence or suffix: not indexable
        else if (v.endsWith('*')) needs.push({ prefix: v.slice(0, -1) });
        else needs.push({ exact: v });
      }
    }
  }
  return needs.length > 0 ? needs : undefined;
}

/** `/seg/...` → "seg" when the prefix holds the whole first segment (followed by '/'), else undefined. */
function firstSegment(prefix: string): string | undefined {
  if (!prefix.startsWith('/')) return undefined;
  const end = prefix.indexOf('/', 1);
  return end > 0 ? prefix.slice(1, end) : undefined;
}

interface PathIndex {
  compiled: CompiledL7[];
  /** Positions (into `compiled`) always evaluated: unindexable policies, dry-run ones, CUSTOM ones. */
  always: number[];
  exact: Map<string, number[]>;
  bySegment: Map<string, number[]>;
  /** Policies with short prefixes (no complete first segment): checked with startsWith. */
  loose: { prefix: string; at: number }[];
  /** Some non-dry-run ALLOW policy exists in the full set (decides "no ALLOW applies"). */
  hasAllow: boolean;
}

const indexes = new WeakMap<readonly L7AuthorizationPolicy[], PathIndex>();
const INDEX_MIN = 16;

function indexOf(policies: readonly L7AuthorizationPolicy[]): PathIndex {
  let ix = indexes.get(policies);
  if (ix) return ix;
  const compiled = policies.map(compiledL7);
  ix = { compiled, always: [], exact: new Map(), bySegment: new Map(), loose: [], hasAllow: false };
  const add = (m: Map<string, number[]>, k: string, at: number): void => {
    const list = m.get(k);
    if (!list) m.set(k, [at]);
    else if (list[list.length - 1] !== at) list.push(at);
  };
  for (let at = 0; at < policies.length; at++) {
    const p = policies[at]!;
    const c = compiled[at]!;
    if (!c.dryRun && c.action === 'ALLOW' && c.specAction === 'ALLOW') ix.hasAllow = true;
    const needs = c.dryRun || p.action === 'CUSTOM' ? undefined : pathNeeds(p);
    if (!needs) {
      ix.always.push(at);
      continue;
    }
    for (const n of needs) {
      if ('exact' in n) add(ix.exact, n.exact, at);
      else {
        const seg = firstSegment(n.prefix);
        if (seg !== undefined) add(ix.bySegment, seg, at);
        else ix.loose.push({ prefix: n.prefix, at });
      }
    }
  }
  indexes.set(policies, ix);
  return ix;
}

/** The policies of `ix` that could match `path`, in their original order. */
function candidates(ix: PathIndex, path: string): CompiledL7[] {
  const picked = new Set<number>(ix.always);
  for (const at of ix.exact.get(path) ?? []) picked.add(at);
  const end = path.indexOf('/', 1);
  const seg = path.startsWith('/') ? (end > 0 ? path.slice(1, end) : path.slice(1)) : undefined;
  if (seg !== undefined) for (const at of ix.bySegment.get(seg) ?? []) picked.add(at);
  for (const l of ix.loose) if (path.startsWith(l.prefix)) picked.add(l.at);
  return [...picked].sort((a, b) => a - b).map((at) => ix.compiled[at]!);
}

// A waypoint decides many requests per tunnel with the same Connection: its parsed part (principal, IPs)
// is derived once per Connection object, and only the request is added per call. Callers must therefore
// treat a Connection as immutable (the waypoint builds one per tunnel, explain one per question).
const connContexts = new WeakMap<Connection, EvalContext>();

function requestContext(conn: Connection, request: RequestContext): EvalContext {
  if (request.remoteIp) return contextOf(conn, request);
  let base = connContexts.get(conn);
  if (!base) {
    base = contextOf(conn);
    connContexts.set(conn, base);
  }
  return { ...base, request };
}

/**
 * Decides one request at the waypoint. `policies` are the L7 policies that target this waypoint or the
 * destination service. `conn.sourceIdentity` is the client's SPIFFE ID from the HBONE mTLS handshake.
 */
export function evaluateRequest(
  conn: Connection,
  request: RequestContext,
  policies: readonly L7AuthorizationPolicy[],
): PolicyDecision {
  const ctx = requestContext(conn, request);
  let compiledPolicies: CompiledL7[];
  let hasAllowOutside = false;
  if (policies.length >= INDEX_MIN) {
    // Callers that keep the same array per destination (the waypoint does) get the index built once.
    const ix = indexOf(policies);
    compiledPolicies = candidates(ix, pathOf(ctx));
    hasAllowOutside = ix.hasAllow;
  } else {
    compiledPolicies = policies.map(compiledL7);
  }
  for (const c of compiledPolicies) {
    if (c.specAction !== 'CUSTOM' || c.dryRun) continue;
    const rule = firstMatchingRule(c, ctx);
    if (rule !== undefined) {
      return {
        allow: false,
        reason: `denied by CUSTOM policy ${c.key}: external authorization is not supported, failing closed`,
        policy: c.key,
        rule,
        dryRun: [],
      };
    }
  }
  const decision = decide(
    ctx,
    compiledPolicies.filter(
      (c) => c.specAction === 'ALLOW' || c.specAction === 'DENY' || (c.specAction === 'CUSTOM' && c.dryRun),
    ),
  );
  // The index left out ALLOW policies that cannot match: they still "apply" (istio: ALLOW policies exist).
  if (decision.allow && decision.policy === undefined && hasAllowOutside) {
    return { allow: false, reason: 'allow policies exist, but none allowed', dryRun: decision.dryRun };
  }
  return decision;
}

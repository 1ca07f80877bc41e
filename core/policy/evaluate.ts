// The L4 authorization decision, exactly istio/ztunnel's: src/rbac.rs `Authorization::matches` for one policy
// and src/state.rs `assert_rbac` for the order (dry-run set aside → any DENY matches → deny; no ALLOW → allow;
// any ALLOW matches → allow; else deny). Callers pass only the policies that apply to the destination
// (MeshState.policiesFor), so a decision costs O(applicable policies), never O(all policies).
//
// Matchers are compiled once per Authorization object (WeakMap cache keyed by the object, so a policy update
// that replaces the object recompiles it). A compiled Match is a list of "families", each a positive list
// (any must hold, or empty) and a negative list (none may hold, or empty), AND'ed. The waypoint's L7 engine
// extends the same code by adding families over `RequestContext` (method, path, host, headers): an empty
// family is vacuously true, so L4 semantics do not change. See `familiesOf` below.
import ipaddr from 'ipaddr.js';
import type { SpiffeId } from '../identity/spiffe.js';
import type {
  Action,
  Authorization,
  CidrMatch,
  Match,
  ServiceAccountMatch,
  StringMatch,
} from '../state/model.js';

/** What ztunnel knows about a connection (rbac.rs `Connection`). */
export interface Connection {
  /** Verified peer identity from mTLS; undefined = plaintext (inbound 15006). */
  sourceIdentity?: SpiffeId;
  sourceIp: string;
  destinationIp: string;
  /** The destination *target* port (after service-port mapping). */
  destinationPort: number;
}

/** Extension point for the waypoint (L7): the request attributes its matchers will read. Unused at L4. */
export interface RequestContext {
  method?: string;
  /** Request path, query included as sent (matchers compare the path without the query, as Istio does). */
  path?: string;
  /** `:authority` / Host. */
  host?: string;
  /** Lower-case header names. */
  headers?: Record<string, string | string[] | undefined>;
  /** Original client IP from X-Forwarded-For (`remoteIpBlocks`, `remote.ip`); defaults to the peer IP. */
  remoteIp?: string;
  /** TLS SNI seen by the proxy, if any (`connection.sni`). */
  sni?: string;
}

export interface DryRunResult {
  /** `ns/name` */
  policy: string;
  action: Action;
  matched: boolean;
  /** Deciding rule when matched (spec rule index when known). */
  rule?: number;
  /** ztunnel's log wording, e.g. "dry-run: deny policy match". */
  message: string;
}

export interface PolicyDecision {
  allow: boolean;
  /** ztunnel's wording: `explicitly denied by: ns/name`, `allow policies exist, but none allowed`, … */
  reason: string;
  /** Deciding policy `ns/name`, when one decided. */
  policy?: string;
  /** Deciding rule: the AuthorizationPolicy `spec.rules` index when known, else the compiled rule index. */
  rule?: number;
  /** Dry-run policies are evaluated and reported only; they never change `allow`. */
  dryRun: DryRunResult[];
}

export class InvalidConnection extends Error {
  readonly code = 'INVALID_CONNECTION';
  constructor(
    readonly field: string,
    readonly value: string,
  ) {
    super(`invalid connection ${field} ${JSON.stringify(value)}: not an IP address`);
    this.name = 'InvalidConnection';
  }
}

// --- IP handling ---------------------------------------------------------------------------------------------

/** IPv4 as an unsigned 32-bit number, IPv6 as a bigint. */
export type Ip = { v4: number; v6?: undefined } | { v4?: undefined; v6: bigint };

function ipFromParsed(p: ipaddr.IPv4 | ipaddr.IPv6): Ip {
  // Node reports IPv4 peers on dual-stack sockets as ::ffff:a.b.c.d; policies are written in IPv4.
  if (p.kind() === 'ipv6' && (p as ipaddr.IPv6).isIPv4MappedAddress()) p = (p as ipaddr.IPv6).toIPv4Address();
  const bytes = p.toByteArray();
  if (p.kind() === 'ipv4')
    return { v4: ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0 };
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return { v6: v };
}

const DOTTED_V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseConnIp(field: string, text: string): Ip {
  // Fast path for the common case (dotted IPv4 from a socket): no allocation beyond the regex match.
  const v4 = DOTTED_V4.exec(text);
  if (v4) {
    const a = Number(v4[1]);
    const b = Number(v4[2]);
    const c = Number(v4[3]);
    const d = Number(v4[4]);
    if (a > 255 || b > 255 || c > 255 || d > 255) throw new InvalidConnection(field, text);
    return { v4: ((a << 24) | (b << 16) | (c << 8) | d) >>> 0 };
  }
  if (!ipaddr.isValid(text)) throw new InvalidConnection(field, text);
  return ipFromParsed(ipaddr.parse(text));
}

export type IpPredicate = (ip: Ip) => boolean;

/** CIDR containment on the network part: a non-canonical `10.1.2.3/8` matches as 10.0.0.0/8 (ipnet contains). */
export function compileCidr(c: CidrMatch): IpPredicate {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(c.address);
  } catch {
    return () => false; // never produced by compile.ts; see usableCidrs for how ztunnel treats it
  }
  if (parsed.kind() === 'ipv4') {
    const net = ipFromParsed(parsed).v4!;
    const len = Math.max(0, Math.min(32, c.length));
    const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
    const want = (net & mask) >>> 0;
    return (ip) => ip.v4 !== undefined && (ip.v4 & mask) >>> 0 === want;
  }
  const bytes = parsed.toByteArray();
  let net = 0n;
  for (const b of bytes) net = (net << 8n) | BigInt(b);
  const len = BigInt(Math.max(0, Math.min(128, c.length)));
  const shift = 128n - len;
  const want = net >> shift;
  return (ip) => ip.v6 !== undefined && ip.v6 >> shift === want;
}

// --- Compiled form ------------------------------------------------------------------------------------------

/** The connection as the matchers read it, derived once per evaluation. */
export interface EvalContext {
  /** Identity rendered without `spiffe://` (principal form); undefined when plaintext. */
  principal: string | undefined;
  /** Identity namespace; "" for plaintext (rbac.rs unwrap_or_default). */
  namespace: string;
  identity: SpiffeId | undefined;
  sourceIp: Ip;
  destinationIp: Ip;
  destinationPort: number;
  request?: RequestContext;
  /** Parsed `request.remoteIp` (or the source IP). */
  remoteIp?: Ip;
}

export type Predicate = (ctx: EvalContext) => boolean;

export interface Family {
  positive: Predicate[];
  negative: Predicate[];
}

export interface CompiledRule {
  clauses: (CompiledMatch | null)[][]; // null = empty Match (skipped)
  index: number;
}

export type CompiledMatch = Family[];

/** A policy ready to evaluate: L4 Authorizations and (waypoint) L7 policies compile to this one shape. */
export interface CompiledPolicyMatcher {
  /** `ns/name` */
  key: string;
  action: Action;
  dryRun: boolean;
  rules: CompiledRule[];
}

type CompiledAuthorization = CompiledPolicyMatcher;

export function stringMatches(m: StringMatch, check: string): boolean {
  if ('presence' in m) return check.length > 0;
  if ('prefix' in m) return check.startsWith(m.prefix);
  if ('suffix' in m) return check.endsWith(m.suffix);
  return check === m.exact;
}

export function principalPredicate(m: StringMatch): Predicate {
  // rbac.rs matches_principal: the identity is rendered as spiffe://…, and the prefix stripped before the
  // comparison; with no identity there is nothing to strip and every matcher (even presence) is false.
  return (ctx) => ctx.principal !== undefined && stringMatches(m, ctx.principal);
}

export function serviceAccountPredicate(m: ServiceAccountMatch): Predicate {
  return (ctx) =>
    ctx.identity !== undefined &&
    ctx.identity.namespace === m.namespace &&
    ctx.identity.serviceAccount === m.serviceAccount;
}

export function family<T>(pos: T[], neg: T[], make: (v: T) => Predicate): Family | null {
  if (pos.length === 0 && neg.length === 0) return null;
  return { positive: pos.map(make), negative: neg.map(make) };
}

/** ztunnel drops addresses it cannot convert (rbac.rs `filter_map(|a| a.try_into().ok())`) before matching. */
function usableCidrs(cs: CidrMatch[]): CidrMatch[] {
  return cs.filter((c) => {
    const max = c.address.includes(':') ? 128 : 32;
    return ipaddr.isValid(c.address) && Number.isInteger(c.length) && c.length >= 0 && c.length <= max;
  });
}

/** The six L4 families of rbac.rs, in its order. L7 families are appended here when Match grows them. */
function familiesOf(m: Match): Family[] {
  const dst = (c: CidrMatch): Predicate => {
    const p = compileCidr(c);
    return (ctx) => p(ctx.destinationIp);
  };
  const src = (c: CidrMatch): Predicate => {
    const p = compileCidr(c);
    return (ctx) => p(ctx.sourceIp);
  };
  const fams = [
    family(usableCidrs(m.destinationIps), usableCidrs(m.notDestinationIps), dst),
    family(usableCidrs(m.sourceIps), usableCidrs(m.notSourceIps), src),
    family(m.destinationPorts, m.notDestinationPorts, (p) => (ctx) => ctx.destinationPort === p),
    family(m.serviceAccounts, m.notServiceAccounts, serviceAccountPredicate),
    family(m.principals, m.notPrincipals, principalPredicate),
    family(m.namespaces, m.notNamespaces, (s) => (ctx) => stringMatches(s, ctx.namespace)),
  ];
  return fams.filter((f): f is Family => f !== null);
}

const cache = new WeakMap<Authorization, CompiledAuthorization>();

function compiled(a: Authorization): CompiledAuthorization {
  let c = cache.get(a);
  if (!c) {
    c = {
      key: `${a.namespace}/${a.name}`,
      action: a.action,
      dryRun: a.dryRun,
      rules: a.rules.map((r, i) => ({
        index: r.sourceRule ?? i,
        clauses: r.clauses.map((cl) =>
          cl.matches.map((m) => {
            const fams = familiesOf(m);
            return fams.length === 0 ? null : fams;
          }),
        ),
      })),
    };
    cache.set(a, c);
  }
  return c;
}

function matchHolds(m: CompiledMatch, ctx: EvalContext): boolean {
  for (const f of m) {
    if (f.positive.length > 0 && !f.positive.some((p) => p(ctx))) return false;
    if (f.negative.length > 0 && f.negative.some((p) => p(ctx))) return false;
  }
  return true;
}

/** rbac.rs Authorization::matches; returns the matching rule's index, or undefined. */
export function firstMatchingRule(a: CompiledAuthorization, ctx: EvalContext): number | undefined {
  // Zero rules never match (the loop below does not run).
  for (const rule of a.rules) {
    let ruleMatch = true; // zero clauses: match
    for (const clause of rule.clauses) {
      // A clause with zero matches counts as matched; an empty Match is skipped (never matches on its own).
      let clauseMatch = clause.length === 0;
      for (const m of clause) {
        if (m !== null && matchHolds(m, ctx)) {
          clauseMatch = true;
          break;
        }
      }
      if (!clauseMatch) {
        ruleMatch = false;
        break;
      }
    }
    if (ruleMatch) return rule.index;
  }
  return undefined;
}

export function contextOf(conn: Connection, request?: RequestContext): EvalContext {
  const id = conn.sourceIdentity;
  return {
    principal: id ? `${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}` : undefined,
    namespace: id?.namespace ?? '',
    identity: id,
    sourceIp: parseConnIp('sourceIp', conn.sourceIp),
    destinationIp: parseConnIp('destinationIp', conn.destinationIp),
    destinationPort: conn.destinationPort,
    ...(request ? { request } : {}),
    ...(request?.remoteIp ? { remoteIp: parseConnIp('remoteIp', request.remoteIp) } : {}),
  };
}

/** Whether one policy matches the connection; the matching rule index, or undefined. */
export function matchingRule(
  policy: Authorization,
  conn: Connection,
  request?: RequestContext,
): number | undefined {
  return firstMatchingRule(compiled(policy), contextOf(conn, request));
}

export interface EvaluateOptions {
  /** L7 request attributes (waypoint). Ignored by the L4 families. */
  request?: RequestContext;
}

/** istio/ztunnel state.rs assert_rbac, with the deciding policy and rule reported. */
export function evaluate(
  conn: Connection,
  policies: Authorization[],
  options: EvaluateOptions = {},
): PolicyDecision {
  return decide(contextOf(conn, options.request), policies.map(compiled));
}

/**
 * The decision order shared by ztunnel (L4) and the waypoint (L7): dry-run set aside and reported; any DENY
 * matches → deny; no ALLOW → allow; any ALLOW matches → allow; else deny.
 */
export function decide(ctx: EvalContext, policies: readonly CompiledPolicyMatcher[]): PolicyDecision {
  const dryRun: DryRunResult[] = [];
  const allow: CompiledPolicyMatcher[] = [];
  const deny: CompiledPolicyMatcher[] = [];
  for (const c of policies) {
    if (c.dryRun) {
      const rule = firstMatchingRule(c, ctx);
      const verb = c.action === 'DENY' ? 'deny' : 'allow';
      dryRun.push({
        policy: c.key,
        action: c.action,
        matched: rule !== undefined,
        ...(rule !== undefined ? { rule } : {}),
        message: `dry-run: ${verb} policy ${rule !== undefined ? 'match' : 'no match'}`,
      });
      continue;
    }
    (c.action === 'DENY' ? deny : allow).push(c);
  }
  for (const d of deny) {
    const rule = firstMatchingRule(d, ctx);
    if (rule !== undefined) {
      return { allow: false, reason: `explicitly denied by: ${d.key}`, policy: d.key, rule, dryRun };
    }
  }
  if (allow.length === 0) return { allow: true, reason: 'no allow policies apply', dryRun };
  for (const a of allow) {
    const rule = firstMatchingRule(a, ctx);
    if (rule !== undefined)
      return { allow: true, reason: `allowed by: ${a.key}`, policy: a.key, rule, dryRun };
  }
  return { allow: false, reason: 'allow policies exist, but none allowed', dryRun };
}

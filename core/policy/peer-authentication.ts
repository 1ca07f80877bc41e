// PeerAuthentication → L4 DENY Authorizations, exactly as istiod does it for ambient
// (istio/istio pilot/pkg/serviceregistry/ambient/authorization.go: convertedSelectorPeerAuthentications,
// convertPeerAuthentication; policies.go: the static STRICT policy and PeerAuthByNamespace).
// ztunnel has no "mTLS mode": HBONE is always mTLS, and STRICT is a DENY of connections without a peer
// identity (`not_principals: [presence]`), i.e. of plaintext arriving on 15006. PERMISSIVE and DISABLE emit
// nothing (DISABLE cannot turn mTLS off in ambient).
import type { Authorization, Match, Rule } from '../state/model.js';
import type { CompileOptions } from './compile.js';
import { emptyMatch } from './compile.js';
import type { PeerAuthentication, PeerAuthenticationMode } from './istio-api.js';

export interface PeerAuthnWorkload {
  uid: string;
  namespace: string;
  labels: Record<string, string>;
}

export interface CompiledPeerAuthentication {
  /** The static STRICT policy (when any PeerAuthentication exists) and every converted port-level policy. */
  authorizations: Authorization[];
  /** Workload uid → policy keys (`ns/name`) to add to Workload.authorizationPolicies. */
  policiesByWorkload: Map<string, string[]>;
  /** Istio-compatible but surprising outcomes worth showing the operator. */
  warnings?: string[];
}

export const STATIC_STRICT_POLICY_NAME = 'istio_converted_static_strict';
export const CONVERTED_PEER_AUTHENTICATION_PREFIX = 'converted_peer_authentication_';

type Mtls = { mode?: PeerAuthenticationMode } | undefined;

const isUnset = (m: Mtls): boolean => m === undefined || m === null || (m.mode ?? 'UNSET') === 'UNSET';
const isStrict = (m: Mtls): boolean => m?.mode === 'STRICT';
const isPermissive = (m: Mtls): boolean => m?.mode === 'PERMISSIVE';
const isDisable = (m: Mtls): boolean => m?.mode === 'DISABLE';
const modeOf = (m: Mtls): PeerAuthenticationMode => m?.mode ?? 'UNSET';

/** Go's zero time (no creationTimestamp) sorts before every real time. */
function createdAt(pa: PeerAuthentication): number {
  const t = pa.metadata.creationTimestamp ? Date.parse(pa.metadata.creationTimestamp) : Number.NaN;
  return Number.isNaN(t) ? Number.NEGATIVE_INFINITY : t;
}

/** First-seen wins on ties, like istiod's `CreationTimestamp.Before` scan. */
function oldest(pas: PeerAuthentication[]): PeerAuthentication | undefined {
  let best: PeerAuthentication | undefined;
  for (const pa of pas) if (!best || createdAt(pa) < createdAt(best)) best = pa;
  return best;
}

const hasNoSelector = (pa: PeerAuthentication): boolean =>
  pa.spec.selector === undefined || pa.spec.selector === null;
const hasNoLabels = (pa: PeerAuthentication): boolean =>
  Object.keys(pa.spec.selector?.matchLabels ?? {}).length === 0;

function subsetOf(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

export function convertedPolicyName(pa: PeerAuthentication): string {
  return CONVERTED_PEER_AUTHENTICATION_PREFIX + pa.metadata.name;
}

function notPrincipalsPresence(): Match {
  const m = emptyMatch();
  m.notPrincipals = [{ presence: true }];
  return m;
}

export function staticStrictPolicy(rootNamespace: string): Authorization {
  return {
    name: STATIC_STRICT_POLICY_NAME,
    namespace: rootNamespace,
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [notPrincipalsPresence()] }] }],
    dryRun: false,
    notes: [],
  };
}

/** Port keys sorted numerically (istiod iterates `maps.SeqStable` over uint32 keys); non-numeric keys skipped. */
function sortedPorts(pa: PeerAuthentication): [number, Mtls][] {
  const out: [number, Mtls][] = [];
  for (const [k, v] of Object.entries(pa.spec.portLevelMtls ?? {})) {
    if (!/^[0-9]+$/.test(k) || Number(k) > 65535) continue;
    out.push([Number(k), v]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

/**
 * istiod convertPeerAuthentication: a workload-selector policy outside the root namespace with portLevelMtls
 * becomes `converted_peer_authentication_<name>` (DENY, WORKLOAD_SELECTOR) when its ports differ from the
 * effective mode. `nsCfg`/`rootCfg` are the oldest selector-less policies of its namespace and the root.
 */
export function convertPeerAuthentication(
  rootNamespace: string,
  cfg: PeerAuthentication,
  nsCfg: PeerAuthentication | undefined,
  rootCfg: PeerAuthentication | undefined,
): Authorization | undefined {
  const pa = cfg.spec;
  if (cfg.metadata.namespace === rootNamespace || hasNoSelector(cfg) || sortedPorts(cfg).length === 0) {
    return undefined;
  }
  const mode = modeOf(pa.mtls);
  const clauses: Rule['clauses'] = [];
  const groups: Rule[] = [];
  if (mode === 'STRICT') clauses.push({ matches: [notPrincipalsPresence()] });

  let foundNonStrictPort = false;
  const inherited = nsCfg !== undefined && !isUnset(nsCfg.spec.mtls) ? nsCfg : rootCfg;
  const inheritedStrict = inherited !== undefined && isStrict(inherited.spec.mtls);
  for (const [port, mtls] of sortedPorts(cfg)) {
    const portMode = modeOf(mtls);
    if (portMode === 'STRICT') {
      // A STRICT port needs no rule only when the workload is STRICT anyway (its own mode, or UNSET
      // inheriting STRICT). istiod's Go expression `#1 || (unset && nsStrict || (nsNilOrUnset && rootStrict))`
      // drops the `unset &&` from its last term by operator precedence, so a PERMISSIVE workload with a STRICT
      // port under a STRICT mesh gets no rule and that port accepts plaintext. Ambit fails closed instead.
      const skip = isStrict(pa.mtls) || (isUnset(pa.mtls) && inheritedStrict);
      if (skip) continue;
      // Groups are OR'ed: one per STRICT port.
      const m = notPrincipalsPresence();
      m.destinationPorts = [port];
      groups.push({ clauses: [{ matches: [m] }] });
    } else if (portMode === 'PERMISSIVE' || portMode === 'DISABLE') {
      if (mode === 'PERMISSIVE' || mode === 'DISABLE') continue;
      // An UNSET workload inherits: namespace mode unless that is UNSET too, then the mesh's. istiod only
      // looks at the namespace policy when one exists, so an UNSET namespace policy under a STRICT mesh
      // made the whole workload plaintext-open; Ambit inherits through it (fail closed).
      if (mode === 'UNSET' && !inheritedStrict) continue;
      foundNonStrictPort = true;
      // Deny plaintext unless the connection is to this exempted port (clauses AND'ed in one group).
      const m = emptyMatch();
      m.notDestinationPorts = [port];
      clauses.push({ matches: [m] });
    }
  }

  if (mode === 'STRICT' && !foundNonStrictPort) return undefined;
  if (clauses.length === 0 && groups.length === 0) return undefined;

  let shouldMergeStrict = false;
  if (
    rootCfg !== undefined &&
    isStrict(rootCfg.spec.mtls) &&
    (nsCfg === undefined || isUnset(nsCfg.spec.mtls) || isStrict(nsCfg.spec.mtls))
  ) {
    shouldMergeStrict = true;
  } else if (nsCfg !== undefined && isStrict(nsCfg.spec.mtls)) {
    shouldMergeStrict = true;
  }
  // The parent's STRICT is merged in so the static STRICT policy can be left off this workload.
  if (shouldMergeStrict && foundNonStrictPort) clauses.push({ matches: [notPrincipalsPresence()] });
  if (clauses.length > 0) groups.push({ clauses });

  return {
    name: convertedPolicyName(cfg),
    namespace: cfg.metadata.namespace,
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: groups,
    dryRun: false,
    notes: [],
    selector: { ...(pa.selector?.matchLabels ?? {}) },
  };
}

/**
 * istiod convertedSelectorPeerAuthentications: the keys a workload references given the PeerAuthentications
 * that concern it (mesh, its namespace, its selector matches). Precedence workload > namespace > mesh,
 * UNSET inherits, oldest wins at each level, root-namespace selector policies are ignored.
 */
export function effectivePeerAuthenticationKeys(
  rootNamespace: string,
  configs: PeerAuthentication[],
): string[] {
  let meshCfg: PeerAuthentication | undefined;
  let namespaceCfg: PeerAuthentication | undefined;
  let workloadCfg: PeerAuthentication | undefined;
  for (const cfg of configs) {
    if (hasNoSelector(cfg) || hasNoLabels(cfg)) {
      if (cfg.metadata.namespace === rootNamespace) {
        if (!meshCfg || createdAt(cfg) < createdAt(meshCfg)) meshCfg = cfg;
      } else if (!namespaceCfg || createdAt(cfg) < createdAt(namespaceCfg)) namespaceCfg = cfg;
    } else if (cfg.metadata.namespace !== rootNamespace) {
      if (!workloadCfg || createdAt(cfg) < createdAt(workloadCfg)) workloadCfg = cfg;
    }
  }

  let strict = false;
  let portLevelKey = '';
  if (meshCfg) strict = isStrict(meshCfg.spec.mtls);
  if (namespaceCfg && !isUnset(namespaceCfg.spec.mtls)) strict = isStrict(namespaceCfg.spec.mtls);

  if (workloadCfg) {
    const spec = workloadCfg.spec;
    const key = `${workloadCfg.metadata.namespace}/${convertedPolicyName(workloadCfg)}`;
    if (isStrict(spec.mtls)) strict = true;
    if (isPermissive(spec.mtls) || isDisable(spec.mtls)) strict = false;
    if (spec.portLevelMtls) {
      const ports = Object.values(spec.portLevelMtls);
      switch (modeOf(spec.mtls)) {
        case 'STRICT':
          if (ports.some((p) => isPermissive(p) || isDisable(p))) {
            portLevelKey = key;
            strict = false; // the converted policy carries the STRICT part itself
          }
          break;
        case 'PERMISSIVE':
        case 'DISABLE':
          if (ports.some(isStrict)) portLevelKey = key;
          break;
        default:
          if (strict) {
            // istiod only looks for PERMISSIVE here (not DISABLE), kept as is.
            if (ports.some(isPermissive)) {
              portLevelKey = key;
              strict = false;
            }
          } else if (ports.some(isStrict)) portLevelKey = key;
      }
    }
  }

  const keys = new Set<string>();
  if (strict) keys.add(`${rootNamespace}/${STATIC_STRICT_POLICY_NAME}`);
  if (portLevelKey) keys.add(portLevelKey);
  return [...keys].sort();
}

/** The PeerAuthentications istiod fetches for one workload (fetchPeerAuthentications). */
function peerAuthenticationsFor(
  rootNamespace: string,
  pas: PeerAuthentication[],
  w: PeerAuthnWorkload,
): PeerAuthentication[] {
  return pas.filter((pa) => {
    if (pa.metadata.namespace === rootNamespace && hasNoSelector(pa)) return true;
    if (pa.metadata.namespace !== w.namespace) return false;
    if (hasNoSelector(pa)) return true;
    return subsetOf(pa.spec.selector?.matchLabels ?? {}, w.labels);
  });
}

export function compilePeerAuthentications(
  pas: PeerAuthentication[],
  workloads: PeerAuthnWorkload[],
  opts: CompileOptions,
): CompiledPeerAuthentication {
  const root = opts.rootNamespace;
  const authorizations: Authorization[] = [];
  const warnings: string[] = [];
  // istiod sends the static STRICT policy whenever any PeerAuthentication exists.
  if (pas.length > 0) authorizations.push(staticStrictPolicy(root));

  const byNamespace = new Map<string, PeerAuthentication[]>();
  for (const pa of pas) {
    if (!hasNoSelector(pa)) continue; // PeerAuthByNamespace indexes selector-less policies only
    const list = byNamespace.get(pa.metadata.namespace) ?? [];
    list.push(pa);
    byNamespace.set(pa.metadata.namespace, list);
  }
  const rootCfg = oldest(byNamespace.get(root) ?? []);
  const converted = new Set<string>();
  for (const pa of pas) {
    const nsCfg = oldest(byNamespace.get(pa.metadata.namespace) ?? []);
    const a = convertPeerAuthentication(root, pa, nsCfg, rootCfg);
    if (a) {
      authorizations.push(a);
      converted.add(`${a.namespace}/${a.name}`);
    }
  }

  // Workloads of one namespace with the same labels share the answer; cache per (ns, labels).
  const cache = new Map<string, string[]>();
  const policiesByWorkload = new Map<string, string[]>();
  for (const w of workloads) {
    const cacheKey = `${w.namespace}\u0000${JSON.stringify(Object.entries(w.labels).sort())}`;
    let keys = cache.get(cacheKey);
    if (!keys) {
      keys = effectivePeerAuthenticationKeys(root, peerAuthenticationsFor(root, pas, w));
      cache.set(cacheKey, keys);
      for (const k of keys) {
        if (!k.endsWith(`/${STATIC_STRICT_POLICY_NAME}`) && !converted.has(k)) {
          // istiod references a converted policy it never emits (its port rules were all skipped); ztunnel
          // skips unknown keys, so those ports get no mTLS requirement. Same outcome here, said out loud.
          warnings.push(
            `workloads in namespace ${w.namespace} reference PeerAuthentication policy ${k}, which compiles to no rules (Istio behaviour): its port-level modes have no effect`,
          );
        }
      }
    }
    if (keys.length > 0) policiesByWorkload.set(w.uid, keys);
  }
  return { authorizations, policiesByWorkload, warnings: [...new Set(warnings)] };
}

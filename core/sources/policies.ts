// Policy attachment, the policy half of the translation: AuthorizationPolicy and PeerAuthentication
// objects → compiled Authorizations in MeshState, and which selector-scoped keys each workload carries
// in Workload.authorizationPolicies (istio/istio pilot/pkg/serviceregistry/kube/controller/ambient:
// policies.go, authorization.go). The Translator owns pods and calls in here; this file tells it which
// pods must be re-derived.
import type { Logger } from 'pino';
import { type CompiledPolicy, compileAuthorizationPolicy } from '../policy/compile.js';
import { compilePeerAuthentications } from '../policy/peer-authentication.js';
import type { Authorization } from '../state/model.js';
import { type MeshState, policyKey } from '../state/state.js';
import type { AuthorizationPolicyObject, PeerAuthenticationObject } from './schema.js';

/** What policy attachment needs from the Translator. */
export interface PolicyHost {
  readonly state: MeshState;
  readonly rootNamespace: string;
  readonly trustDomain: string;
  readonly log: Logger | undefined;
  note(object: string, message: string): void;
  clearNotes(object: string): void;
  /** uid and labels of the pods of a namespace, as applied. */
  podsOf(namespace: string): { uid: string; key: string; labels: Record<string, string> }[];
  /** Namespaces that hold pods. */
  podNamespaces(): Iterable<string>;
  markPod(key: string): void;
  markPodsOf(namespace: string): void;
  markAllPods(): void;
}

export class PolicyAttachment {
  readonly #host: PolicyHost;
  readonly #aps = new Map<string, AuthorizationPolicyObject>();
  readonly #pas = new Map<string, PeerAuthenticationObject>();
  readonly #pasByNs = new Map<string, Set<string>>();
  /** Compiled WORKLOAD_SELECTOR policies by namespace (the root namespace's select in every namespace). */
  readonly #selectorPolicies = new Map<string, Map<string, Authorization>>();
  // PeerAuthentication output per namespace. It is compiled per namespace: a workload's mode depends
  // only on the PeerAuthentications of its namespace and of the root namespace.
  readonly #paAuthByNs = new Map<string, Set<string>>();
  readonly #paAuthRefs = new Map<string, number>();
  readonly #paByWorkload = new Map<string, string[]>();
  readonly #dirtyPaNs = new Set<string>();
  #allPaNsDirty = false;

  constructor(host: PolicyHost) {
    this.#host = host;
  }

  // --- AuthorizationPolicy ---------------------------------------------------------------------------

  applyAuthorizationPolicy(key: string, ap: AuthorizationPolicyObject): void {
    this.#aps.set(key, ap);
    this.#drop(key);
    const h = this.#host;
    const objKey = `AuthorizationPolicy/${key}`;
    let compiled: CompiledPolicy;
    try {
      compiled = compileAuthorizationPolicy(ap, {
        rootNamespace: h.rootNamespace,
        trustDomain: h.trustDomain,
      });
    } catch (err) {
      // Nothing is half-applied: the policy is absent and the note says why, loudly.
      h.note(objKey, `not compiled: ${err instanceof Error ? err.message : String(err)}`);
      h.log?.error({ policy: key, err }, 'AuthorizationPolicy failed to compile');
      return;
    }
    for (const w of compiled.warnings) h.note(objKey, w);
    if (compiled.l4) {
      const a = compiled.l4;
      h.state.upsertAuthorization(a);
      if (a.scope === 'WORKLOAD_SELECTOR' && a.selector) {
        let m = this.#selectorPolicies.get(a.namespace);
        if (!m) {
          m = new Map();
          this.#selectorPolicies.set(a.namespace, m);
        }
        m.set(key, a);
        this.#markSelectable(a.namespace);
      }
    }
    if (compiled.l7) h.state.upsertL7Policy(compiled.l7);
  }

  removeAuthorizationPolicy(key: string): void {
    if (this.#aps.delete(key)) this.#drop(key);
  }

  #drop(key: string): void {
    const ns = key.slice(0, key.indexOf('/'));
    this.#host.clearNotes(`AuthorizationPolicy/${key}`);
    const m = this.#selectorPolicies.get(ns);
    if (m?.delete(key)) {
      if (m.size === 0) this.#selectorPolicies.delete(ns);
      this.#markSelectable(ns);
    }
    this.#host.state.removeAuthorization(key);
    this.#host.state.removeL7Policy(key);
  }

  /** Pods a selector policy in `ns` could select: its namespace's, or every pod for the root namespace. */
  #markSelectable(ns: string): void {
    if (ns === this.#host.rootNamespace) this.#host.markAllPods();
    else this.#host.markPodsOf(ns);
  }

  /**
   * Keys for Workload.authorizationPolicies: selector policies of its namespace and of the root
   * namespace whose matchLabels it carries (an empty matchLabels selects all, as in Istio), plus what
   * PeerAuthentication compiled for it. Sorted, so an unchanged answer compares equal.
   */
  policiesFor(uid: string, namespace: string, labels: Record<string, string>): string[] {
    const out: string[] = [];
    const scan = (m: Map<string, Authorization> | undefined) => {
      if (!m) return;
      for (const [k, a] of m) {
        let ok = true;
        for (const [lk, lv] of Object.entries(a.selector ?? {}))
          if (labels[lk] !== lv) {
            ok = false;
            break;
          }
        if (ok) out.push(k);
      }
    };
    scan(this.#selectorPolicies.get(namespace));
    if (namespace !== this.#host.rootNamespace) scan(this.#selectorPolicies.get(this.#host.rootNamespace));
    for (const k of this.#paByWorkload.get(uid) ?? []) if (!out.includes(k)) out.push(k);
    return out.sort();
  }

  // --- PeerAuthentication ----------------------------------------------------------------------------

  applyPeerAuthentication(key: string, namespace: string, pa: PeerAuthenticationObject): void {
    this.#pas.set(key, pa);
    let set = this.#pasByNs.get(namespace);
    if (!set) {
      set = new Set();
      this.#pasByNs.set(namespace, set);
    }
    set.add(key);
    this.#paChanged(namespace);
  }

  removePeerAuthentication(key: string, namespace: string): void {
    if (!this.#pas.delete(key)) return;
    const set = this.#pasByNs.get(namespace);
    set?.delete(key);
    if (set?.size === 0) this.#pasByNs.delete(namespace);
    this.#paChanged(namespace);
  }

  /** Pods came, went or changed labels in `namespace`: their PeerAuthentication answer may change. */
  podsChanged(namespace: string): void {
    // Without a PeerAuthentication in the namespace or the root namespace (and none compiled there
    // before) the answer is empty for every pod: recompiling would only walk the namespace's pods.
    if (
      !this.#pasByNs.has(namespace) &&
      !this.#pasByNs.has(this.#host.rootNamespace) &&
      !this.#paAuthByNs.has(namespace)
    )
      return;
    this.#dirtyPaNs.add(namespace);
  }

  forgetWorkload(uid: string): void {
    this.#paByWorkload.delete(uid);
  }

  #paChanged(ns: string): void {
    if (ns === this.#host.rootNamespace) this.#allPaNsDirty = true;
    else this.#dirtyPaNs.add(ns);
  }

  /** Recompiles PeerAuthentication for the namespaces that changed; marks pods whose keys changed. */
  derive(): void {
    if (this.#allPaNsDirty) {
      for (const ns of this.#host.podNamespaces()) this.#dirtyPaNs.add(ns);
      for (const ns of this.#paAuthByNs.keys()) this.#dirtyPaNs.add(ns);
      this.#dirtyPaNs.add(this.#host.rootNamespace);
      this.#allPaNsDirty = false;
    }
    for (const ns of this.#dirtyPaNs) this.#compileNamespace(ns);
    this.#dirtyPaNs.clear();
  }

  #compileNamespace(ns: string): void {
    const h = this.#host;
    const root = h.rootNamespace;
    const keys = [...(this.#pasByNs.get(ns) ?? []), ...(ns === root ? [] : (this.#pasByNs.get(root) ?? []))];
    const pas = keys
      .map((k) => this.#pas.get(k))
      .filter((p): p is PeerAuthenticationObject => p !== undefined);
    const pods = h.podsOf(ns);
    const objKey = `PeerAuthentication/${ns}/*`;
    h.clearNotes(objKey);
    let authorizations: Authorization[] = [];
    let byWorkload = new Map<string, string[]>();
    if (pas.length > 0) {
      try {
        const out = compilePeerAuthentications(
          pas,
          pods.map((p) => ({ uid: p.uid, namespace: ns, labels: p.labels })),
          { rootNamespace: root, trustDomain: h.trustDomain },
        );
        authorizations = out.authorizations;
        byWorkload = out.policiesByWorkload;
        for (const w of out.warnings ?? []) h.note(objKey, w);
      } catch (err) {
        h.note(objKey, `not compiled: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    // Swap this namespace's contribution; a key shared by namespaces (the static STRICT policy) is
    // removed only when no namespace produces it any more.
    const before = this.#paAuthByNs.get(ns) ?? new Set<string>();
    const after = new Set<string>();
    for (const a of authorizations) {
      const k = policyKey(a);
      after.add(k);
      if (!before.has(k)) this.#paAuthRefs.set(k, (this.#paAuthRefs.get(k) ?? 0) + 1);
      h.state.upsertAuthorization(a);
    }
    for (const k of before) {
      if (after.has(k)) continue;
      const n = (this.#paAuthRefs.get(k) ?? 1) - 1;
      if (n > 0) {
        this.#paAuthRefs.set(k, n);
        continue;
      }
      this.#paAuthRefs.delete(k);
      // Never remove a key an AuthorizationPolicy of the same name owns.
      if (!this.#aps.has(k)) h.state.removeAuthorization(k);
    }
    if (after.size > 0) this.#paAuthByNs.set(ns, after);
    else this.#paAuthByNs.delete(ns);
    for (const p of pods) {
      const next = byWorkload.get(p.uid) ?? [];
      const old = this.#paByWorkload.get(p.uid) ?? [];
      if (next.length > 0) this.#paByWorkload.set(p.uid, next);
      else this.#paByWorkload.delete(p.uid);
      if (next.join('\n') !== old.join('\n')) h.markPod(p.key);
    }
  }
}

// The status conditions istiod writes for ambient mode, computed from the mesh state (the writer,
// status-writer.ts, puts them on the objects through the /status subresource). Types, reasons and
// messages follow istio/istio pilot/pkg/model/service.go and
// pilot/pkg/serviceregistry/kube/controller/ambient/policies.go:
//   AuthorizationPolicy without targetRefs  ZtunnelAccepted: True/Accepted "attached to ztunnel"; True/
//       UnsupportedValue when HTTP attributes were omitted (the policy still applies, narrowed); False/
//       UnsupportedValue when ztunnel cannot apply it at all (AUDIT, CUSTOM).
//   AuthorizationPolicy with targetRefs     WaypointAccepted, one per policy (istiod flattens targets):
//       True/Accepted "bound to ns/waypoint"; False/TargetNotFound; False/AncestorNotBound (the Service
//       uses no waypoint); several targets: True/PartiallyInvalid or False/Invalid "Invalid targetRefs: ...".
//   Service                                  istio.io/WaypointBound: True/WaypointAccepted "Successfully
//       attached to waypoint ns/name"; False when istio.io/use-waypoint names no waypoint; removed otherwise.
// Gateways' Accepted/Programmed are the waypoint controller's (controllers/waypoint.ts).
// An AuthorizationPolicy Ambit rejects (istiod's validating webhook would have refused it at admission;
// Ambit installs none, so it reaches the informer) gets the same condition type False with reason
// Invalid and the field and problem: without it the rejection would only be in the logs.
import type { InvalidObjectError } from '../core/sources/schema.js';
import type { AuthorizationPolicyObject } from '../core/sources/schema.js';
import type { Translator } from '../core/sources/translate.js';

export interface Condition {
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export type StatusKind = 'AuthorizationPolicy' | 'Service';

/** What one object's status should say, for the condition types this controller owns on it. */
export interface ObjectStatus {
  kind: StatusKind;
  namespace: string;
  name: string;
  conditions: Condition[];
}

/** The condition types owned per kind: those not in `conditions` are removed (istiod prunes them too). */
export const OWNED_TYPES: Record<StatusKind, readonly string[]> = {
  AuthorizationPolicy: ['ZtunnelAccepted', 'WaypointAccepted'],
  Service: ['istio.io/WaypointBound'],
};

export const statusKey = (s: { kind: string; namespace: string; name: string }): string =>
  `${s.kind}/${s.namespace}/${s.name}`;

interface TargetBinding {
  bound: boolean;
  reason: string;
  message: string;
  ancestor: string;
}

export function desiredStatuses(
  translator: Translator,
  invalid: readonly InvalidObjectError[] = [],
): ObjectStatus[] {
  const state = translator.state;
  const notes = new Map<string, string[]>();
  for (const n of translator.notes()) notes.set(n.object, [...(notes.get(n.object) ?? []), n.message]);
  const waypoints = state.waypoints();
  const waypointByHost = new Map(waypoints.map((w) => [`${w.namespace}/${w.hostname}`, w]));
  const services = new Map(state.services().map((s) => [`${s.namespace}/${s.name}`, s]));
  const l4 = new Set(state.authorizations().map((a) => `${a.namespace}/${a.name}`));
  const out: ObjectStatus[] = [];

  const serviceWaypoint = (key: string) => {
    const s = services.get(key);
    return s?.waypoint ? waypointByHost.get(`${s.waypoint.namespace}/${s.waypoint.hostname}`) : undefined;
  };

  const rejected = new Map<string, InvalidObjectError>();
  for (const e of invalid)
    if (e.location.kind === 'AuthorizationPolicy' && e.location.name)
      rejected.set(`${e.location.namespace ?? 'default'}/${e.location.name}`, e);
  const applied = new Map(
    (translator.objectsOf('AuthorizationPolicy') as AuthorizationPolicyObject[]).map((o) => [
      `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`,
      o,
    ]),
  );
  for (const [key, e] of rejected) {
    const [ns, name] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
    const lastGood = applied.get(key);
    const waypoint =
      e.field.startsWith('spec.targetRef') ||
      (lastGood?.spec?.targetRefs?.length ?? 0) > 0 ||
      !!lastGood?.spec?.targetRef;
    out.push({
      kind: 'AuthorizationPolicy',
      namespace: ns,
      name,
      conditions: [
        {
          type: waypoint ? 'WaypointAccepted' : 'ZtunnelAccepted',
          status: 'False',
          reason: 'Invalid',
          message: `${e.field}: ${e.problem}`,
        },
      ],
    });
  }

  for (const [key, o] of applied) {
    if (rejected.has(key)) continue;
    const ns = o.metadata.namespace ?? 'default';
    const name = o.metadata.name;
    const targetRefs = o.spec?.targetRefs ?? (o.spec?.targetRef ? [o.spec.targetRef] : []);
    if (targetRefs.length === 0) {
      const why = notes.get(`AuthorizationPolicy/${key}`) ?? [];
      const bound = l4.has(key);
      out.push({
        kind: 'AuthorizationPolicy',
        namespace: ns,
        name,
        conditions: [
          {
            type: 'ZtunnelAccepted',
            status: bound ? 'True' : 'False',
            reason: why.length > 0 ? 'UnsupportedValue' : 'Accepted',
            message: why.length > 0 ? why.join('; ') : 'attached to ztunnel',
          },
        ],
      });
      continue;
    }
    const bindings: TargetBinding[] = targetRefs.map((t) => {
      const tns = t.namespace || ns;
      const tkey = `${tns}/${t.name}`;
      const ancestor = `${t.kind}.${t.group || 'core'}:${tkey}`;
      if (t.kind === 'Gateway') {
        const w = waypoints.find((x) => x.namespace === tns && x.name === t.name);
        return w
          ? { bound: true, reason: 'Accepted', message: `bound to ${tkey}`, ancestor }
          : { bound: false, reason: 'TargetNotFound', message: 'not bound', ancestor };
      }
      if (t.kind === 'Service' || t.kind === 'ServiceEntry') {
        if (!services.has(tkey))
          return {
            bound: false,
            reason: 'TargetNotFound',
            message: `${t.kind} ${tkey} was not found`,
            ancestor,
          };
        const w = serviceWaypoint(tkey);
        return w
          ? { bound: true, reason: 'Accepted', message: `bound to ${w.namespace}/${w.name}`, ancestor }
          : {
              bound: false,
              reason: 'AncestorNotBound',
              message: `${t.kind} ${tkey} is not bound to a waypoint`,
              ancestor,
            };
      }
      return { bound: false, reason: 'unknown', message: 'not bound', ancestor };
    });
    out.push({
      kind: 'AuthorizationPolicy',
      namespace: ns,
      name,
      conditions: [{ type: 'WaypointAccepted', ...flatten(bindings) }],
    });
  }

  for (const s of state.services()) {
    const label = s.labels['istio.io/use-waypoint'];
    const w = serviceWaypoint(`${s.namespace}/${s.name}`);
    const conditions: Condition[] = [];
    if (w) {
      conditions.push({
        type: 'istio.io/WaypointBound',
        status: 'True',
        reason: 'WaypointAccepted',
        message: `Successfully attached to waypoint ${w.namespace}/${w.name}`,
      });
    } else if (s.waypoint || (label && label !== 'none')) {
      conditions.push({
        type: 'istio.io/WaypointBound',
        status: 'False',
        reason: 'WaypointNotFound',
        message: `istio.io/use-waypoint names ${s.waypoint?.hostname ?? label}, which is no waypoint Gateway`,
      });
    }
    out.push({ kind: 'Service', namespace: s.namespace, name: s.name, conditions });
  }
  return out;
}

/** One WaypointAccepted from every target's binding, as istiod's flattenConditions does. */
function flatten(bs: TargetBinding[]): Omit<Condition, 'type'> {
  if (bs.length === 1) {
    const b = bs[0]!;
    return { status: b.bound ? 'True' : 'False', reason: b.reason, message: b.message };
  }
  const unbound = bs.filter((b) => !b.bound).map((b) => b.ancestor);
  const any = bs.some((b) => b.bound);
  return {
    status: any ? 'True' : 'False',
    reason: any ? (unbound.length > 0 ? 'PartiallyInvalid' : 'Accepted') : 'Invalid',
    message: unbound.length > 0 ? `Invalid targetRefs: ${unbound.join(', ')}` : '',
  };
}

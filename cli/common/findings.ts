// What the mesh made of each object, as the status conditions Istio writes (embedded mode has no API
// server to write them to, so `ambit status`, `ambit state` and the flow view show them):
//   AuthorizationPolicy  ZtunnelAccepted (False/UnsupportedValue when a rule was dropped or narrowed to
//                        fit L4), WaypointAccepted (targetRefs policies: is the target bound to a waypoint)
//   Service              istio.io/WaypointBound (its istio.io/use-waypoint names an existing waypoint)
// plus every rejected manifest (file, object, field) as `Invalid`.
import type { MeshState } from '../../core/state/state.js';

export interface Finding {
  /** `Kind ns/name`, or the file for a manifest that did not parse. */
  object: string;
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
}

const nn = (o: { namespace: string; name: string }) => `${o.namespace}/${o.name}`;

/** Conditions worth showing: every False one (something is not as written) — True ones are quiet. */
export function meshFindings(state: MeshState, manifestErrors: string[]): Finding[] {
  const out: Finding[] = manifestErrors.map((text) => {
    // `file: document N Kind ns/name: field: problem` (core/sources/schema.ts formatLocation).
    const m = /^([^:]+\.ya?ml):\s*(.*)$/s.exec(text);
    return {
      object: m?.[1] ?? 'manifest',
      type: 'Accepted',
      status: 'False' as const,
      reason: 'Invalid',
      message: m?.[2] ?? text,
    };
  });
  for (const a of state.authorizations()) {
    for (const n of a.notes) {
      if (n.kind === 'warning') continue;
      out.push({
        object: `AuthorizationPolicy ${nn(a)}`,
        type: 'ZtunnelAccepted',
        status: 'False',
        reason: 'UnsupportedValue',
        message: `rule ${n.rule}: ${n.message}${n.fields.length ? ` (${n.fields.join(', ')})` : ''}`,
      });
    }
  }
  const waypoints = new Set(state.waypoints().map((w) => `${w.namespace}/${w.hostname}`));
  const waypointByName = new Set(state.waypoints().map((w) => nn(w)));
  for (const s of state.services()) {
    if (!s.waypoint && !s.labels['istio.io/use-waypoint']) continue;
    const bound = s.waypoint && waypoints.has(`${s.waypoint.namespace}/${s.waypoint.hostname}`);
    if (!bound) {
      out.push({
        object: `Service ${nn(s)}`,
        type: 'istio.io/WaypointBound',
        status: 'False',
        reason: 'WaypointNotFound',
        message: `istio.io/use-waypoint names ${s.waypoint?.hostname ?? s.labels['istio.io/use-waypoint']}, which is no waypoint Gateway`,
      });
    }
  }
  for (const p of state.l7Policies()) {
    for (const t of p.targetRefs) {
      if (t.kind === 'Gateway') {
        if (!waypointByName.has(`${p.namespace}/${t.name}`)) {
          out.push({
            object: `AuthorizationPolicy ${nn(p)}`,
            type: 'WaypointAccepted',
            status: 'False',
            reason: 'TargetNotFound',
            message: `targetRefs Gateway ${t.name}: no such waypoint in ${p.namespace}; nothing enforces this policy`,
          });
        }
        continue;
      }
      if (t.kind !== 'Service' && t.kind !== 'ServiceEntry') continue;
      const svc = state.services().find((s) => s.namespace === p.namespace && s.name === t.name);
      if (!svc?.waypoint) {
        out.push({
          object: `AuthorizationPolicy ${nn(p)}`,
          type: 'WaypointAccepted',
          status: 'False',
          reason: svc ? 'NotBound' : 'TargetNotFound',
          message: svc
            ? `targetRefs ${t.kind} ${t.name} uses no waypoint (label istio.io/use-waypoint): nothing enforces this policy`
            : `targetRefs ${t.kind} ${t.name}: no such object in ${p.namespace}`,
        });
      }
    }
  }
  return out;
}

// Which Istio Telemetry resources apply to a waypoint, and the tracing settings they add up to. Istio's
// precedence (istio.io "Telemetry API" > "Workload selection" / "Scope, inheritance, and overrides"): the
// root namespace's resource without selector applies mesh-wide, a namespace's resource without selector
// overrides it for that namespace, and one that selects the proxy (targetRefs naming its Gateway, or a
// selector matching its pod's labels) overrides both; each level overrides only the fields it sets.
import type { TelemetryTracing } from '../state/model.js';
import { GATEWAY_NAME_LABEL } from '../state/enrollment.js';

export interface ResolvedTracing {
  randomSamplingPercentage?: number;
  disableSpanReporting?: boolean;
  providers?: string[];
  /** namespace/name of the resources that contributed, most general first (for admin/debug output). */
  from: string[];
}

export function tracingForWaypoint(
  telemetries: readonly TelemetryTracing[],
  waypoint: { namespace: string; name: string },
  rootNamespace: string,
): ResolvedTracing {
  const unscoped = (t: TelemetryTracing) => !t.selector && !t.targetRefs;
  // The labels Istio's (and Ambit's) waypoint pods carry.
  const podLabels: Record<string, string> = { [GATEWAY_NAME_LABEL]: waypoint.name };
  const selects = (t: TelemetryTracing): boolean =>
    t.namespace === waypoint.namespace &&
    ((t.targetRefs?.some((r) => r.kind === 'Gateway' && r.name === waypoint.name) ?? false) ||
      (t.selector !== undefined && Object.entries(t.selector).every(([k, v]) => podLabels[k] === v)));
  const byName = (a: TelemetryTracing, b: TelemetryTracing) => a.name.localeCompare(b.name);
  const levels = [
    telemetries.filter((t) => t.namespace === rootNamespace && unscoped(t)).sort(byName),
    waypoint.namespace === rootNamespace
      ? []
      : telemetries.filter((t) => t.namespace === waypoint.namespace && unscoped(t)).sort(byName),
    telemetries.filter(selects).sort(byName),
  ];
  const out: ResolvedTracing = { from: [] };
  for (const level of levels) {
    // Istio uses one resource per level (the oldest); by name is the deterministic stand-in here.
    const t = level[0];
    if (!t) continue;
    out.from.push(`${t.namespace}/${t.name}`);
    if (t.randomSamplingPercentage !== undefined) out.randomSamplingPercentage = t.randomSamplingPercentage;
    if (t.disableSpanReporting !== undefined) out.disableSpanReporting = t.disableSpanReporting;
    if (t.providers !== undefined) out.providers = t.providers;
  }
  return out;
}

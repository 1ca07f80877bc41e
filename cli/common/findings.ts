// What the mesh made of each object, as the status conditions Istio writes (computed once, in
// discovery/status-conditions.ts, which the Kubernetes status writer also uses). Embedded mode has no
// API server to write them to, so `ambit status`, `ambit state` and the flow view show the ones that
// say something is not as written: every False condition, and a True one with reason UnsupportedValue
// or PartiallyInvalid (istiod's "accepted, but narrowed": an AuthorizationPolicy whose HTTP rules were
// omitted at ztunnel) — plus every rejected manifest (file, object, field) as `Accepted=False Invalid`.
import type { Translator } from '../../core/sources/translate.js';
import { desiredStatuses } from '../../discovery/status-conditions.js';

export interface Finding {
  /** `Kind ns/name`, or the file for a manifest that did not parse. */
  object: string;
  type: string;
  status: 'True' | 'False';
  reason: string;
  message: string;
}

const NARROWED = new Set(['UnsupportedValue', 'PartiallyInvalid']);

export function meshFindings(translator: Translator, manifestErrors: string[]): Finding[] {
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
  for (const s of desiredStatuses(translator)) {
    for (const c of s.conditions) {
      if (c.status === 'True' && !NARROWED.has(c.reason)) continue;
      out.push({ object: `${s.kind} ${s.namespace}/${s.name}`, ...c });
    }
  }
  return out;
}

// Istio's Telemetry API (telemetry.istio.io/v1 Telemetry), the part Ambit reads: `tracing[]` with
// `randomSamplingPercentage`, `disableSpanReporting` and `providers[].name`, scoped like Istio scopes it —
// root namespace = mesh-wide, a namespace's Telemetry without selector = that namespace, `targetRefs` (a
// Gateway, e.g. a waypoint) or `selector` = those proxies (istio.io reference "Telemetry", "Tracing").
// Access-log and metrics overrides are accepted and ignored (Ambit's are not configurable that way yet).
import { z } from 'zod/v4';
import { labelMap } from './schema-istio.js';

export const TELEMETRY_VERSIONS = ['telemetry.istio.io/v1', 'telemetry.istio.io/v1alpha1'] as const;

const percent = z.number().min(0, 'must be 0..100').max(100, 'must be 0..100');

export const telemetrySpec = z
  .object({
    selector: z.object({ matchLabels: labelMap.optional() }).passthrough().optional(),
    targetRefs: z
      .array(z.object({ group: z.string().optional(), kind: z.string(), name: z.string() }).passthrough())
      .optional(),
    tracing: z
      .array(
        z
          .object({
            providers: z.array(z.object({ name: z.string() }).passthrough()).optional(),
            randomSamplingPercentage: percent.optional(),
            disableSpanReporting: z.boolean().optional(),
          })
          .passthrough(),
      )
      .optional(),
  })
  .passthrough();

export type TelemetrySpec = z.infer<typeof telemetrySpec>;

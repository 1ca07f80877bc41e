import { describe, expect, it } from 'vitest';
import type { TelemetryTracing } from '../state/model.js';
import { tracingForWaypoint } from './telemetry-api.js';

const wp = { namespace: 'shop', name: 'waypoint' };
const t = (namespace: string, name: string, extra: Partial<TelemetryTracing>): TelemetryTracing => ({
  namespace,
  name,
  ...extra,
});

describe('Istio Telemetry API tracing for a waypoint', () => {
  it('is empty when no Telemetry applies (the configured default is used)', () => {
    expect(
      tracingForWaypoint([t('other', 'x', { randomSamplingPercentage: 50 })], wp, 'istio-system'),
    ).toEqual({
      from: [],
    });
  });

  it('mesh-wide < namespace < the one selecting the waypoint, field by field', () => {
    const all = [
      t('istio-system', 'mesh-default', { randomSamplingPercentage: 1, providers: ['otel'] }),
      t('shop', 'ns', { randomSamplingPercentage: 10 }),
      t('shop', 'for-waypoint', {
        targetRefs: [{ kind: 'Gateway', name: 'waypoint' }],
        randomSamplingPercentage: 100,
      }),
      t('shop', 'for-other', {
        targetRefs: [{ kind: 'Gateway', name: 'other' }],
        randomSamplingPercentage: 0,
      }),
      t('shop', 'selects-app', { selector: { app: 'web' }, disableSpanReporting: true }),
    ];
    expect(tracingForWaypoint(all, wp, 'istio-system')).toEqual({
      randomSamplingPercentage: 100,
      providers: ['otel'],
      from: ['istio-system/mesh-default', 'shop/ns', 'shop/for-waypoint'],
    });
    expect(tracingForWaypoint(all.slice(0, 2), wp, 'istio-system').randomSamplingPercentage).toBe(10);
    expect(tracingForWaypoint(all.slice(0, 1), wp, 'istio-system').randomSamplingPercentage).toBe(1);
  });

  it("a selector matching the waypoint pod's gateway-name label selects it", () => {
    const sel = t('shop', 'sel', {
      selector: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' },
      disableSpanReporting: true,
    });
    expect(tracingForWaypoint([sel], wp, 'istio-system').disableSpanReporting).toBe(true);
    expect(tracingForWaypoint([sel], { namespace: 'shop', name: 'w2' }, 'istio-system').from).toEqual([]);
  });
});

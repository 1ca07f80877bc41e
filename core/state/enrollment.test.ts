import { describe, expect, it } from 'vitest';
import { bindWaypoint, enrollmentOf, isEnrolled, requestedWaypoint, waypointForOf } from './enrollment.js';

const AMBIENT = { 'istio.io/dataplane-mode': 'ambient' };
const NONE = { 'istio.io/dataplane-mode': 'none' };

describe('enrollment (istio-cni ambient selector)', () => {
  it('enrolls a pod labelled ambient in an unlabelled namespace', () => {
    expect(enrollmentOf({ namespace: 'a', labels: AMBIENT }, {})).toEqual({
      enrolled: true,
      reason: 'pod label istio.io/dataplane-mode=ambient',
    });
  });
  it('enrolls an unlabelled pod in an ambient namespace', () => {
    expect(isEnrolled({ namespace: 'a', labels: { app: 'x' } }, AMBIENT)).toBe(true);
  });
  it('lets a pod labelled none opt out of an ambient namespace', () => {
    const d = enrollmentOf({ namespace: 'a', labels: NONE }, AMBIENT);
    expect(d.enrolled).toBe(false);
    expect(d.reason).toContain('=none');
  });
  it('does not enroll when neither pod nor namespace says ambient', () => {
    expect(isEnrolled({ namespace: 'a' }, undefined)).toBe(false);
    expect(isEnrolled({ namespace: 'a', labels: { 'istio.io/dataplane-mode': 'sidecar' } }, {})).toBe(false);
  });
  it('never enrolls a host-network pod, even if labelled ambient', () => {
    const d = enrollmentOf({ namespace: 'a', labels: AMBIENT, hostNetwork: true }, AMBIENT);
    expect(d).toEqual({ enrolled: false, reason: 'host-network pod' });
  });
  it("never enrolls the mesh's own pods (waypoint, ztunnel, sidecar)", () => {
    expect(
      isEnrolled(
        { namespace: 'a', labels: { ...AMBIENT, 'gateway.networking.k8s.io/gateway-name': 'w' } },
        AMBIENT,
      ),
    ).toBe(false);
    expect(isEnrolled({ namespace: 'istio-system', labels: { app: 'ztunnel' } }, AMBIENT)).toBe(false);
    expect(
      isEnrolled(
        { namespace: 'a', labels: AMBIENT, annotations: { 'sidecar.istio.io/status': '{}' } },
        AMBIENT,
      ),
    ).toBe(false);
  });
  it('never enrolls pods in kube-system (istio-cni excludeNamespaces default)', () => {
    expect(isEnrolled({ namespace: 'kube-system', labels: AMBIENT }, AMBIENT)).toBe(false);
    expect(isEnrolled({ namespace: 'kube-system', labels: AMBIENT }, AMBIENT, [])).toBe(true);
  });
});

describe('use-waypoint precedence', () => {
  it('uses the object label over the namespace label', () => {
    expect(
      requestedWaypoint('ns', { 'istio.io/use-waypoint': 'mine' }, { 'istio.io/use-waypoint': 'theirs' }),
    ).toEqual({ name: 'mine', namespace: 'ns', from: 'object' });
  });
  it('inherits the namespace label when the object has none', () => {
    expect(requestedWaypoint('ns', {}, { 'istio.io/use-waypoint': 'theirs' })).toEqual({
      name: 'theirs',
      namespace: 'ns',
      from: 'namespace',
    });
  });
  it('opts out with none on the object even when the namespace names a waypoint', () => {
    expect(
      requestedWaypoint('ns', { 'istio.io/use-waypoint': 'none' }, { 'istio.io/use-waypoint': 'theirs' }),
    ).toBeUndefined();
  });
  it('treats none on the namespace as no waypoint', () => {
    expect(requestedWaypoint('ns', undefined, { 'istio.io/use-waypoint': 'none' })).toBeUndefined();
  });
  it('returns nothing when no label is set anywhere', () => {
    expect(requestedWaypoint('ns', {}, {})).toBeUndefined();
  });
  it('reads use-waypoint-namespace from the same object as the name', () => {
    expect(
      requestedWaypoint(
        'app',
        { 'istio.io/use-waypoint': 'w', 'istio.io/use-waypoint-namespace': 'infra' },
        { 'istio.io/use-waypoint': 'x', 'istio.io/use-waypoint-namespace': 'other' },
      ),
    ).toEqual({ name: 'w', namespace: 'infra', from: 'object' });
    expect(
      requestedWaypoint(
        'app',
        {},
        { 'istio.io/use-waypoint': 'x', 'istio.io/use-waypoint-namespace': 'other' },
      ),
    ).toEqual({ name: 'x', namespace: 'other', from: 'namespace' });
  });
});

describe('waypoint-for decides whether a binding applies', () => {
  const gw = (waypointFor: 'service' | 'workload' | 'all' | 'none') => () => ({ waypointFor });
  const explicit = { name: 'w', namespace: 'ns', from: 'object' as const };
  const inherited = { name: 'w', namespace: 'ns', from: 'namespace' as const };

  it('defaults waypoint-for to service', () => {
    expect(waypointForOf(undefined)).toBe('service');
    expect(waypointForOf({ 'istio.io/waypoint-for': 'bogus' })).toBe('service');
    expect(waypointForOf({ 'istio.io/waypoint-for': 'all' })).toBe('all');
  });
  it.each([
    ['service', 'service', true],
    ['service', 'all', true],
    ['service', 'workload', false],
    ['service', 'none', false],
    ['workload', 'workload', true],
    ['workload', 'all', true],
    ['workload', 'service', false],
    ['workload', 'none', false],
  ] as const)('a %s bound to a %s waypoint applies: %s', (target, wpFor, applies) => {
    const b = bindWaypoint(target, explicit, gw(wpFor));
    expect(b.waypoint !== undefined).toBe(applies);
    if (!applies) expect(b.problem).toContain(`is for ${wpFor} traffic, not ${target} traffic`);
  });
  it('silently ignores a service-only waypoint inherited from the namespace for workloads', () => {
    expect(bindWaypoint('workload', inherited, gw('service'))).toEqual({});
    expect(bindWaypoint('service', inherited, gw('service'))).toEqual({
      waypoint: { name: 'w', namespace: 'ns' },
    });
  });
  it('reports a missing waypoint and binds nothing', () => {
    expect(bindWaypoint('service', explicit, () => undefined)).toEqual({
      problem: 'waypoint ns/w not found',
    });
  });
  it('reports a waypoint that refuses the namespace and binds nothing', () => {
    expect(
      bindWaypoint('service', explicit, () => ({
        waypointFor: 'all',
        refuses: 'does not allow namespace x',
      })),
    ).toEqual({
      problem: 'waypoint ns/w does not allow namespace x',
    });
  });
  it('binds nothing when nothing was requested', () => {
    expect(bindWaypoint('service', undefined, gw('all'))).toEqual({});
  });
});

import { describe, expect, it } from 'vitest';
import { parseManifestText } from '../core/sources/manifests.js';
import { Translator } from '../core/sources/translate.js';
import { GatewayManifestError, gatewayManifestYaml } from './gateway-manifest.js';

describe('waypoint Gateway manifest (istioctl waypoint apply)', () => {
  it('writes gatewayClassName istio-waypoint, listener mesh/15008/HBONE and istio.io/waypoint-for', () => {
    const text = gatewayManifestYaml({ name: 'waypoint', namespace: 'demo', waypointFor: 'service' });
    expect(text).toBe(`apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  labels:
    istio.io/waypoint-for: service
  name: waypoint
  namespace: demo
spec:
  gatewayClassName: istio-waypoint
  listeners:
    - name: mesh
      port: 15008
      protocol: HBONE
`);
  });

  it('is read back by the manifest source as a waypoint of the requested traffic type', () => {
    const parsed = parseManifestText(
      'gw.yaml',
      gatewayManifestYaml({ name: 'wp', namespace: 'shop', waypointFor: 'all' }),
    );
    expect(parsed.errors).toEqual([]);
    const t = new Translator();
    for (const g of parsed.good.values()) t.apply(g.object);
    expect(t.state.waypointByKey('shop/wp')).toMatchObject({
      name: 'wp',
      namespace: 'shop',
      waypointFor: 'all',
    });
  });

  it('rejects a bad traffic type or name with a message naming the flag', () => {
    expect(() => gatewayManifestYaml({ name: 'wp', namespace: 'shop', waypointFor: 'everything' })).toThrow(
      GatewayManifestError,
    );
    expect(() => gatewayManifestYaml({ name: 'Bad_Name', namespace: 'shop', waypointFor: 'all' })).toThrow(
      /--name/,
    );
  });
});

import { describe, expect, it } from 'vitest';
import { realisticPod, realisticService, realisticSlice } from '../../test/scale-objects.js';
import { type MeshKind, type MeshObject, validateObject } from './schema.js';
import { stripObject } from './strip.js';
import { Translator } from './translate.js';

function valid(raw: Record<string, unknown>): MeshObject {
  const v = validateObject(structuredClone(raw));
  if (!v.ok) throw new Error(v.ignored ? v.reason : v.error.message);
  return v.object;
}

const stripped = (raw: Record<string, unknown>) =>
  valid(stripObject(raw.kind as MeshKind, structuredClone(raw)));

/** A realistic slice of a cluster: namespace, 20 pods (one Pending), 4 Services and their slices, policies. */
function cluster(): Record<string, unknown>[] {
  const objects: Record<string, unknown>[] = [
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: 'ns-0',
        labels: { 'istio.io/dataplane-mode': 'ambient' },
        managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
      },
    },
  ];
  for (let i = 0; i < 20; i++) objects.push(realisticPod(i, i === 7 ? 'Pending' : 'Running'));
  // A pod with an injected sidecar (never captured) and one on the host network.
  const sidecar = realisticPod(20) as { metadata: { annotations: Record<string, string> } };
  sidecar.metadata.annotations['sidecar.istio.io/status'] = '{"containers":["istio-proxy"]}';
  objects.push(sidecar);
  const host = realisticPod(21) as { spec: { hostNetwork?: boolean } };
  host.spec.hostNetwork = true;
  objects.push(host);
  for (let s = 0; s < 4; s++) objects.push(realisticService(s), realisticSlice(s, 20));
  objects.push({
    apiVersion: 'security.istio.io/v1',
    kind: 'AuthorizationPolicy',
    metadata: {
      name: 'dry',
      namespace: 'ns-0',
      annotations: {
        'istio.io/dry-run': 'true',
        'kubectl.kubernetes.io/last-applied-configuration': '{"huge":"copy"}',
      },
      managedFields: [{ manager: 'kubectl' }],
    },
    spec: {
      selector: { matchLabels: { app: 'svc-1' } },
      action: 'DENY',
      rules: [{ from: [{ source: { namespaces: ['x'] } }] }],
    },
  });
  objects.push({
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'wp', namespace: 'ns-0', managedFields: [{ manager: 'istiod' }] },
    spec: {
      gatewayClassName: 'istio-waypoint',
      listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }],
    },
    status: {
      addresses: [{ type: 'IPAddress', value: '10.96.200.1' }],
      conditions: [{ type: 'Programmed', status: 'True', message: 'long text' }],
    },
  });
  return objects;
}

describe('stripObject', () => {
  it('keeps of a 7 KB Pod only what the translation reads', () => {
    const raw = realisticPod(3);
    expect(JSON.stringify(raw).length).toBeGreaterThan(7000);
    const s = stripObject('Pod', structuredClone(raw)) as {
      metadata: Record<string, unknown>;
      spec: Record<string, unknown>;
      status: Record<string, unknown>;
    };
    expect(s.metadata.managedFields).toBeUndefined();
    expect(s.metadata.annotations).toBeUndefined();
    expect(s.metadata.resourceVersion).toBeUndefined();
    expect(s.spec).toEqual({
      nodeName: 'node-3',
      serviceAccountName: 'svc-0',
      serviceAccount: 'svc-0',
      containers: [{ ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }],
    });
    expect(s.status.conditions).toEqual([{ type: 'Ready', status: 'True' }]);
    expect(s.status.containerStatuses).toBeUndefined();
    expect(JSON.stringify(s).length).toBeLessThan(700);
  });

  it('leaves a field of the wrong shape in place, so validation still names it', () => {
    const raw = realisticPod(1) as { status: { podIPs: unknown } };
    raw.status.podIPs = 'not-a-list';
    const v = validateObject(stripObject('Pod', raw as Record<string, unknown>));
    expect(v.ok).toBe(false);
    expect(!v.ok && !v.ignored && v.error.field).toBe('status.podIPs');
  });

  it('translates stripped objects into exactly the state the full objects give', () => {
    const full = new Translator();
    full.applyBatch(cluster().map(valid));
    const slim = new Translator();
    slim.applyBatch(cluster().map(stripped));
    expect(slim.state.snapshot()).toEqual(full.state.snapshot());
    expect(slim.notes()).toEqual(full.notes());
    // Sanity: the state is not trivially empty — pods are workloads, Services have their members.
    const snap = slim.state.snapshot();
    expect(snap.workloads).toHaveLength(22);
    expect(slim.state.workloadsOfService('ns-0/svc-1.ns-0.svc.cluster.local')).toHaveLength(5);
    expect(snap.authorizations.find((a) => a.name === 'dry')?.dryRun).toBe(true);
    // The kept objects carry no managedFields and no last-applied copy.
    const ap = slim.object('AuthorizationPolicy', 'ns-0', 'dry') as unknown as {
      metadata: Record<string, unknown>;
    };
    expect(ap.metadata.managedFields).toBeUndefined();
    expect(Object.keys(ap.metadata.annotations as object)).toEqual(['istio.io/dry-run']);
  });
});

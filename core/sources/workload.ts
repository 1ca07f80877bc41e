// Pod → WDS Workload, the pure parts of the translation (istio/istio
// pilot/pkg/serviceregistry/kube/controller/ambient/workloads.go: podWorkloadBuilder).
import type { PortMapping, Workload } from '../state/model.js';
import type { PodObject, ServiceObject } from './schema.js';

/** istiod: `<cluster>//v1/Pod/<ns>/<name>`, cluster id `Kubernetes` by default. */
export function podUid(clusterId: string, namespace: string, name: string): string {
  return `${clusterId}//v1/Pod/${namespace}/${name}`;
}

export function podAddresses(pod: PodObject): string[] {
  const many = pod.status?.podIPs?.map((p) => p.ip).filter((ip) => ip !== '');
  if (many && many.length > 0) return many;
  return pod.status?.podIP ? [pod.status.podIP] : [];
}

/** Istio's canonical service labels, then the well-known app labels (istio pkg/model labels.go). */
export function canonicalName(labels: Record<string, string>, fallback: string): string {
  return (
    labels['service.istio.io/canonical-name'] || labels['app.kubernetes.io/name'] || labels.app || fallback
  );
}

export function canonicalRevision(labels: Record<string, string>): string {
  return (
    labels['service.istio.io/canonical-revision'] ||
    labels['app.kubernetes.io/version'] ||
    labels.version ||
    'latest'
  );
}

/**
 * Workload name/type from the owner, like istiod's workload name for telemetry: a ReplicaSet created
 * by a Deployment is named `<deployment>-<pod-template-hash>`; a Job created by a CronJob
 * `<cronjob>-<n>`. Without owners the pod is its own workload.
 */
export function workloadNameOf(pod: PodObject): { name: string; type: Workload['workloadType'] } {
  const owners = (
    pod.metadata as { ownerReferences?: { kind?: string; name?: string; controller?: boolean }[] }
  ).ownerReferences;
  const owner = owners?.find((o) => o.controller) ?? owners?.[0];
  if (owner?.name) {
    if (owner.kind === 'ReplicaSet') {
      const hash = pod.metadata.labels?.['pod-template-hash'];
      if (hash && owner.name.endsWith(`-${hash}`))
        return { name: owner.name.slice(0, -(hash.length + 1)), type: 'DEPLOYMENT' };
      return { name: owner.name, type: 'POD' };
    }
    if (owner.kind === 'Job') {
      const m = /^(.*)-\d+$/.exec(owner.name);
      return m?.[1] ? { name: m[1], type: 'CRONJOB' } : { name: owner.name, type: 'JOB' };
    }
  }
  return { name: pod.metadata.name, type: 'POD' };
}

/**
 * Healthy unless Kubernetes says otherwise: a manifest directory usually has no status conditions, so
 * a pod with an IP, not finished, not being deleted and without `Ready=False` serves. An EndpointSlice
 * that lists the pod as not ready also makes it unhealthy (`sliceReady === false`).
 */
export function podStatus(pod: PodObject, sliceReady: boolean | undefined): Workload['status'] {
  if (podAddresses(pod).length === 0) return 'UNHEALTHY';
  if (pod.metadata.deletionTimestamp) return 'UNHEALTHY';
  const phase = pod.status?.phase;
  if (phase === 'Failed' || phase === 'Succeeded') return 'UNHEALTHY';
  const ready = pod.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready && ready.status !== 'True') return 'UNHEALTHY';
  if (sliceReady === false) return 'UNHEALTHY';
  return 'HEALTHY';
}

export function selectorMatches(
  selector: Record<string, string> | undefined,
  labels: Record<string, string>,
): boolean {
  if (!selector) return false;
  const entries = Object.entries(selector);
  // Kubernetes: a Service with an empty selector selects nothing (its endpoints are managed by hand).
  if (entries.length === 0) return false;
  for (const [k, v] of entries) if (labels[k] !== v) return false;
  return true;
}

/** Container port number for a named target port, or undefined when the pod does not declare it. */
export function namedContainerPort(pod: PodObject, name: string): number | undefined {
  for (const c of pod.spec.containers ?? [])
    for (const p of c.ports ?? []) if (p.name === name) return p.containerPort;
  return undefined;
}

/**
 * The per-endpoint service-port → target-port list (WDS PortList). Numeric target ports map directly;
 * named ones come from the EndpointSlice's port of the same name when known, else from the pod's
 * container ports; a name the pod does not declare leaves that port out (Kubernetes does the same).
 */
export function portMappings(
  svc: ServiceObject,
  pod: PodObject,
  slicePorts?: Map<string, number>,
): PortMapping[] {
  const out: PortMapping[] = [];
  for (const p of svc.spec.ports ?? []) {
    let target: number | undefined;
    if (p.targetPort === undefined) target = p.port;
    else if (typeof p.targetPort === 'number') target = p.targetPort;
    else target = slicePorts?.get(p.name ?? '') ?? namedContainerPort(pod, p.targetPort);
    if (target !== undefined) out.push({ servicePort: p.port, targetPort: target });
  }
  return out;
}

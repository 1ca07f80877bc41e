// Objects from the API server cut down to the fields the translation reads (schema.ts, translate.ts,
// workload.ts, service.ts, policies.ts), BEFORE anything keeps them: a real Pod is ~7 KB of JSON,
// half of it managedFields, most of the rest container specs and statuses the mesh never reads; what
// the Translator needs is a few hundred bytes. Cilium does the same with its "slim" types
// (cilium/cilium pkg/k8s/slim) and client-go offers it as an informer transform
// (SharedIndexInformer.SetTransform, used to drop managedFields).
//
// A field of the wrong shape is kept as it came, so validation (schema.ts) still reports it with its
// path; only fields the mesh never reads are dropped. `resourceVersion` is dropped too (the reflector
// keeps it apart): an update that changes only what the mesh ignores — a container restart count, a
// managedFields timestamp — then compares equal in the Translator and costs nothing downstream.
import { SIDECAR_STATUS_ANNOTATION } from '../state/enrollment.js';
import type { MeshKind } from './schema.js';

type Json = Record<string, unknown>;

const isMap = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `obj` with only `keys` (those present); a non-object is returned unchanged for validation to name. */
function pick(obj: unknown, keys: readonly string[]): unknown {
  if (!isMap(obj)) return obj;
  const out: Json = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

/** Each element of a list through `fn`; a non-list is returned unchanged. */
function each(list: unknown, fn: (v: unknown) => unknown): unknown {
  return Array.isArray(list) ? list.map(fn) : list;
}

/** Only the annotations in `keep` (undefined when none is set). */
function annotations(value: unknown, keep: (key: string) => boolean): unknown {
  if (!isMap(value)) return value;
  let out: Json | undefined;
  for (const [k, v] of Object.entries(value))
    if (keep(k)) {
      out ??= {};
      out[k] = v;
    }
  return out;
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/** metadata.name/namespace/labels always; `extra` as the kind needs. Never managedFields. */
function metadata(
  meta: unknown,
  extra: readonly string[],
  keepAnnotation?: (key: string) => boolean,
): unknown {
  const out = pick(meta, ['name', 'namespace', 'labels', ...extra]);
  if (isMap(out) && isMap(meta) && keepAnnotation) {
    const a = annotations(meta.annotations, keepAnnotation);
    if (a !== undefined) out.annotations = a;
  }
  return out;
}

function stripPod(o: Json): Json {
  const spec = o.spec;
  const status = o.status;
  const out: Json = {
    kind: o.kind,
    apiVersion: o.apiVersion,
    metadata: metadata(
      o.metadata,
      ['ownerReferences', 'deletionTimestamp'],
      // enrollment.ts: a pod with an injected sidecar is never captured.
      (k) => k === SIDECAR_STATUS_ANNOTATION,
    ),
  };
  const m = out.metadata;
  if (isMap(m) && Array.isArray(m.ownerReferences))
    m.ownerReferences = m.ownerReferences.map((r) => pick(r, ['kind', 'name', 'controller']));
  if (spec !== undefined) {
    const s = pick(spec, ['nodeName', 'serviceAccountName', 'serviceAccount', 'hostNetwork', 'containers']);
    // Only container ports are read (named target ports); containers without ports are dropped.
    if (isMap(s) && Array.isArray(s.containers)) {
      s.containers = s.containers
        .filter((c) => !isMap(c) || c.ports !== undefined)
        .map((c) => {
          const p = pick(c, ['ports']);
          if (isMap(p)) p.ports = each(p.ports, (port) => pick(port, ['name', 'containerPort', 'protocol']));
          return p;
        });
      if ((s.containers as unknown[]).length === 0) delete s.containers;
    }
    out.spec = s;
  }
  if (status !== undefined) {
    const s = pick(status, ['podIP', 'podIPs', 'phase', 'conditions']);
    if (isMap(s)) {
      s.podIPs = each(s.podIPs, (p) => pick(p, ['ip']));
      // workload.ts podStatus reads the Ready condition only.
      if (Array.isArray(s.conditions))
        s.conditions = s.conditions
          .filter((c) => !isMap(c) || c.type === 'Ready')
          .map((c) => pick(c, ['type', 'status']));
      if (s.podIPs === undefined) delete s.podIPs;
      if (s.conditions === undefined) delete s.conditions;
    }
    out.status = s;
  }
  return out;
}

function stripService(o: Json): Json {
  const out: Json = { kind: o.kind, apiVersion: o.apiVersion, metadata: metadata(o.metadata, []) };
  if (o.spec !== undefined) {
    const s = pick(o.spec, ['selector', 'clusterIP', 'clusterIPs', 'type', 'ports']);
    if (isMap(s))
      s.ports = each(s.ports, (p) => pick(p, ['name', 'port', 'targetPort', 'protocol', 'appProtocol']));
    if (isMap(s) && s.ports === undefined) delete s.ports;
    out.spec = s;
  }
  return out;
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

function stripEndpointSlice(o: Json): Json {
  const meta = metadata(o.metadata, []);
  // translate.ts reads one label of a slice: the Service it belongs to.
  if (isMap(meta) && isMap(meta.labels)) {
    const svc = meta.labels[SERVICE_NAME_LABEL];
    meta.labels = svc === undefined ? {} : { [SERVICE_NAME_LABEL]: svc };
  }
  const out: Json = { kind: o.kind, apiVersion: o.apiVersion, metadata: meta };
  if (o.addressType !== undefined) out.addressType = o.addressType;
  if (o.endpoints !== undefined)
    out.endpoints = each(o.endpoints, (e) => {
      const ep = pick(e, ['addresses', 'conditions', 'targetRef', 'nodeName']);
      if (isMap(ep)) {
        if (ep.conditions !== undefined)
          ep.conditions = pick(ep.conditions, ['ready', 'serving', 'terminating']);
        if (ep.targetRef !== undefined) ep.targetRef = pick(ep.targetRef, ['kind', 'name', 'namespace']);
      }
      return ep;
    });
  if (o.ports !== undefined) out.ports = each(o.ports, (p) => pick(p, ['name', 'port', 'appProtocol']));
  return out;
}

/**
 * Istio and Gateway API resources: few, small, and validated strictly (schema-istio.ts rejects an
 * unknown field in a spec), so the spec is kept whole; metadata loses managedFields and kubectl's
 * last-applied copy, a Gateway keeps only the status addresses it is reachable at.
 */
function stripCustom(o: Json): Json {
  const out: Json = {
    kind: o.kind,
    apiVersion: o.apiVersion,
    // creationTimestamp orders PeerAuthentications (peer-authentication.ts); annotations carry dry-run.
    metadata: metadata(o.metadata, ['creationTimestamp'], (k) => k !== LAST_APPLIED),
  };
  if (o.spec !== undefined) out.spec = o.spec;
  if (o.kind === 'Gateway' && isMap(o.status) && o.status.addresses !== undefined)
    out.status = { addresses: o.status.addresses };
  return out;
}

/** A fresh object holding only what the mesh reads of `raw` (a `kind` the mesh consumes). */
export function stripObject(kind: MeshKind, raw: Record<string, unknown>): Record<string, unknown> {
  switch (kind) {
    case 'Namespace':
      return { kind: raw.kind, apiVersion: raw.apiVersion, metadata: metadata(raw.metadata, []) };
    case 'Pod':
      return stripPod(raw);
    case 'Service':
      return stripService(raw);
    case 'EndpointSlice':
      return stripEndpointSlice(raw);
    default:
      return stripCustom(raw);
  }
}

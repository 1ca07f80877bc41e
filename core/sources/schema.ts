// Validation of the Kubernetes-shaped objects every source feeds the translator, with zod.
// Kubernetes core/discovery/Gateway API objects are validated on the fields we read (other fields pass
// through untouched, since real manifests carry many); Istio security specs are strict (schema-istio.ts).
// A failure names the field path the way kubectl does (`spec.ports[0].port`) and says what is wrong.
import { z } from 'zod/v4';
import type { AuthorizationPolicy, ObjectMeta, PeerAuthentication } from '../policy/istio-api.js';
import { TELEMETRY_VERSIONS, type TelemetrySpec, telemetrySpec } from './schema-telemetry.js';
import {
  authorizationPolicySpec,
  check,
  authorizationPolicyWarnings,
  ISTIO_SECURITY_VERSIONS,
  isIpOrCidr,
  labelMap,
  peerAuthenticationSpec,
} from './schema-istio.js';

const port = z
  .number({ error: 'port must be a number' })
  .int('port must be an integer')
  .superRefine(
    check(
      (p) => p >= 1 && p <= 65535,
      (p) => `port ${p} out of range 1-65535`,
    ),
  );

const ip = z.string().superRefine(
  check(
    (v) => isIpOrCidr(v) && !v.includes('/'),
    (v) => `"${v}" is not an IP address`,
  ),
);

const metadata = z
  .object({
    name: z.string({ error: 'name is required' }).min(1, 'name is empty'),
    namespace: z.string().min(1).optional(),
    labels: labelMap.optional(),
    annotations: labelMap.optional(),
    creationTimestamp: z.union([z.string(), z.date().transform((d) => d.toISOString())]).optional(),
    ownerReferences: z
      .array(
        z
          .object({
            kind: z.string().optional(),
            name: z.string().optional(),
            controller: z.boolean().optional(),
          })
          .passthrough(),
      )
      .optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    deletionTimestamp: z.unknown().optional(),
  })
  .passthrough();

const containerPort = z
  .object({ name: z.string().optional(), containerPort: port, protocol: z.string().optional() })
  .passthrough();

const podSchema = z
  .object({
    metadata,
    spec: z
      .object({
        nodeName: z.string().optional(),
        serviceAccountName: z.string().optional(),
        serviceAccount: z.string().optional(),
        hostNetwork: z.boolean().optional(),
        containers: z
          .array(
            z.object({ name: z.string().optional(), ports: z.array(containerPort).optional() }).passthrough(),
          )
          .optional(),
      })
      .passthrough()
      .default({}),
    status: z
      .object({
        podIP: ip.optional(),
        podIPs: z.array(z.object({ ip }).passthrough()).optional(),
        phase: z.string().optional(),
        conditions: z.array(z.object({ type: z.string(), status: z.string() }).passthrough()).optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();

const servicePort = z
  .object({
    name: z.string().optional(),
    port,
    targetPort: z
      .union([port, z.string().min(1)], { error: 'must be a port number (1-65535) or a container port name' })
      .optional(),
    protocol: z.string().optional(),
    appProtocol: z.string().optional(),
  })
  .passthrough();

const serviceSchema = z
  .object({
    metadata,
    spec: z
      .object({
        selector: labelMap.optional(),
        clusterIP: z
          .string()
          .superRefine(
            check(
              (v) => v === 'None' || v === '' || isIpOrCidr(v),
              (v) => `"${v}" is not an IP address or None`,
            ),
          )
          .optional(),
        clusterIPs: z
          .array(
            z.string().superRefine(
              check(
                (v) => v === 'None' || isIpOrCidr(v),
                (v) => `"${v}" is not an IP address or None`,
              ),
            ),
          )
          .optional(),
        type: z.string().optional(),
        ports: z.array(servicePort).optional(),
      })
      .passthrough()
      .default({}),
  })
  .passthrough();

// Kinds a node may never see (EndpointSlices in manifest mode, Gateway API objects without waypoints,
// and the Istio security specs in schema-istio.ts) build their zod schemas on first use (z.lazy caches
// them): the schemas of every kind held ~2 MB of an idle ztunnel's heap.
const endpointSliceSchema = z.lazy(() =>
  z
    .object({
      metadata: metadata.superRefine((m, ctx) => {
        if (!m.labels?.['kubernetes.io/service-name'])
          ctx.addIssue({
            code: 'custom',
            path: ['labels'],
            message: 'label kubernetes.io/service-name is required (it names the Service)',
            input: m,
          });
      }),
      addressType: z.string().optional(),
      endpoints: z
        .array(
          z
            .object({
              addresses: z.array(ip),
              conditions: z
                .object({
                  ready: z.boolean().nullable().optional(),
                  serving: z.boolean().nullable().optional(),
                  terminating: z.boolean().nullable().optional(),
                })
                .passthrough()
                .optional(),
              targetRef: z
                .object({ kind: z.string().optional(), name: z.string(), namespace: z.string().optional() })
                .passthrough()
                .optional(),
              nodeName: z.string().optional(),
            })
            .passthrough(),
        )
        .nullable()
        .optional(),
      ports: z
        .array(
          z
            .object({
              name: z.string().optional(),
              port: port.optional(),
              appProtocol: z.string().optional(),
            })
            .passthrough(),
        )
        .nullable()
        .optional(),
    })
    .passthrough(),
);

const gatewaySchema = z.lazy(() =>
  z
    .object({
      metadata,
      spec: z
        .object({
          gatewayClassName: z.string().min(1, 'gatewayClassName is empty'),
          listeners: z
            .array(
              z
                .object({
                  name: z.string(),
                  port,
                  protocol: z.string(),
                  allowedRoutes: z
                    .object({
                      namespaces: z
                        .object({
                          from: z.enum(['All', 'Same', 'Selector']).optional(),
                          selector: z.object({ matchLabels: labelMap.optional() }).passthrough().optional(),
                        })
                        .passthrough()
                        .optional(),
                    })
                    .passthrough()
                    .optional(),
                })
                .passthrough(),
            )
            .optional(),
          addresses: z
            .array(z.object({ type: z.string().optional(), value: z.string() }).passthrough())
            .optional(),
        })
        .passthrough(),
      status: z
        .object({
          addresses: z
            .array(z.object({ type: z.string().optional(), value: z.string() }).passthrough())
            .optional(),
        })
        .passthrough()
        .optional(),
    })
    .passthrough(),
);

const routeSchema = z.lazy(() => {
  const parentRef = z
    .object({
      group: z.string().optional(),
      kind: z.string().optional(),
      name: z.string().min(1, 'name is empty'),
      namespace: z.string().optional(),
      port: port.optional(),
      sectionName: z.string().optional(),
    })
    .passthrough();
  return z
    .object({
      metadata,
      spec: z
        .object({
          parentRefs: z.array(parentRef).optional(),
          hostnames: z.array(z.string()).optional(),
          rules: z.array(z.record(z.string(), z.unknown())).optional(),
        })
        .passthrough()
        .default({}),
    })
    .passthrough();
});

const namespaceSchema = z.object({ metadata }).passthrough();

const apSchema = z.object({ metadata, spec: authorizationPolicySpec.default({}) }).passthrough();
const paSchema = z.object({ metadata, spec: peerAuthenticationSpec.default({}) }).passthrough();
const telemetrySchema = z.object({ metadata, spec: telemetrySpec.default({}) }).passthrough();

/** Metadata as the translation reads it (Istio's ObjectMeta plus what GC and deletion need); namespace is filled in (`default`) for namespaced kinds. */
export interface ObjectMetadata extends ObjectMeta {
  deletionTimestamp?: unknown;
  ownerReferences?: { kind?: string; name?: string; controller?: boolean }[];
}

interface Base<K extends string> {
  apiVersion: string;
  kind: K;
  metadata: ObjectMetadata;
}

export interface NamespaceObject extends Base<'Namespace'> {}

export interface PodObject extends Base<'Pod'> {
  spec: {
    nodeName?: string;
    serviceAccountName?: string;
    serviceAccount?: string;
    hostNetwork?: boolean;
    containers?: { name?: string; ports?: { name?: string; containerPort: number; protocol?: string }[] }[];
  };
  status?: {
    podIP?: string;
    podIPs?: { ip: string }[];
    phase?: string;
    conditions?: { type: string; status: string }[];
  };
}

export interface ServiceObject extends Base<'Service'> {
  spec: {
    selector?: Record<string, string>;
    clusterIP?: string;
    clusterIPs?: string[];
    type?: string;
    ports?: {
      name?: string;
      port: number;
      targetPort?: number | string;
      protocol?: string;
      appProtocol?: string;
    }[];
  };
}

export interface EndpointSliceObject extends Base<'EndpointSlice'> {
  addressType?: string;
  endpoints?:
    | {
        addresses: string[];
        conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
        targetRef?: { kind?: string; name: string; namespace?: string };
        nodeName?: string;
      }[]
    | null;
  ports?: { name?: string; port?: number; appProtocol?: string }[] | null;
}

export interface GatewayObject extends Base<'Gateway'> {
  spec: {
    gatewayClassName: string;
    listeners?: {
      name: string;
      port: number;
      protocol: string;
      allowedRoutes?: {
        namespaces?: {
          from?: 'All' | 'Same' | 'Selector';
          selector?: { matchLabels?: Record<string, string> };
        };
      };
    }[];
    addresses?: { type?: string; value: string }[];
  };
  status?: { addresses?: { type?: string; value: string }[] };
}

export interface RouteObject extends Base<'HTTPRoute' | 'GRPCRoute'> {
  spec: {
    parentRefs?: {
      group?: string;
      kind?: string;
      name: string;
      namespace?: string;
      port?: number;
      sectionName?: string;
    }[];
    hostnames?: string[];
    rules?: Record<string, unknown>[];
  };
}

export type AuthorizationPolicyObject = AuthorizationPolicy;
export type PeerAuthenticationObject = PeerAuthentication;
export interface TelemetryObject extends Base<'Telemetry'> {
  spec: TelemetrySpec;
}

/** A validated object of a kind the mesh consumes; metadata.namespace is filled in (default `default`). */
export type MeshObject =
  | NamespaceObject
  | PodObject
  | ServiceObject
  | EndpointSliceObject
  | GatewayObject
  | RouteObject
  | AuthorizationPolicyObject
  | PeerAuthenticationObject
  | TelemetryObject;

export type MeshKind = MeshObject['kind'];

interface KindSpec {
  apiVersions: readonly string[];
  schema: z.ZodType;
  namespaced: boolean;
}

const GATEWAY_VERSIONS = ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'] as const;

export const KINDS: Record<MeshKind, KindSpec> = {
  Namespace: { apiVersions: ['v1'], schema: namespaceSchema, namespaced: false },
  Pod: { apiVersions: ['v1'], schema: podSchema, namespaced: true },
  Service: { apiVersions: ['v1'], schema: serviceSchema, namespaced: true },
  EndpointSlice: { apiVersions: ['discovery.k8s.io/v1'], schema: endpointSliceSchema, namespaced: true },
  AuthorizationPolicy: { apiVersions: ISTIO_SECURITY_VERSIONS, schema: apSchema, namespaced: true },
  PeerAuthentication: { apiVersions: ISTIO_SECURITY_VERSIONS, schema: paSchema, namespaced: true },
  Telemetry: { apiVersions: TELEMETRY_VERSIONS, schema: telemetrySchema, namespaced: true },
  Gateway: { apiVersions: GATEWAY_VERSIONS, schema: gatewaySchema, namespaced: true },
  HTTPRoute: { apiVersions: GATEWAY_VERSIONS, schema: routeSchema, namespaced: true },
  GRPCRoute: {
    apiVersions: [...GATEWAY_VERSIONS, 'gateway.networking.k8s.io/v1alpha2'],
    schema: routeSchema,
    namespaced: true,
  },
};

export const isMeshKind = (kind: unknown): kind is MeshKind =>
  typeof kind === 'string' && Object.hasOwn(KINDS, kind);

/** Where a bad object came from, as much as is known. */
export interface ObjectLocation {
  file?: string;
  /** 1-based position of the document in its file. */
  document?: number;
  /** 0-based index in the `items` of a `kind: List` document (what `kubectl get -o yaml` writes). */
  item?: number;
  kind?: string;
  namespace?: string;
  name?: string;
}

/**
 * A rejected object. The message is one line:
 * `<file>: document <n> <Kind> <ns>/<name>: <field.path>: <what is wrong>`.
 */
export class InvalidObjectError extends Error {
  readonly code = 'INVALID_OBJECT';
  constructor(
    readonly location: ObjectLocation,
    /** Field path like `spec.rules[0].from[0].source.ipBlocks[1]`; `(yaml)` for syntax errors. */
    readonly field: string,
    readonly problem: string,
  ) {
    super(formatLocation(location, field, problem));
    this.name = 'InvalidObjectError';
  }

  /** The one-line message alone, so `${err}` prints what the operator needs. */
  override toString(): string {
    return this.message;
  }
}

export function formatLocation(loc: ObjectLocation, field: string, problem: string): string {
  const parts: string[] = [];
  if (loc.file !== undefined) parts.push(`${loc.file}:`);
  if (loc.document !== undefined) parts.push(`document ${loc.document}`);
  if (loc.item !== undefined) parts.push(`item ${loc.item}`);
  if (loc.kind) parts.push(loc.kind);
  if (loc.name) parts.push(loc.namespace ? `${loc.namespace}/${loc.name}` : loc.name);
  const head = parts.join(' ').replace(/:$/, '');
  const line = `${head}${head ? ': ' : ''}${field ? `${field}: ` : ''}${problem}`;
  return line.replace(/\s*\n\s*/g, ' ');
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'symbol') continue;
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

export type ValidationResult =
  | { ok: true; object: MeshObject; warnings: string[] }
  | { ok: false; ignored: true; reason: string }
  | { ok: false; ignored?: false; error: InvalidObjectError };

function firstIssue(err: z.ZodError): z.core.$ZodIssue {
  let issue = err.issues[0]!;
  // A union failing reports each branch; the first branch's first problem reads best.
  while (issue.code === 'invalid_union' && issue.message === 'Invalid input' && issue.errors[0]?.[0]) {
    const inner = issue.errors[0][0];
    issue = { ...inner, path: [...issue.path, ...inner.path] } as z.core.$ZodIssue;
  }
  return issue;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  if (issue.code === 'unrecognized_keys')
    return `unknown field(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  if (issue.code === 'invalid_type' && valueAt(raw, issue.path) === undefined) return 'is required';
  // zod's default text ("Invalid input: expected …") is shortened; our own messages pass through.
  if (issue.code === 'invalid_type' && issue.message.startsWith('Invalid input'))
    return `expected ${issue.expected}, got ${describeValue(valueAt(raw, issue.path))}`;
  return issue.message;
}

/**
 * Validates one raw object. Kinds the mesh does not consume (Deployments, ConfigMaps, ...) are
 * `ignored`, not errors: a manifest directory is often a whole application.
 */
export function validateObject(raw: unknown, where: ObjectLocation = {}): ValidationResult {
  const fail = (field: string, problem: string, extra: ObjectLocation = {}): ValidationResult => ({
    ok: false,
    error: new InvalidObjectError({ ...where, ...extra }, field, problem),
  });
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    return fail('', 'document is not a mapping');
  const obj = raw as Record<string, unknown>;
  const kind = obj.kind;
  const meta = (obj.metadata ?? {}) as Record<string, unknown>;
  const name = typeof meta.name === 'string' ? meta.name : undefined;
  const loc: ObjectLocation = {
    kind: typeof kind === 'string' ? kind : undefined,
    name,
    namespace: typeof meta.namespace === 'string' ? meta.namespace : undefined,
  };
  if (typeof kind !== 'string' || kind === '') return fail('kind', 'is required', loc);
  if (!isMeshKind(kind)) return { ok: false, ignored: true, reason: `kind ${kind} is not used by the mesh` };
  const spec = KINDS[kind];
  if (!loc.namespace && spec.namespaced) loc.namespace = 'default';
  if (typeof obj.apiVersion !== 'string' || !spec.apiVersions.includes(obj.apiVersion))
    return fail(
      'apiVersion',
      `"${String(obj.apiVersion)}" is not one of ${spec.apiVersions.join(', ')}`,
      loc,
    );
  const parsed = spec.schema.safeParse(obj);
  if (!parsed.success) {
    const issue = firstIssue(parsed.error);
    return fail(formatPath(issue.path), describeIssue(issue, obj), loc);
  }
  const object = parsed.data as MeshObject & { metadata: { namespace?: string } };
  if (spec.namespaced) object.metadata.namespace = loc.namespace ?? 'default';
  else Reflect.deleteProperty(object.metadata, 'namespace');
  const warnings =
    object.kind === 'AuthorizationPolicy'
      ? authorizationPolicyWarnings(object.spec as z.infer<typeof authorizationPolicySpec>)
      : [];
  return { ok: true, object: object as MeshObject, warnings };
}

// The Helm charts, rendered like Helm renders them (test/helm-render: Go text/template + sprig + Helm's
// functions, built offline), for the default values and for a values file that sets every documented
// option. Every rendered object must validate against the Kubernetes OpenAPI schemas, two ways:
//   - kubernetes-models' validators (ajv-compiled from the Kubernetes OpenAPI spec): types, required
//     fields, enums, formats;
//   - strict field names and types from @kubernetes/client-node's models (generated from the same
//     OpenAPI spec), compiled with ajv with additionalProperties:false, so a misspelt or misplaced
//     field fails as `kubectl apply --validate=strict` would.
// values.schema.json (draft-07) is checked with ajv: the defaults and the full values pass, a bad value
// is rejected with a message naming the field.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MANAGED_LABEL, MANAGED_VALUE } from '../controllers/waypoint.js';

const ROOT = join(import.meta.dirname, '..');
const CHARTS = ['ambit-base', 'ambit-ca', 'ambit-ztunnel', 'ambit-bpf-redirect', 'ambit-waypoint-controller'];
const require_ = createRequire(import.meta.url);

type K8sObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  [k: string]: unknown;
};

let workDir: string;
let renderer: string;

beforeAll(() => {
  workDir = mkdtempSync(join(tmpdir(), 'ambit-helm-render-'));
  renderer = join(workDir, 'helm-render');
  try {
    // GOPATH mode against Debian's packaged sources: no module download, no network.
    execFileSync('go', ['build', '-o', renderer, '.'], {
      cwd: join(ROOT, 'test/helm-render'),
      env: {
        ...process.env,
        GO111MODULE: 'off',
        GOPATH: '/usr/share/gocode',
        GOFLAGS: '',
        GOCACHE: process.env.GOCACHE ?? join(tmpdir(), 'ambit-helm-render-gocache'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 240_000,
    });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(
      `cannot build test/helm-render (needs golang-go and golang-github-masterminds-sprig-dev, see .ci/setup): ${e.stderr?.toString() ?? e.message}`,
    );
  }
}, 300_000);

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

interface Rendered {
  objects: { template: string; object: K8sObject }[];
  notes: string;
}

function render(chart: string, valuesFile?: string): Rendered {
  const args = [
    ...(valuesFile ? ['-f', valuesFile] : []),
    '--name',
    'ambit',
    '--namespace',
    'istio-system',
    join(ROOT, 'charts', chart),
  ];
  const out = JSON.parse(execFileSync(renderer, args, { encoding: 'utf8' })) as {
    manifests: { template: string; content: string }[];
    notes: string;
  };
  const objects: Rendered['objects'] = [];
  for (const m of out.manifests) {
    for (const doc of YAML.parseAllDocuments(m.content)) {
      if (doc.errors.length > 0)
        throw new Error(`${m.template}: rendered YAML is invalid: ${doc.errors[0]?.message}`);
      const object = doc.toJS() as K8sObject | null;
      if (object) objects.push({ template: m.template, object });
    }
  }
  return { objects, notes: out.notes };
}

const fullValues = (chart: string) => join(ROOT, 'test/helm-render/values', `${chart}.full.yaml`);

// --- validation against the Kubernetes OpenAPI schemas ----------------------------------------------

/** kubernetes-models' validator for an apiVersion/kind (throws if the model does not exist). */
function modelValidate(o: K8sObject): string[] {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : ['', o.apiVersion];
  const mod = require_(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`) as Record<
    string,
    new (
      d: unknown,
    ) => { validate(): void }
  >;
  const Model = mod[o.kind];
  if (!Model) throw new Error(`no kubernetes-models model for ${o.apiVersion} ${o.kind}`);
  try {
    new Model(o).validate();
    return [];
  } catch (err) {
    return [(err as Error).message];
  }
}

type TypeMapEntry = { name: string; baseName: string; type: string; format: string };
const strictAjv = new Ajv({ allErrors: true, strict: false });
const definitions: Record<string, unknown> = {};

/** JSON Schema for a client-node model type string, fields strict (additionalProperties: false). */
function schemaOf(type: string, format = ''): Record<string, unknown> {
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) return { type: 'array', items: schemaOf(arr[1]!) };
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return { type: 'object', additionalProperties: schemaOf(map[1]!) };
  switch (type) {
    case 'string':
    case 'Date':
      return { type: 'string' };
    case 'number':
      return format.startsWith('int') ? { type: 'integer' } : { type: 'number' };
    case 'boolean':
      return { type: 'boolean' };
    case 'IntOrString':
      return { type: ['string', 'integer'] };
    case 'any':
    case 'object':
      return {};
  }
  const cls = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => TypeMapEntry[] }>)[type];
  if (!cls?.getAttributeTypeMap) return {};
  if (!definitions[type]) {
    definitions[type] = {}; // placeholder against recursion (JSONSchemaProps is recursive)
    const properties: Record<string, unknown> = {};
    for (const a of cls.getAttributeTypeMap()) properties[a.baseName] = schemaOf(a.type, a.format);
    definitions[type] = { type: 'object', additionalProperties: false, properties };
  }
  return { $ref: `#/definitions/${type}` };
}

const strictValidators = new Map<string, ValidateFunction>();
function strictValidate(o: K8sObject): string[] {
  if (o.apiVersion === 'monitoring.coreos.com/v1') return []; // a CRD: checked in modelValidate
  const version = o.apiVersion.split('/').pop()!;
  const className = `${version.charAt(0).toUpperCase()}${version.slice(1)}${o.kind}`;
  let v = strictValidators.get(className);
  if (!v) {
    const root = schemaOf(className);
    if (!('$ref' in root))
      throw new Error(`no @kubernetes/client-node model ${className} for ${o.apiVersion} ${o.kind}`);
    v = strictAjv.compile({ ...root, definitions: { ...definitions } });
    strictValidators.set(className, v);
  }
  if (v(o)) return [];
  return (v.errors ?? []).map((e: ErrorObject) =>
    e.keyword === 'additionalProperties'
      ? `${e.instancePath || '/'}: unknown field "${(e.params as { additionalProperty: string }).additionalProperty}"`
      : `${e.instancePath || '/'}: ${e.message}`,
  );
}

/** Custom resources (Gateway API) have no OpenAPI model here: check what their CRD requires. */
function customResourceValidate(o: K8sObject): string[] {
  if (o.apiVersion === 'gateway.networking.k8s.io/v1' && o.kind === 'GatewayClass')
    return typeof (o.spec as { controllerName?: unknown })?.controllerName === 'string'
      ? []
      : ['spec.controllerName is required'];
  if (o.apiVersion === 'monitoring.coreos.com/v1' && o.kind === 'PodMonitor') return podMonitorValidate(o);
  if (o.apiVersion === 'monitoring.coreos.com/v1' && o.kind === 'PrometheusRule')
    return prometheusRuleValidate(o);
  return [`unexpected custom resource ${o.apiVersion} ${o.kind}`];
}

// The Prometheus Operator's PrometheusRule: the CRD's own schema (@kubernetes-models/prometheus-operator), and
// the shape Prometheus needs (every rule of the chart is an alert with an expression).
function prometheusRuleValidate(o: K8sObject): string[] {
  try {
    new PrometheusRule(o as unknown as ConstructorParameters<typeof PrometheusRule>[0]).validate();
  } catch (err) {
    return [(err as Error).message];
  }
  const groups = (o as { spec?: { groups?: { name?: unknown; rules?: Record<string, unknown>[] }[] } }).spec
    ?.groups;
  if (!Array.isArray(groups) || groups.length === 0) return ['spec.groups must be a non-empty list'];
  return groups.flatMap((g, i) =>
    typeof g.name !== 'string' || !Array.isArray(g.rules)
      ? [`spec.groups[${i}] needs name and rules`]
      : g.rules.flatMap((r, j) =>
          typeof r.alert === 'string' && typeof r.expr === 'string'
            ? []
            : [`spec.groups[${i}].rules[${j}] needs alert and expr`],
        ),
  );
}

// The Prometheus Operator's PodMonitor: @kubernetes-models/prometheus-operator validates against the CRD's own
// OpenAPI schema (types, required spec.selector); CRD schemas accept unknown fields, so the fields used here
// are also checked by name (a misspelt one would be pruned by the API server without a word).
const PODMONITOR_FIELDS: Record<string, string[]> = {
  spec: ['selector', 'namespaceSelector', 'podMetricsEndpoints', 'jobLabel', 'podTargetLabels'],
  endpoint: ['port', 'path', 'interval', 'relabelings', 'scheme', 'scrapeTimeout'],
  relabeling: ['sourceLabels', 'targetLabel', 'regex', 'replacement', 'action', 'separator'],
};
function podMonitorValidate(o: K8sObject): string[] {
  const out: string[] = [];
  try {
    new PodMonitor(o as unknown as ConstructorParameters<typeof PodMonitor>[0]).validate();
  } catch (err) {
    out.push((err as Error).message);
  }
  const unknown = (where: string, v: Record<string, unknown>, allowed: string[]) => {
    for (const k of Object.keys(v)) if (!allowed.includes(k)) out.push(`${where}: unknown field "${k}"`);
  };
  const spec = (o.spec ?? {}) as Record<string, unknown>;
  unknown('spec', spec, PODMONITOR_FIELDS.spec!);
  for (const [i, e] of ((spec.podMetricsEndpoints ?? []) as Record<string, unknown>[]).entries()) {
    unknown(`spec.podMetricsEndpoints[${i}]`, e, PODMONITOR_FIELDS.endpoint!);
    for (const [j, r] of ((e.relabelings ?? []) as Record<string, unknown>[]).entries())
      unknown(`spec.podMetricsEndpoints[${i}].relabelings[${j}]`, r, PODMONITOR_FIELDS.relabeling!);
  }
  return out;
}

function validate(o: K8sObject): string[] {
  if (
    o.apiVersion.startsWith('gateway.networking.k8s.io/') ||
    o.apiVersion.startsWith('monitoring.coreos.com/')
  )
    return customResourceValidate(o);
  return [...modelValidate(o), ...strictValidate(o)];
}

// --- values.schema.json ---------------------------------------------------------------------------

const valuesAjv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const valuesValidators = new Map<string, ValidateFunction>();
function valuesSchema(chart: string): ValidateFunction {
  let v = valuesValidators.get(chart);
  if (!v) {
    v = valuesAjv.compile(
      JSON.parse(readFileSync(join(ROOT, 'charts', chart, 'values.schema.json'), 'utf8')),
    );
    valuesValidators.set(chart, v);
  }
  return v;
}

/** Helm-style one-line message naming the field: `values.image.pullPolicy: must be equal to one of ...`. */
function checkValues(chart: string, values: unknown): string[] {
  const v = valuesSchema(chart);
  if (v(values)) return [];
  return (v.errors ?? []).map((e) => {
    const field = `values${e.instancePath.replaceAll('/', '.')}`;
    if (e.keyword === 'additionalProperties')
      return `${field}: unknown option "${(e.params as { additionalProperty: string }).additionalProperty}"`;
    if (e.keyword === 'enum')
      return `${field}: must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    return `${field}: ${e.message}`;
  });
}

const loadYaml = (p: string) => YAML.parse(readFileSync(p, 'utf8')) as Record<string, unknown>;

/** Leaf option paths (objects descend; lists and scalars and empty maps are leaves). */
function leafPaths(v: unknown, prefix = ''): string[] {
  if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0)
    return Object.entries(v).flatMap(([k, x]) => leafPaths(x, prefix ? `${prefix}.${k}` : k));
  return [prefix];
}

const podSpecs = (r: Rendered) =>
  r.objects
    .filter((x) => x.object.kind === 'Deployment' || x.object.kind === 'DaemonSet')
    .map((x) => ({
      name: x.object.metadata.name,
      spec: (x.object.spec as { template: { spec: k8s.V1PodSpec } }).template.spec,
    }));

// --- tests ----------------------------------------------------------------------------------------

describe('Helm charts', () => {
  for (const chart of CHARTS) {
    describe(chart, () => {
      it('has Chart.yaml, values.yaml, values.schema.json (draft-07), _helpers.tpl and NOTES.txt', () => {
        const files = readdirSync(join(ROOT, 'charts', chart));
        expect(files).toEqual(
          expect.arrayContaining(['Chart.yaml', 'values.yaml', 'values.schema.json', 'templates']),
        );
        expect(readdirSync(join(ROOT, 'charts', chart, 'templates'))).toEqual(
          expect.arrayContaining(['_helpers.tpl', 'NOTES.txt']),
        );
        expect(
          JSON.parse(readFileSync(join(ROOT, 'charts', chart, 'values.schema.json'), 'utf8')).$schema,
        ).toBe('http://json-schema.org/draft-07/schema#');
      });

      it('renders with default values; every object validates against the Kubernetes OpenAPI schemas', () => {
        const r = render(chart);
        expect(r.objects.length).toBeGreaterThan(0);
        for (const { template, object } of r.objects)
          expect(validate(object), `${template}: ${object.kind} ${object.metadata.name}`).toEqual([]);
        expect(r.notes.trim().length).toBeGreaterThan(0);
      });

      it('renders with a values file setting every documented option; every object validates', () => {
        const defaults = loadYaml(join(ROOT, 'charts', chart, 'values.yaml'));
        const full = loadYaml(fullValues(chart));
        // The full file really sets every option values.yaml documents, and passes the schema.
        const missing = leafPaths(defaults).filter(
          (p) => !leafPaths(full).some((f) => f === p || f.startsWith(`${p}.`)),
        );
        expect(missing, 'options not set by the full values file').toEqual([]);
        expect(checkValues(chart, defaults)).toEqual([]);
        expect(checkValues(chart, full)).toEqual([]);
        const r = render(chart, fullValues(chart));
        for (const { template, object } of r.objects)
          expect(validate(object), `${template}: ${object.kind} ${object.metadata.name}`).toEqual([]);
      });
    });
  }

  it('a misspelt or misplaced field in a rendered object fails validation (the check can fail)', () => {
    const dep = render('ambit-ca').objects.find((x) => x.object.kind === 'Deployment')!.object;
    const bad = structuredClone(dep) as K8sObject & {
      spec: { template: { spec: { containers: Record<string, unknown>[] } } };
    };
    bad.spec.template.spec.containers[0]!.imagePullPolicyy = 'Always';
    expect(validate(bad).join('\n')).toContain('unknown field "imagePullPolicyy"');
    const noName = structuredClone(dep) as typeof bad;
    delete noName.spec.template.spec.containers[0]!.name;
    expect(validate(noName).join('\n')).toMatch(/name/);
  });

  it('rejects a bad value through values.schema.json with a message naming the field', () => {
    const values = loadYaml(join(ROOT, 'charts/ambit-ztunnel/values.yaml'));
    expect(
      checkValues('ambit-ztunnel', { ...values, image: { repository: 'x', pullPolicy: 'Sometimes' } }),
    ).toEqual(['values.image.pullPolicy: must be one of Always, IfNotPresent, Never']);
    expect(checkValues('ambit-ca', { replicaCount: 0 })).toEqual(['values.replicaCount: must be >= 1']);
    expect(checkValues('ambit-ca', { defaultCertTTL: 'one day' })[0]).toMatch(
      /^values\.defaultCertTTL: must match pattern/,
    );
    expect(
      checkValues('ambit-waypoint-controller', {
        meshConfig: { pathNormalization: { normalization: 'FULL' } },
      }),
    ).toEqual([
      'values.meshConfig.pathNormalization.normalization: must be one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES',
    ]);
    expect(checkValues('ambit-bpf-redirect', { failopen: true })).toEqual([
      'values: unknown option "failopen"',
    ]);
  });

  it('takes the image from Istio-style hub/tag and global.hub/global.tag; the chart image.* values win', () => {
    const IMAGE_CHARTS = ['ambit-ca', 'ambit-ztunnel', 'ambit-bpf-redirect', 'ambit-waypoint-controller'];
    const imagesOf = (chart: string, values: Record<string, unknown>): string[] => {
      const file = join(workDir, `${chart}.${Object.keys(values).join('-') || 'defaults'}.yaml`);
      writeFileSync(file, YAML.stringify(values));
      expect(
        checkValues(chart, { ...loadYaml(join(ROOT, 'charts', chart, 'values.yaml')), ...values }),
      ).toEqual([]);
      const out: string[] = [];
      for (const { spec } of podSpecs(render(chart, file))) {
        for (const c of spec.containers) {
          out.push(c.image!);
          // The waypoint controller hands its own image to the waypoints it creates.
          for (const a of c.args ?? []) if (a.startsWith('--image=')) out.push(a.slice('--image='.length));
        }
      }
      expect(out.length, chart).toBeGreaterThan(0);
      return [...new Set(out)];
    };
    for (const chart of IMAGE_CHARTS) {
      expect(imagesOf(chart, {}), chart).toEqual(['ambit/ambit:0.1.0']);
      expect(imagesOf(chart, { hub: 'registry.example/istio', tag: '1.24.0' }), chart).toEqual([
        'registry.example/istio/ambit:1.24.0',
      ]);
      expect(imagesOf(chart, { global: { hub: 'localhost:5000/mesh', tag: '0.1.0-rc1' } }), chart).toEqual([
        'localhost:5000/mesh/ambit:0.1.0-rc1',
      ]);
      // The chart's own value beats Istio's, and Istio's top-level value beats global.
      expect(
        imagesOf(chart, { hub: 'h.example/a', global: { hub: 'g.example/b', tag: '2.0.0' } }),
        chart,
      ).toEqual(['h.example/a/ambit:2.0.0']);
      expect(
        imagesOf(chart, {
          hub: 'h.example/a',
          tag: '1.0.0',
          image: { repository: 'own.example/ambit', tag: '3.0.0', pullPolicy: 'IfNotPresent' },
        }),
        chart,
      ).toEqual(['own.example/ambit:3.0.0']);
    }
    expect(checkValues('ambit-ztunnel', { hub: 'Not A Hub!' })[0]).toMatch(
      /^values\.hub: must match pattern/,
    );
    expect(checkValues('ambit-ca', { global: { tag: 'bad tag' } })[0]).toMatch(
      /^values\.global\.tag: must match pattern/,
    );
  });

  it('the bpf-redirect agent is the only privileged pod; it mounts bpffs and the cgroup hierarchy', () => {
    for (const chart of CHARTS) {
      for (const { name, spec } of podSpecs(render(chart, fullValues(chart))).concat(
        podSpecs(render(chart)),
      )) {
        const privileged = spec.containers.some((c) => c.securityContext?.privileged === true);
        expect(privileged, `${chart}/${name}`).toBe(chart === 'ambit-bpf-redirect');
      }
    }
    const agent = podSpecs(render('ambit-bpf-redirect'))[0]!.spec;
    const mounts = agent.containers[0]!.volumeMounts!.map((m) => m.mountPath);
    expect(mounts).toEqual(expect.arrayContaining(['/sys/fs/bpf', '/sys/fs/cgroup']));
    expect(agent.volumes!.find((v) => v.name === 'bpffs')?.hostPath?.path).toBe('/sys/fs/bpf');
  });

  it('ztunnel: DaemonSet in the node netns (where the capture delivers), CA token projected with audience istio-ca, Istio ports, read-only RBAC, not privileged', () => {
    const r = render('ambit-ztunnel');
    const ds = r.objects.find((x) => x.object.kind === 'DaemonSet')!.object as unknown as k8s.V1DaemonSet;
    const pod = ds.spec!.template.spec!;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(pod.containers[0]!.securityContext).toMatchObject({
      privileged: false,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] },
    });
    expect(
      pod.volumes!.find((v) => v.name === 'istio-token')?.projected?.sources?.[0]?.serviceAccountToken
        ?.audience,
    ).toBe('istio-ca');
    expect(pod.containers[0]!.ports!.map((p) => p.containerPort).sort()).toEqual([
      15001, 15006, 15008, 15020, 15021,
    ]);
    // Default: the state comes from the discovery tier over WDS (XDS_ADDRESS = the CA's address, as
    // istiod serves both), so ztunnel gets no API-server role at all.
    expect(pod.containers[0]!.args).toContain('--discovery=istiod.istio-system.svc:15012');
    expect(pod.containers[0]!.args).not.toContain('--kubernetes');
    expect(pod.containers[0]!.env!.find((e) => e.name === 'XDS_ADDRESS')?.value).toBe(
      'istiod.istio-system.svc:15012',
    );
    expect(r.objects.filter((x) => x.object.kind.includes('Role'))).toEqual([]);
    // stateSource=kubernetes: ztunnel watches the API server itself, read-only.
    const kube = render('ambit-ztunnel', fullValues('ambit-ztunnel'));
    const kubePod = (
      kube.objects.find((x) => x.object.kind === 'DaemonSet')!.object as unknown as k8s.V1DaemonSet
    ).spec!.template.spec!;
    expect(kubePod.containers[0]!.args).toContain('--kubernetes');
    expect(kubePod.containers[0]!.args!.some((a) => a.startsWith('--discovery'))).toBe(false);
    const role = kube.objects.find((x) => x.object.kind === 'ClusterRole')!
      .object as unknown as k8s.V1ClusterRole;
    expect(role.rules!.length).toBeGreaterThan(0);
    for (const rule of role.rules ?? [])
      expect(rule.verbs.every((v) => ['get', 'list', 'watch'].includes(v))).toBe(true);
  });

  it("metrics: no PodMonitor by default; when enabled, ztunnel's and the waypoints' select the pods the charts and the controller run, on their metrics port, /stats/prometheus; the proxy containers are named istio-proxy as Istio's dashboards select", () => {
    for (const chart of ['ambit-ztunnel', 'ambit-waypoint-controller'])
      expect(render(chart).objects.filter((x) => x.object.kind === 'PodMonitor')).toEqual([]);

    const zt = render('ambit-ztunnel', fullValues('ambit-ztunnel'));
    const ztMonitor = zt.objects.find((x) => x.object.kind === 'PodMonitor')!.object as unknown as {
      metadata: { labels: Record<string, string> };
      spec: {
        selector: { matchLabels: Record<string, string> };
        podMetricsEndpoints: { port: string; path: string; interval: string }[];
      };
    };
    const ds = zt.objects.find((x) => x.object.kind === 'DaemonSet')!.object as unknown as k8s.V1DaemonSet;
    const podLabels = ds.spec!.template.metadata!.labels!;
    for (const [k, v] of Object.entries(ztMonitor.spec.selector.matchLabels)) expect(podLabels[k]).toBe(v);
    expect(podLabels.app).toBe('ztunnel');
    expect(ztMonitor.metadata.labels.release).toBe('prometheus');
    const ztEndpoint = ztMonitor.spec.podMetricsEndpoints[0]!;
    expect(ztEndpoint).toMatchObject({ path: '/stats/prometheus', interval: '30s' });
    const ztContainer = ds.spec!.template.spec!.containers[0]!;
    expect(ztContainer.name).toBe('istio-proxy');
    expect(ztContainer.ports!.find((p) => p.name === ztEndpoint.port)?.containerPort).toBe(15020);
    expect(ds.metadata!.name).toMatch(/^ztunnel$/); // pods ztunnel-<hash>: the dashboards' pod=~"ztunnel-.*"

    const wc = render('ambit-waypoint-controller', fullValues('ambit-waypoint-controller'));
    const wpMonitor = wc.objects.find((x) => x.object.kind === 'PodMonitor')!.object as unknown as {
      spec: {
        namespaceSelector: { any: boolean };
        selector: { matchLabels: Record<string, string> };
        podMetricsEndpoints: { port: string; path: string }[];
      };
    };
    expect(wpMonitor.spec.namespaceSelector.any).toBe(true);
    const controller = podSpecs(wc)[0]!.spec.containers[0]!;
    expect(controller.args).toContain(
      '--waypoint-tracing-endpoint=http://otel-collector.observability:4318/v1/traces',
    );
    expect(
      podSpecs(render('ambit-waypoint-controller'))[0]!.spec.containers[0]!.args!.join(' '),
    ).not.toContain('tracing');
    // meshConfig.pathNormalization reaches every waypoint through the controller; Istio's default is BASE.
    expect(controller.args).toContain('--waypoint-path-normalization=DECODE_AND_MERGE_SLASHES');
    expect(podSpecs(render('ambit-waypoint-controller'))[0]!.spec.containers[0]!.args).toContain(
      '--waypoint-path-normalization=BASE',
    );
    // The labels controllers/waypoint.ts puts on every waypoint pod, whose container port `metrics` is 15020.
    expect(wpMonitor.spec.selector.matchLabels).toEqual({ [MANAGED_LABEL]: MANAGED_VALUE });
    expect(wpMonitor.spec.podMetricsEndpoints[0]).toMatchObject({
      port: 'metrics',
      path: '/stats/prometheus',
    });
  });

  it('CRDs are kept on uninstall and skipped when they already exist (lookup)', () => {
    const r = render('ambit-base');
    const crds = r.objects.filter((x) => x.object.kind === 'CustomResourceDefinition').map((x) => x.object);
    expect(crds.map((c) => c.metadata.name).sort()).toEqual([
      'authorizationpolicies.security.istio.io',
      'peerauthentications.security.istio.io',
    ]);
    for (const c of crds) expect(c.metadata.annotations?.['helm.sh/resource-policy']).toBe('keep');
    const tpl = readFileSync(join(ROOT, 'charts/ambit-base/templates/crd-istio-security.yaml'), 'utf8');
    expect(tpl).toContain(
      'if not (lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" "authorizationpolicies.security.istio.io")',
    );
    const withGateway = render('ambit-base', fullValues('ambit-base')).objects.map(
      (x) => x.object.metadata.name,
    );
    expect(withGateway).toEqual(
      expect.arrayContaining([
        'gateways.gateway.networking.k8s.io',
        'httproutes.gateway.networking.k8s.io',
        'grpcroutes.gateway.networking.k8s.io',
      ]),
    );
  });

  it('the CA chart elects a leader only with more than one replica, and its RBAC names its own Secret and Lease', () => {
    const args = (r: Rendered) =>
      (r.objects.find((x) => x.object.kind === 'Deployment')!.object as unknown as k8s.V1Deployment).spec!
        .template.spec!.containers[0]!.args!;
    expect(args(render('ambit-ca'))).not.toContain('--leader-election');
    expect(args(render('ambit-ca', fullValues('ambit-ca')))).toContain('--leader-election');
    const role = render('ambit-ca').objects.find((x) => x.object.kind === 'Role')!
      .object as unknown as k8s.V1Role;
    const named = role.rules!.filter((x) => x.resourceNames).flatMap((x) => x.resourceNames!);
    expect(named.sort()).toEqual(['ambit-ca-leader', 'istio-ca-secret']);
  });

  it('the CA chart serves the discovery tier by default and may read every kind the ztunnel chart no longer reads; off, only Namespaces and Pods', () => {
    const rendered = (file?: string) => render('ambit-ca', file);
    const args = (r: Rendered) =>
      (r.objects.find((x) => x.object.kind === 'Deployment')!.object as unknown as k8s.V1Deployment).spec!
        .template.spec!.containers[0]!.args!;
    const readable = (r: Rendered) =>
      (r.objects.find((x) => x.object.kind === 'ClusterRole')!.object as unknown as k8s.V1ClusterRole)
        .rules!.filter((x) => x.verbs.includes('watch') && !x.resources!.includes('configmaps'))
        .flatMap((x) => x.resources!)
        .sort();
    expect(args(rendered())).not.toContain('--no-discovery');
    // What a ztunnel with stateSource=kubernetes reads is what the discovery tier reads for it.
    const ztRole = render('ambit-ztunnel', fullValues('ambit-ztunnel')).objects.find(
      (x) => x.object.kind === 'ClusterRole',
    )!.object as unknown as k8s.V1ClusterRole;
    expect(readable(rendered())).toEqual(ztRole.rules!.flatMap((x) => x.resources!).sort());
    expect(args(rendered(fullValues('ambit-ca')))).toContain('--no-discovery');
    expect(readable(rendered(fullValues('ambit-ca')))).toEqual(['namespaces', 'pods']);
  });
});

// The waypoint controller: for every Gateway of class `istio-waypoint` it keeps a ServiceAccount, a
// Deployment and a Service named after the Gateway, and writes the Gateway's status — what istiod's
// gateway deployment controller does for waypoints (istio/istio
// pilot/pkg/config/kube/gateway/deploymentcontroller.go + templates/waypoint.yaml):
// - identity = ServiceAccount named after the Gateway (docs/architecture.md §6);
// - Service ports: 15021 status-port, 15008 mesh (HBONE), 15020 metrics; selector
//   `gateway.networking.k8s.io/gateway-name: <name>`;
// - every generated object carries `gateway.istio.io/managed: istio.io-mesh-controller` and an
//   ownerReference to the Gateway, so deleting the Gateway lets Kubernetes' garbage collector delete
//   them (nothing to clean up here, and nothing leaks if the controller is down at that moment);
// - status.addresses = the Service's ClusterIP and hostname; conditions Accepted and Programmed.
// Objects are created when missing and replaced when they drift from the template (the Service keeps
// its allocated ClusterIP, the Deployment keeps replicas an autoscaler set).
import {
  ADD,
  CoreV1Api,
  CustomObjectsApi,
  DELETE,
  ERROR,
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  ListWatch,
  PatchStrategy,
  setHeaderOptions,
  UPDATE,
  Watch,
} from '@kubernetes/client-node';
import { type Logger, pino } from 'pino';
import type { PathNormalization } from '../core/http/request-target.js';
import { RetryQueue } from '../core/queue/retry-queue.js';
import { DEFAULT_SYNC_TIMEOUT_MS } from '../core/sources/sync-timeout.js';

export const WAYPOINT_CLASS = 'istio-waypoint';
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const MANAGED_LABEL = 'gateway.istio.io/managed';
export const MANAGED_VALUE = 'istio.io-mesh-controller';
/** Label on a waypoint's ClusterRoleBinding naming its Gateway's namespace (cluster-scoped objects have none). */
export const GATEWAY_NAMESPACE_LABEL = 'gateway.networking.k8s.io/gateway-namespace';
/**
 * ClusterRole (made by the chart) that lets a waypoint read the mesh state: Ambit's waypoints read the
 * API with their own ServiceAccount (Istio's get xDS from istiod instead), so each one is bound to it.
 */
export const WAYPOINT_READER_CLUSTERROLE = 'ambit-waypoint';
const GATEWAY_API = 'gateway.networking.k8s.io/v1';

export interface WaypointControllerOptions {
  kubeConfig: KubeConfig;
  /** Image of the waypoint pods. */
  image: string;
  /** Container args; `{name}`, `{namespace}`, `{caAddress}` are replaced. Default: `ambit waypoint --kubernetes ...`. */
  args?: string[];
  /** CA the waypoints get their certificate from (Istio CA_ADDRESS). Default istiod.istio-system.svc:15012. */
  caAddress?: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /**
   * OTLP/HTTP traces URL given to every waypoint (`--tracing-endpoint`, waypoint/tracing.ts): Ambit's stand-in
   * for meshConfig.extensionProviders[].opentelemetry. Unset: waypoints do not trace.
   */
  tracingEndpoint?: string;
  /**
   * Istio meshConfig.pathNormalization.normalization given to every waypoint (`--path-normalization`,
   * core/http/request-target.ts). Unset: the waypoint's default, BASE, as Istio.
   */
  pathNormalization?: PathNormalization;
  /** Container resources (requests/limits), passed through. */
  resources?: Record<string, unknown>;
  /** Cluster DNS suffix for status hostnames. Default cluster.local. */
  domainSuffix?: string;
  /** ClusterRole each waypoint's ServiceAccount is bound to. Default `ambit-waypoint`. */
  readerClusterRole?: string;
  /** start() fails unless the first lists of Gateways and managed Services complete within it, ms.
   * Default 120 s (core/sources/sync-timeout.ts). */
  syncTimeoutMs?: number;
  /** Retry delay after a failed reconcile (doubles to 30 s). Default 500 ms. */
  retryMs?: number;
  logger?: Logger;
}

export class WaypointControllerError extends Error {
  constructor(
    readonly code: 'RECONCILE_FAILED' | 'SYNC_TIMEOUT',
    message: string,
  ) {
    super(message);
    this.name = 'WaypointControllerError';
  }
}

interface GatewayObject extends KubernetesObject {
  spec?: { gatewayClassName?: string; listeners?: unknown[] };
  status?: { addresses?: { type?: string; value: string }[]; conditions?: Record<string, unknown>[] };
}

type Obj = KubernetesObject & Record<string, unknown>;

const DEFAULT_ARGS = [
  'waypoint',
  '--kubernetes',
  '--name',
  '{name}',
  '--namespace',
  '{namespace}',
  '--ca',
  '{caAddress}',
  '--ca-root',
  '/var/run/secrets/istio/root-cert.pem',
  '--token',
  '/var/run/secrets/tokens/istio-token',
];

const code = (err: unknown) => (err as { code?: number })?.code;

export class WaypointController {
  readonly #o: WaypointControllerOptions;
  readonly #log: Logger;
  readonly #objects: KubernetesObjectApi;
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  #gateways: ListWatch<GatewayObject> | undefined;
  #services: ListWatch<Obj> | undefined;
  #queue: RetryQueue | undefined;
  readonly #timers = new Set<NodeJS.Timeout>();
  #stopped = false;

  constructor(opts: WaypointControllerOptions) {
    this.#o = opts;
    this.#log = opts.logger ?? pino({ name: 'ambit-waypoint-controller' });
    this.#objects = KubernetesObjectApi.makeApiClient(opts.kubeConfig);
    this.#custom = opts.kubeConfig.makeApiClient(CustomObjectsApi);
    this.#core = opts.kubeConfig.makeApiClient(CoreV1Api);
  }

  async start(): Promise<void> {
    this.#stopped = false;
    this.#queue = new RetryQueue({
      work: (key) => this.reconcile(key),
      firstRetryMs: this.#o.retryMs ?? 500,
      onError: (key, err, retryInMs) =>
        this.#log.warn(
          { gateway: key, err: (err as Error).message.split('\n')[0], retryInMs },
          'waypoint: reconcile failed',
        ),
    });
    const watch = new Watch(this.#o.kubeConfig);
    const gateways = new ListWatch<GatewayObject>(
      '/apis/gateway.networking.k8s.io/v1/gateways',
      watch,
      async () =>
        (await this.#custom.listClusterCustomObject({
          group: 'gateway.networking.k8s.io',
          version: 'v1',
          plural: 'gateways',
        })) as never,
      false,
    );
    const selector = `${MANAGED_LABEL}=${MANAGED_VALUE}`;
    // Our Services: when the ClusterIP is known (or the Service was deleted by hand), re-reconcile.
    const services = new ListWatch<Obj>(
      '/api/v1/services',
      watch,
      async () => (await this.#core.listServiceForAllNamespaces({ labelSelector: selector })) as never,
      false,
      selector,
    );
    this.#gateways = gateways;
    this.#services = services;
    const gwKey = (g: KubernetesObject) => `${g.metadata?.namespace}/${g.metadata?.name}`;
    gateways.on(ADD, (g) => this.#enqueue(gwKey(g)));
    gateways.on(UPDATE, (g) => this.#enqueue(gwKey(g)));
    gateways.on(DELETE, (g) => {
      this.#log.info({ gateway: gwKey(g) }, 'waypoint: gateway deleted; owned objects are garbage-collected');
      // The ClusterRoleBinding cannot be owned by a namespaced Gateway: reconcile deletes it.
      this.#enqueue(gwKey(g));
    });
    const owner = (s: Obj) => {
      const name = (s.metadata?.labels as Record<string, string> | undefined)?.[GATEWAY_NAME_LABEL];
      if (name) this.#enqueue(`${s.metadata?.namespace}/${name}`);
    };
    services.on(UPDATE, owner);
    services.on(DELETE, owner);
    for (const inf of [gateways, services] as ListWatch<never>[]) {
      inf.on(ERROR, (err: unknown) => {
        if (this.#stopped) return;
        this.#log.warn(
          { err: (err as Error)?.message?.split('\n')[0] },
          'waypoint controller: watch failed; restarting',
        );
        this.#later(() => void inf.start().catch(() => {}), 1000);
      });
    }
    const timeoutMs = this.#o.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new WaypointControllerError(
              'SYNC_TIMEOUT',
              `waypoint controller: Gateways and Services not listed within ${timeoutMs} ms (raise --sync-timeout / KUBERNETES_SYNC_TIMEOUT)`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([Promise.all([services.start(), gateways.start()]), deadline]);
    } finally {
      clearTimeout(timer);
    }
    // Bindings of Gateways deleted while the controller was down.
    await this.#collectBindings().catch((err: unknown) =>
      this.#log.warn(
        { err: (err as Error).message.split('\n')[0] },
        'waypoint: could not collect stale bindings',
      ),
    );
  }

  #bindingName(namespace: string, name: string): string {
    return `ambit-waypoint-${namespace}-${name}`.slice(0, 253);
  }

  async #collectBindings(): Promise<void> {
    const list = await this.#objects.list(
      'rbac.authorization.k8s.io/v1',
      'ClusterRoleBinding',
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      `${MANAGED_LABEL}=${MANAGED_VALUE}`,
    );
    for (const crb of list.items) {
      const labels = (crb.metadata?.labels ?? {}) as Record<string, string>;
      const ns = labels[GATEWAY_NAMESPACE_LABEL];
      const name = labels[GATEWAY_NAME_LABEL];
      if (ns && name && this.#gateways?.get(name, ns)?.spec?.gatewayClassName !== WAYPOINT_CLASS)
        await this.#dropBinding(crb.metadata?.name ?? '');
    }
  }

  async #dropBinding(bindingName: string): Promise<void> {
    try {
      await this.#objects.delete({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: bindingName },
      });
      this.#log.info({ binding: bindingName }, 'waypoint: deleted reader binding');
    } catch (err) {
      if (code(err) !== 404) throw err;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await this.#gateways?.stop();
    await this.#services?.stop();
    await this.#queue?.stop();
  }

  /** Resolves when the work queue is empty (tests, status). */
  async idle(): Promise<void> {
    await this.#queue?.idle();
  }

  #later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      if (!this.#stopped) fn();
    }, ms);
    t.unref();
    this.#timers.add(t);
  }

  #enqueue(key: string): void {
    this.#queue?.add(key);
  }

  /** Brings one Gateway's objects and status to the desired state. `key` is `namespace/name`. */
  async reconcile(key: string): Promise<void> {
    const [namespace, name] = key.split('/') as [string, string];
    const gw = this.#gateways?.get(name, namespace);
    if (!gw || gw.spec?.gatewayClassName !== WAYPOINT_CLASS) {
      await this.#dropBinding(this.#bindingName(namespace, name));
      return;
    }
    const owner = {
      apiVersion: GATEWAY_API,
      kind: 'Gateway',
      name,
      uid: gw.metadata?.uid ?? '',
    };
    if (!owner.uid) throw new WaypointControllerError('RECONCILE_FAILED', `Gateway ${key} has no uid`);
    const labels = { [GATEWAY_NAME_LABEL]: name, [MANAGED_LABEL]: MANAGED_VALUE };
    await this.#ensure(serviceAccountFor(name, namespace, labels, owner));
    await this.#ensure(
      readerBindingFor(
        this.#bindingName(namespace, name),
        name,
        namespace,
        this.#o.readerClusterRole ?? WAYPOINT_READER_CLUSTERROLE,
      ),
    );
    await this.#ensure(deploymentFor(name, namespace, labels, owner, this.#o));
    const svc = await this.#ensure(serviceFor(name, namespace, labels, owner));
    await this.#writeStatus(gw, svc);
  }

  /** Creates `desired`, or replaces what exists when the fields we own differ. Returns the live object. */
  async #ensure(desired: Obj): Promise<Obj> {
    const ref = {
      apiVersion: desired.apiVersion as string,
      kind: desired.kind as string,
      metadata: { name: desired.metadata?.name ?? '', namespace: desired.metadata?.namespace ?? '' },
    };
    let live: Obj | undefined;
    try {
      live = (await this.#objects.read(ref)) as Obj;
    } catch (err) {
      if (code(err) !== 404) throw err;
    }
    if (!live) {
      try {
        const created = (await this.#objects.create(desired)) as Obj;
        this.#log.info(
          { kind: desired.kind, object: `${ref.metadata.namespace}/${ref.metadata.name}` },
          'waypoint: created',
        );
        return created;
      } catch (err) {
        if (code(err) !== 409) throw err;
        live = (await this.#objects.read(ref)) as Obj;
      }
    }
    const merged = preserveLiveFields(desired, live);
    if (ownedFieldsEqual(merged, live)) return live;
    merged.metadata = { ...merged.metadata, resourceVersion: live.metadata?.resourceVersion };
    const replaced = (await this.#objects.replace(merged)) as Obj;
    this.#log.info(
      { kind: desired.kind, object: `${ref.metadata.namespace}/${ref.metadata.name}` },
      'waypoint: updated',
    );
    return replaced;
  }

  async #writeStatus(gw: GatewayObject, svc: Obj): Promise<void> {
    const name = gw.metadata?.name ?? '';
    const namespace = gw.metadata?.namespace ?? '';
    const spec = (svc.spec ?? {}) as { clusterIP?: string };
    const addresses: { type: string; value: string }[] = [];
    if (spec.clusterIP && spec.clusterIP !== 'None')
      addresses.push({ type: 'IPAddress', value: spec.clusterIP });
    addresses.push({
      type: 'Hostname',
      value: `${name}.${namespace}.svc.${this.#o.domainSuffix ?? 'cluster.local'}`,
    });
    const generation = gw.metadata?.generation;
    const prev = gw.status?.conditions ?? [];
    const condition = (type: string, reason: string, message: string) => {
      const old = prev.find((c) => c.type === type);
      const same =
        old && old.status === 'True' && old.reason === reason && old.observedGeneration === generation;
      return {
        type,
        status: 'True',
        reason,
        message,
        observedGeneration: generation,
        lastTransitionTime: same
          ? old.lastTransitionTime
          : new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      };
    };
    const status = {
      addresses,
      conditions: [
        condition('Accepted', 'Accepted', 'Resource accepted'),
        condition(
          'Programmed',
          'Programmed',
          `Resources for waypoint ${name} are created (Deployment, Service, ServiceAccount)`,
        ),
      ],
    };
    if (
      JSON.stringify(status) ===
      JSON.stringify({ addresses: gw.status?.addresses, conditions: gw.status?.conditions })
    )
      return;
    await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group: 'gateway.networking.k8s.io',
        version: 'v1',
        namespace,
        plural: 'gateways',
        name,
        body: { status },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }
}

type Owner = { apiVersion: string; kind: string; name: string; uid: string };

function meta(name: string, namespace: string, labels: Record<string, string>, owner: Owner) {
  return { name, namespace, labels: { ...labels }, ownerReferences: [{ ...owner }] };
}

export function serviceAccountFor(
  name: string,
  namespace: string,
  labels: Record<string, string>,
  owner: Owner,
): Obj {
  return { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(name, namespace, labels, owner) } as Obj;
}

/** Binds the waypoint's ServiceAccount to the reader ClusterRole (cluster-scoped: no owner reference). */
export function readerBindingFor(
  bindingName: string,
  name: string,
  namespace: string,
  clusterRole: string,
): Obj {
  return {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    metadata: {
      name: bindingName,
      labels: {
        [GATEWAY_NAME_LABEL]: name,
        [GATEWAY_NAMESPACE_LABEL]: namespace,
        [MANAGED_LABEL]: MANAGED_VALUE,
      },
    },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole },
    subjects: [{ kind: 'ServiceAccount', name, namespace }],
  } as Obj;
}

export function serviceFor(
  name: string,
  namespace: string,
  labels: Record<string, string>,
  owner: Owner,
): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: meta(name, namespace, labels, owner),
    spec: {
      type: 'ClusterIP',
      selector: { [GATEWAY_NAME_LABEL]: name },
      ports: [
        // `ambit waypoint` answers /healthz/ready on its stats listener (15020): Istio's status port
        // 15021 is kept on the Service and points there.
        { name: 'status-port', port: 15021, protocol: 'TCP', targetPort: 15020 },
        { name: 'mesh', port: 15008, protocol: 'TCP', targetPort: 15008, appProtocol: 'all' },
        { name: 'metrics', port: 15020, protocol: 'TCP', targetPort: 15020 },
      ],
    },
  } as Obj;
}

export function deploymentFor(
  name: string,
  namespace: string,
  labels: Record<string, string>,
  owner: Owner,
  o: Pick<
    WaypointControllerOptions,
    'image' | 'args' | 'imagePullPolicy' | 'resources' | 'caAddress' | 'tracingEndpoint' | 'pathNormalization'
  >,
): Obj {
  const caAddress = o.caAddress ?? 'istiod.istio-system.svc:15012';
  const template = [
    ...(o.args ?? DEFAULT_ARGS),
    ...(o.tracingEndpoint ? ['--tracing-endpoint', o.tracingEndpoint] : []),
    ...(o.pathNormalization ? ['--path-normalization', o.pathNormalization] : []),
  ];
  const args = template.map((a) =>
    a.replaceAll('{name}', name).replaceAll('{namespace}', namespace).replaceAll('{caAddress}', caAddress),
  );
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta(name, namespace, labels, owner),
    spec: {
      replicas: 1,
      selector: { matchLabels: { [GATEWAY_NAME_LABEL]: name } },
      template: {
        metadata: {
          labels: { ...labels, 'istio.io/dataplane-mode': 'none' },
          annotations: {
            'prometheus.io/scrape': 'true',
            'prometheus.io/port': '15020',
            'prometheus.io/path': '/stats/prometheus',
          },
        },
        spec: {
          serviceAccountName: name,
          terminationGracePeriodSeconds: 30,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 1337,
            runAsGroup: 1337,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              // Istio's waypoint pods name their proxy container istio-proxy; Istio's dashboards and Kiali
              // select the kubelet's container_* series by that name.
              name: 'istio-proxy',
              image: o.image,
              imagePullPolicy: o.imagePullPolicy ?? 'IfNotPresent',
              args,
              ports: [
                { name: 'mesh', containerPort: 15008, protocol: 'TCP' },
                { name: 'metrics', containerPort: 15020, protocol: 'TCP' },
              ],
              env: [
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                {
                  name: 'SERVICE_ACCOUNT',
                  valueFrom: { fieldRef: { fieldPath: 'spec.serviceAccountName' } },
                },
              ],
              readinessProbe: { httpGet: { path: '/healthz/ready', port: 15020 }, periodSeconds: 5 },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              ...(o.resources ? { resources: o.resources } : {}),
              volumeMounts: [
                { name: 'istio-token', mountPath: '/var/run/secrets/tokens', readOnly: true },
                { name: 'istiod-ca-cert', mountPath: '/var/run/secrets/istio', readOnly: true },
              ],
            },
          ],
          volumes: [
            {
              // The CA token: audience istio-ca, re-read by the cert client on every request (kubelet rotates it).
              name: 'istio-token',
              projected: {
                sources: [
                  {
                    serviceAccountToken: {
                      audience: 'istio-ca',
                      expirationSeconds: 43200,
                      path: 'istio-token',
                    },
                  },
                ],
              },
            },
            { name: 'istiod-ca-cert', configMap: { name: 'istio-ca-root-cert' } },
          ],
        },
      },
    },
  } as Obj;
}

/** Fields the cluster owns on live objects that a replace must keep. */
function preserveLiveFields(desired: Obj, live: Obj): Obj {
  const out = structuredClone(desired);
  if (desired.kind === 'Service') {
    const ls = (live.spec ?? {}) as Record<string, unknown>;
    const ds = out.spec as Record<string, unknown>;
    if (ls.clusterIP) ds.clusterIP = ls.clusterIP;
    if (ls.clusterIPs) ds.clusterIPs = ls.clusterIPs;
  }
  if (desired.kind === 'Deployment') {
    const lr = (live.spec as { replicas?: number } | undefined)?.replicas;
    if (lr !== undefined) (out.spec as { replicas?: number }).replicas = lr;
  }
  return out;
}

/** Compares the labels, ownerReferences and spec we set (not fields the server defaults or adds). */
function ownedFieldsEqual(desired: Obj, live: Obj): boolean {
  const sub = (want: unknown, have: unknown): boolean => {
    if (want === null || typeof want !== 'object') return want === have;
    if (Array.isArray(want))
      return Array.isArray(have) && want.length === have.length && want.every((w, i) => sub(w, have[i]));
    if (have === null || typeof have !== 'object') return false;
    return Object.entries(want).every(([k, v]) => sub(v, (have as Record<string, unknown>)[k]));
  };
  const dm = desired.metadata ?? {};
  const lm = live.metadata ?? {};
  return (
    sub(dm.labels, lm.labels) && sub(dm.ownerReferences, lm.ownerReferences) && sub(desired.spec, live.spec)
  );
}

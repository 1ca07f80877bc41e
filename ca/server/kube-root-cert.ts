// Root distribution on Kubernetes, as istiod's namespace controller does it (istio/istio
// pilot/pkg/serviceregistry/kube/controller/namespacecontroller.go): a ConfigMap
// `istio-ca-root-cert` with key `root-cert.pem` (the current trust bundle) in every namespace,
// labelled `istio.io/config: "true"`, rewritten when the roots change, recreated when deleted,
// restored when edited; Kubernetes' own system namespaces are skipped (istio inject.IgnoredNamespaces).
// Runs on the leader only when an `isLeader` check is given.
import {
  ADD,
  CoreV1Api,
  DELETE,
  ERROR,
  type KubeConfig,
  ListWatch,
  UPDATE,
  type V1ConfigMap,
  type V1Namespace,
  Watch,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { RetryQueue } from '../../core/queue/retry-queue.js';

export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
export const ROOT_CERT_KEY = 'root-cert.pem';
/** istio pkg/kube/inject IgnoredNamespaces. */
export const IGNORED_NAMESPACES = ['kube-system', 'kube-public', 'kube-node-lease', 'local-path-storage'];

export interface RootCertPublisherOptions {
  kubeConfig: KubeConfig;
  /** The current trust bundle (PEM). */
  roots: () => string;
  /** Publish only while this returns true (leader election). Default: always. */
  isLeader?: () => boolean;
  /** Full re-check period (controller resync). Default 60 s. */
  resyncMs?: number;
  logger?: Logger;
}

const code = (err: unknown) => (err as { code?: number })?.code;

export class RootCertPublisher {
  readonly #api: CoreV1Api;
  readonly #o: RootCertPublisherOptions;
  #namespaces: ListWatch<V1Namespace> | undefined;
  #configMaps: ListWatch<V1ConfigMap> | undefined;
  #queue: RetryQueue | undefined;
  #resync: NodeJS.Timeout | undefined;
  readonly #retries = new Set<NodeJS.Timeout>();
  #stopped = false;

  constructor(opts: RootCertPublisherOptions) {
    this.#o = opts;
    this.#api = opts.kubeConfig.makeApiClient(CoreV1Api);
  }

  async start(): Promise<void> {
    this.#stopped = false;
    this.#queue = new RetryQueue({
      work: (ns) => this.#publish(ns),
      firstRetryMs: 2000,
      onError: (namespace, err, retryInMs) =>
        this.#o.logger?.warn(
          { namespace, err: (err as Error).message.split('\n')[0], retryInMs },
          'ca: could not write istio-ca-root-cert; will retry',
        ),
    });
    const watch = new Watch(this.#o.kubeConfig);
    const nsInformer = new ListWatch<V1Namespace>(
      '/api/v1/namespaces',
      watch,
      () => this.#api.listNamespace(),
      false,
    );
    // Only our ConfigMaps: a field selector on the name keeps the watch small on big clusters.
    const selector = `metadata.name=${ROOT_CERT_CONFIGMAP}`;
    const cmInformer = new ListWatch<V1ConfigMap>(
      '/api/v1/configmaps',
      watch,
      () => this.#api.listConfigMapForAllNamespaces({ fieldSelector: selector }),
      false,
      undefined,
      selector,
    );
    this.#namespaces = nsInformer;
    this.#configMaps = cmInformer;
    nsInformer.on(ADD, (ns) => this.#enqueue(ns.metadata?.name));
    nsInformer.on(UPDATE, (ns) => this.#enqueue(ns.metadata?.name));
    cmInformer.on(UPDATE, (cm) => this.#enqueue(cm.metadata?.namespace));
    cmInformer.on(DELETE, (cm) => this.#enqueue(cm.metadata?.namespace));
    for (const inf of [nsInformer, cmInformer] as ListWatch<never>[]) {
      inf.on(ERROR, (err: unknown) => {
        if (this.#stopped) return;
        this.#o.logger?.warn(
          { err: (err as Error)?.message?.split('\n')[0] },
          'ca: root-cert informer error; restarting',
        );
        const t = setTimeout(() => {
          this.#retries.delete(t);
          if (!this.#stopped) void inf.start().catch(() => {});
        }, 1000);
        this.#retries.add(t);
      });
    }
    await cmInformer.start();
    await nsInformer.start();
    this.#resync = setInterval(() => this.syncAll(), this.#o.resyncMs ?? 60_000);
    this.#resync.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#resync) clearInterval(this.#resync);
    for (const t of this.#retries) clearTimeout(t);
    await this.#namespaces?.stop();
    await this.#configMaps?.stop();
    await this.#queue?.stop();
  }

  /** Re-check every namespace (on root change, on becoming leader, on resync). */
  syncAll(): void {
    for (const ns of this.#namespaces?.list() ?? []) this.#enqueue(ns.metadata?.name);
  }

  /** Resolves when nothing is pending (tests). */
  async idle(): Promise<void> {
    await this.#queue?.idle();
  }

  #enqueue(ns: string | undefined): void {
    if (!ns || IGNORED_NAMESPACES.includes(ns)) return;
    this.#queue?.add(ns);
  }

  async #publish(ns: string): Promise<void> {
    if (this.#o.isLeader && !this.#o.isLeader()) return;
    await this.#reconcile(ns);
  }

  async #reconcile(ns: string): Promise<void> {
    const nsObj = this.#namespaces?.get(ns);
    if (!nsObj || nsObj.status?.phase === 'Terminating') return;
    const roots = this.#o.roots();
    const cur = this.#configMaps?.get(ROOT_CERT_CONFIGMAP, ns);
    if (cur && cur.data?.[ROOT_CERT_KEY] === roots) return;
    const body: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: ROOT_CERT_CONFIGMAP, namespace: ns, labels: { 'istio.io/config': 'true' } },
      data: { [ROOT_CERT_KEY]: roots },
    };
    try {
      if (cur) await this.#api.replaceNamespacedConfigMap({ namespace: ns, name: ROOT_CERT_CONFIGMAP, body });
      else await this.#api.createNamespacedConfigMap({ namespace: ns, body });
    } catch (err) {
      // Exists (our cache was behind) → replace next round; namespace gone → nothing to do.
      if (code(err) !== 409 && code(err) !== 404) throw err;
      if (code(err) === 409) {
        const fresh = await this.#api.readNamespacedConfigMap({ namespace: ns, name: ROOT_CERT_CONFIGMAP });
        if (fresh.data?.[ROOT_CERT_KEY] !== roots)
          await this.#api.replaceNamespacedConfigMap({ namespace: ns, name: ROOT_CERT_CONFIGMAP, body });
      }
      return;
    }
    this.#o.logger?.info(
      { namespace: ns },
      cur ? 'ca: updated istio-ca-root-cert' : 'ca: created istio-ca-root-cert',
    );
  }
}

// The Kubernetes source: one reflector (reflector.ts) per kind the mesh reads, feeding the SAME
// Translator as the manifest source (docs/architecture.md §2: one model, several sources).
//
// What is kept: each object stripped to the fields the translation reads (strip.ts) before anything
// holds it, validated once (schema.ts) and kept once, by the Translator; the reflectors keep only
// `namespace/name → resourceVersion`. Lists are read in pages, so no response is ever one string of
// the whole cluster. How events are neither lost nor duplicated, and how failures are retried, is the
// reflector's contract (reflector.ts); a missing CRD (404 on list) counts as an empty kind until it
// appears.
import { type Logger, pino } from 'pino';
import type { MeshState } from '../state/state.js';
import type { StateSource } from './manifests.js';
import {
  BookmarkingWatch,
  type ClusterAccess,
  KubernetesSourceError,
  type RawObject,
  Reflector,
} from './reflector.js';
import { InvalidObjectError, type MeshKind, validateObject } from './schema.js';
import { Translator, type TranslatorOptions } from './translate.js';

export { type ClusterAccess, KubernetesSourceError } from './reflector.js';

import { DEFAULT_SYNC_TIMEOUT_MS } from './sync-timeout.js';

export { DEFAULT_SYNC_TIMEOUT_MS } from './sync-timeout.js';

/** Objects per list page. client-go's pager default (k8s.io/client-go/tools/pager). */
export const DEFAULT_PAGE_SIZE = 500;

/** Where each kind lives in the API (the preferred served version). */
export const KUBERNETES_KINDS: Record<MeshKind, { apiVersion: string; path: string; crd: boolean }> = {
  Namespace: { apiVersion: 'v1', path: '/api/v1/namespaces', crd: false },
  Pod: { apiVersion: 'v1', path: '/api/v1/pods', crd: false },
  Service: { apiVersion: 'v1', path: '/api/v1/services', crd: false },
  EndpointSlice: {
    apiVersion: 'discovery.k8s.io/v1',
    path: '/apis/discovery.k8s.io/v1/endpointslices',
    crd: false,
  },
  AuthorizationPolicy: {
    apiVersion: 'security.istio.io/v1',
    path: '/apis/security.istio.io/v1/authorizationpolicies',
    crd: true,
  },
  PeerAuthentication: {
    apiVersion: 'security.istio.io/v1',
    path: '/apis/security.istio.io/v1/peerauthentications',
    crd: true,
  },
  Gateway: {
    apiVersion: 'gateway.networking.k8s.io/v1',
    path: '/apis/gateway.networking.k8s.io/v1/gateways',
    crd: true,
  },
  HTTPRoute: {
    apiVersion: 'gateway.networking.k8s.io/v1',
    path: '/apis/gateway.networking.k8s.io/v1/httproutes',
    crd: true,
  },
  GRPCRoute: {
    apiVersion: 'gateway.networking.k8s.io/v1',
    path: '/apis/gateway.networking.k8s.io/v1/grpcroutes',
    crd: true,
  },
  Telemetry: {
    apiVersion: 'telemetry.istio.io/v1',
    path: '/apis/telemetry.istio.io/v1/telemetries',
    crd: true,
  },
};

export interface KubernetesSourceOptions {
  kubeConfig: ClusterAccess;
  /** Share a translator (and so a MeshState); else one is made from `translatorOptions`. */
  translator?: Translator;
  translatorOptions?: TranslatorOptions;
  /**
   * List/watch only the pods of this node (`fieldSelector=spec.nodeName=<node>`). The bpf-redirect
   * agent enrolls only local pods, so it sets this; ztunnel must not (it routes to, and checks
   * identities of, pods on every node), nor the CA (its pod-on-node check needs every pod).
   */
  podNodeName?: string;
  /** Kinds to watch. Default: all of KUBERNETES_KINDS. */
  kinds?: readonly MeshKind[];
  /** First retry delay after an error. Default 800 ms (client-go reflector). */
  backoffInitialMs?: number;
  /** Retry delay cap. Default 30 s (client-go reflector). */
  backoffMaxMs?: number;
  /** start() fails if the first list of every kind has not completed by then. Default 120 s
   * (DEFAULT_SYNC_TIMEOUT_MS); components take it from --sync-timeout / KUBERNETES_SYNC_TIMEOUT. */
  syncTimeoutMs?: number;
  /** Objects per list page (`limit`). Default 500 (DEFAULT_PAGE_SIZE). */
  pageSize?: number;
  /** Watch `timeoutSeconds` range (client-go: 300–600 s). */
  watchTimeoutSeconds?: [number, number];
  logger?: Logger;
}

/** One delivered informer event (for status and tests). */
export interface SourceEvent {
  kind: MeshKind;
  type: 'add' | 'update' | 'delete';
  namespace: string;
  name: string;
  resourceVersion: string;
}

type Queued =
  | { op: 'apply'; kind: MeshKind; object: RawObject }
  | { op: 'remove'; kind: MeshKind; namespace: string; name: string };

interface KindWatcher {
  kind: MeshKind;
  reflector: Reflector;
  synced: boolean;
  missingLogged: boolean;
}

export class KubernetesSource implements StateSource {
  readonly translator: Translator;
  readonly #kc: ClusterAccess;
  readonly #log: Logger;
  readonly #opts: KubernetesSourceOptions;
  readonly #watchers: KindWatcher[] = [];
  readonly #queue: Queued[] = [];
  readonly #errors = new Map<string, InvalidObjectError>();
  readonly #eventListeners = new Set<(e: SourceEvent) => void>();
  readonly #syncWaiters = new Set<() => void>();
  #watch: BookmarkingWatch | undefined;
  #flushScheduled = false;
  #stopped = false;

  constructor(opts: KubernetesSourceOptions) {
    this.#opts = opts;
    this.#kc = opts.kubeConfig;
    this.translator = opts.translator ?? new Translator(opts.translatorOptions);
    this.#log = opts.logger ?? pino({ name: 'ambit-kubernetes' }, pino.destination(2));
  }

  get state(): MeshState {
    return this.translator.state;
  }

  /** True once every kind has been listed once. */
  get synced(): boolean {
    return this.#watchers.length > 0 && this.#watchers.every((w) => w.synced);
  }

  async start(): Promise<void> {
    this.#stopped = false;
    const kinds = this.#opts.kinds ?? (Object.keys(KUBERNETES_KINDS) as MeshKind[]);
    const watch = new BookmarkingWatch(this.#kc, this.#opts.watchTimeoutSeconds ?? [300, 600]);
    this.#watch = watch;
    for (const kind of kinds) this.#watchers.push(this.#startKind(kind, watch));
    const timeoutMs = this.#opts.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS;
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!this.synced) return;
        clearTimeout(timer);
        this.#syncWaiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#syncWaiters.delete(check);
        const pending = this.#watchers.filter((w) => !w.synced).map((w) => w.kind);
        reject(
          new KubernetesSourceError(
            'SYNC_TIMEOUT',
            `kubernetes source: no complete list of ${pending.join(', ')} within ${timeoutMs} ms (API server ${this.#kc.getCurrentCluster()?.server ?? '?'}; raise --sync-timeout / KUBERNETES_SYNC_TIMEOUT for a larger cluster)`,
          ),
        );
      }, timeoutMs);
      this.#syncWaiters.add(check);
      check();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watch?.close();
    await Promise.all(this.#watchers.map((w) => w.reflector.stop()));
    this.#watchers.length = 0;
  }

  errors(): InvalidObjectError[] {
    return [...this.#errors.keys()].sort().map((k) => this.#errors.get(k)!);
  }

  warnings(): string[] {
    return this.translator.notes().map((n) => `${n.object}: ${n.message}`);
  }

  /** Every event applied to the translator, in order (status pages and tests). */
  onEvent(listener: (e: SourceEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  #startKind(kind: MeshKind, watch: BookmarkingWatch): KindWatcher {
    const spec = KUBERNETES_KINDS[kind];
    const fieldSelector =
      kind === 'Pod' && this.#opts.podNodeName ? `spec.nodeName=${this.#opts.podNodeName}` : undefined;
    const event = (type: SourceEvent['type'], namespace: string, name: string, resourceVersion: string) => {
      if (this.#eventListeners.size === 0) return;
      const e: SourceEvent = { kind, type, namespace, name, resourceVersion };
      for (const l of this.#eventListeners) l(e);
    };
    const w: KindWatcher = {
      kind,
      reflector: new Reflector({
        access: this.#kc,
        kind,
        apiVersion: spec.apiVersion,
        path: spec.path,
        fieldSelector,
        pageSize: this.#opts.pageSize ?? DEFAULT_PAGE_SIZE,
        watch,
        backoffInitialMs: this.#opts.backoffInitialMs ?? 800,
        backoffMaxMs: this.#opts.backoffMaxMs ?? 30_000,
        sink: {
          upsert: (type, object, rv) => {
            const meta = object.metadata ?? {};
            event(type, meta.namespace ?? '', meta.name ?? '', rv);
            this.#queue.push({ op: 'apply', kind, object });
            this.#scheduleFlush();
          },
          remove: (namespace, name, rv) => {
            event('delete', namespace, name, rv);
            this.#queue.push({ op: 'remove', kind, namespace, name });
            this.#scheduleFlush();
          },
          listed: (objects) => {
            w.missingLogged = false;
            // Apply what the list brought before the kind counts as synced, so start() resolves with
            // the objects in MeshState.
            this.#flush();
            this.#markSynced(w, objects);
          },
          failed: (err, retryInMs) => this.#onError(w, err, retryInMs),
          progressed: () => {},
        },
      }),
      synced: false,
      missingLogged: false,
    };
    w.reflector.start();
    return w;
  }

  #onError(w: KindWatcher, err: unknown, retryInMs: number): void {
    if (this.#stopped) return;
    const code = (err as { statusCode?: number } | undefined)?.statusCode;
    const spec = KUBERNETES_KINDS[w.kind];
    if (code === 404 && spec.crd) {
      // The CRD is not installed (e.g. no Gateway API): an empty kind until it appears; keep polling.
      if (!w.missingLogged)
        this.#log.warn(
          { kind: w.kind, path: spec.path },
          'kubernetes: kind not served (CRD missing?); treating as empty',
        );
      w.missingLogged = true;
      this.#markSynced(w, 0);
      return;
    }
    this.#log.warn(
      { kind: w.kind, err: (err as Error)?.message ?? String(err), retryInMs },
      'kubernetes: list/watch failed; retrying',
    );
  }

  #markSynced(w: KindWatcher, objects: number): void {
    if (w.synced) return;
    w.synced = true;
    this.#log.info({ kind: w.kind, objects }, 'kubernetes: kind synced');
    for (const waiter of [...this.#syncWaiters]) waiter();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // Coalesce a burst (a whole list, a replay after reconnect) into one translator batch.
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#queue.length === 0) return;
    const ops = this.#queue.splice(0, this.#queue.length);
    this.translator.batch(() => {
      for (const q of ops) {
        if (q.op === 'remove') {
          this.#errors.delete(`${q.kind}/${q.namespace}/${q.name}`);
          this.translator.remove(q.kind, q.namespace, q.name);
          continue;
        }
        const meta = q.object.metadata ?? {};
        const key = `${q.kind}/${meta.namespace ?? ''}/${meta.name ?? ''}`;
        const v = validateObject(q.object, { kind: q.kind, namespace: meta.namespace, name: meta.name });
        if (v.ok) {
          this.#errors.delete(key);
          this.translator.apply(v.object);
        } else if (!v.ignored) {
          // Last-good rule (docs/architecture.md §2): a bad version is reported; the previous one keeps serving.
          const kept = this.translator.has(q.kind, meta.namespace ?? '', meta.name ?? '');
          const e = kept
            ? new InvalidObjectError(
                v.error.location,
                v.error.field,
                `${v.error.problem} (the last good version keeps serving)`,
              )
            : v.error;
          this.#errors.set(key, e);
          this.#log.error({ object: key, field: e.field }, e.message);
        }
      }
    });
  }
}

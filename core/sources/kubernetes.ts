// The Kubernetes source: @kubernetes/client-node informers (ListWatch) on the kinds the mesh reads,
// feeding the SAME Translator as the manifest source (DESIGN.md §2: one model, several sources).
//
// How events are neither lost nor duplicated (the client-go reflector contract, which ListWatch
// implements): list → remember the list's resourceVersion → watch from it; every event advances the
// remembered resourceVersion (BOOKMARKs too, so a quiet kind does not fall out of the server's
// history window); a watch that ends is resumed from the last resourceVersion, so the server replays
// exactly what was missed; `410 Gone` (history compacted) clears it and the next round re-lists, and
// ListWatch diffs the new list against its cache — objects gone become deletes, objects whose
// resourceVersion changed become updates, unchanged ones produce nothing. Any other error (API server
// down, 5xx, network) restarts the informer after an exponential backoff (client-go's 800 ms → 30 s).
//
// What client-node 1.4's ListWatch lacks is added around it, not patched into it: watches ask for
// `allowWatchBookmarks` and a bounded `timeoutSeconds` (client-go: 5–10 min, randomised), lists are
// read raw (the wire JSON, as watch events are) so both reach the schema in one shape, a missing CRD
// (404 on list) counts as an empty kind until it appears, and errors restart with backoff.
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { KubeConfig, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
// client-node's informer pieces from their own modules: its index also loads KubeConfig, every
// generated API client and the auth plugins (+18 MB heap), which an in-cluster node proxy does not need
// (in-cluster.ts). The package has no exports map; these are the files its index re-exports.
import { ListWatch } from '@kubernetes/client-node/dist/cache.js';
import { ADD, DELETE, ERROR, UPDATE } from '@kubernetes/client-node/dist/informer.js';
import { Watch } from '@kubernetes/client-node/dist/watch.js';
import { type Logger, pino } from 'pino';
import type { MeshState } from '../state/state.js';
import type { InClusterConfig } from './in-cluster.js';
import type { StateSource } from './manifests.js';
import { InvalidObjectError, type MeshKind, validateObject } from './schema.js';
import { Translator, type TranslatorOptions } from './translate.js';

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
};

/** How to reach the API server: a loaded KubeConfig, or the in-cluster service account. */
export type ClusterAccess = KubeConfig | InClusterConfig;

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
  /** start() fails if the first list of every kind has not completed by then. Default 60 s. */
  syncTimeoutMs?: number;
  /** Watch `timeoutSeconds` range (client-go: 300–600 s). */
  watchTimeoutSeconds?: [number, number];
  logger?: Logger;
}

export class KubernetesSourceError extends Error {
  constructor(
    readonly code: 'SYNC_TIMEOUT' | 'LIST_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'KubernetesSourceError';
  }
}

/** One delivered informer event (for status and tests). */
export interface SourceEvent {
  kind: MeshKind;
  type: 'add' | 'update' | 'delete';
  namespace: string;
  name: string;
  resourceVersion: string;
}

type RawObject = KubernetesObject & Record<string, unknown>;

type Queued =
  | { op: 'apply'; kind: MeshKind; object: RawObject }
  | { op: 'remove'; kind: MeshKind; namespace: string; name: string };

/**
 * client-node's Watch, asking for bookmarks and a bounded, randomised server-side timeout. It also
 * owns every watch it opened: ListWatch.stop() cannot abort a watch whose response headers have not
 * arrived yet (it only learns the AbortController afterwards), so close() aborts those too.
 */
class BookmarkingWatch extends Watch {
  readonly #open = new Set<AbortController>();
  #closed = false;

  constructor(
    config: ClusterAccess,
    private readonly timeoutRange: [number, number],
  ) {
    // Watch asks its config only getCurrentCluster() and applyToFetchOptions(), which both answer.
    super(config as KubeConfig);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const [lo, hi] = this.timeoutRange;
    let ctl: AbortController | undefined;
    const ctlDone = (err: unknown) => {
      if (ctl) this.#open.delete(ctl);
      if (!this.#closed) done(err);
    };
    ctl = await super.watch(
      path,
      {
        ...queryParams,
        allowWatchBookmarks: true,
        timeoutSeconds: Math.floor(lo + Math.random() * (hi - lo)),
      },
      (phase, obj, raw) => {
        if (!this.#closed) callback(phase, obj, raw);
      },
      ctlDone,
    );
    if (this.#closed) ctl.abort();
    else if (!ctl.signal.aborted) this.#open.add(ctl);
    return ctl;
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#open) c.abort();
    this.#open.clear();
  }
}

/** GET `path` from the current cluster with client-node's own auth/TLS options; the raw JSON. */
async function rawGet(kc: ClusterAccess, path: string, signal: AbortSignal): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubernetesSourceError('LIST_FAILED', 'kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  const opts: RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const isHttps = url.protocol === 'https:';
  if (!isHttps) delete opts.agent;
  return new Promise((resolve, reject) => {
    const req = (isHttps ? httpsRequest : httpRequest)(
      url,
      { ...opts, method: 'GET', headers: { ...(opts.headers ?? {}), accept: 'application/json' }, signal },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) !== 200) {
            let message = text.slice(0, 300);
            try {
              message = (JSON.parse(text) as { message?: string }).message ?? message;
            } catch {}
            const err = new KubernetesSourceError('LIST_FAILED', `GET ${path}: ${res.statusCode} ${message}`);
            (err as unknown as { statusCode: number }).statusCode = res.statusCode ?? 0;
            reject(err);
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch (err) {
            reject(
              new KubernetesSourceError('LIST_FAILED', `GET ${path}: bad JSON: ${(err as Error).message}`),
            );
          }
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

interface KindWatcher {
  kind: MeshKind;
  informer: ListWatch<RawObject>;
  synced: boolean;
  backoffMs: number;
  retry: NodeJS.Timeout | undefined;
  missingLogged: boolean;
}

const statusCodeOf = (err: unknown): number | undefined => {
  const e = err as { statusCode?: number; code?: number } | undefined;
  return e?.statusCode ?? (typeof e?.code === 'number' ? e.code : undefined);
};

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
  #abort = new AbortController();
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
    this.#abort = new AbortController();
    const kinds = this.#opts.kinds ?? (Object.keys(KUBERNETES_KINDS) as MeshKind[]);
    const watch = new BookmarkingWatch(this.#kc, this.#opts.watchTimeoutSeconds ?? [300, 600]);
    this.#watch = watch;
    for (const kind of kinds) this.#watchers.push(this.#startKind(kind, watch));
    const timeoutMs = this.#opts.syncTimeoutMs ?? 60_000;
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
            `kubernetes source: no complete list of ${pending.join(', ')} within ${timeoutMs} ms (API server ${this.#kc.getCurrentCluster()?.server ?? '?'})`,
          ),
        );
      }, timeoutMs);
      this.#syncWaiters.add(check);
      check();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#abort.abort();
    this.#watch?.close();
    for (const w of this.#watchers) {
      if (w.retry) clearTimeout(w.retry);
      await w.informer.stop();
    }
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

  #startKind(kind: MeshKind, watch: Watch): KindWatcher {
    const spec = KUBERNETES_KINDS[kind];
    const fieldSelector =
      kind === 'Pod' && this.#opts.podNodeName ? `spec.nodeName=${this.#opts.podNodeName}` : undefined;
    const listPath = fieldSelector
      ? `${spec.path}?fieldSelector=${encodeURIComponent(fieldSelector)}`
      : spec.path;
    const w: KindWatcher = {
      kind,
      informer: undefined as unknown as ListWatch<RawObject>,
      synced: false,
      backoffMs: 0,
      retry: undefined,
      missingLogged: false,
    };
    const listFn = async (): Promise<KubernetesListObject<RawObject>> => {
      const list = (await rawGet(this.#kc, listPath, this.#abort.signal)) as KubernetesListObject<RawObject>;
      // Built-in kinds list their items without kind/apiVersion; the schema needs them.
      for (const item of list.items ?? []) {
        item.kind ??= kind;
        item.apiVersion ??= spec.apiVersion;
      }
      w.backoffMs = 0;
      w.missingLogged = false;
      // ListWatch applies the list synchronously right after this promise resolves; mark the kind
      // synced after that, and flush first so start() resolves with the objects in MeshState.
      setImmediate(() => {
        this.#flush();
        this.#markSynced(w);
      });
      return list;
    };
    const informer = new ListWatch<RawObject>(spec.path, watch, listFn, false, undefined, fieldSelector);
    w.informer = informer;
    const enqueue = (type: SourceEvent['type']) => (obj: RawObject) => {
      obj.kind ??= kind;
      obj.apiVersion ??= spec.apiVersion;
      w.backoffMs = 0;
      const meta = obj.metadata ?? {};
      const event: SourceEvent = {
        kind,
        type,
        namespace: meta.namespace ?? '',
        name: meta.name ?? '',
        resourceVersion: meta.resourceVersion ?? '',
      };
      for (const l of this.#eventListeners) l(event);
      if (type === 'delete')
        this.#queue.push({ op: 'remove', kind, namespace: event.namespace, name: event.name });
      else this.#queue.push({ op: 'apply', kind, object: obj });
      this.#scheduleFlush();
    };
    informer.on(ADD, enqueue('add'));
    informer.on(UPDATE, enqueue('update'));
    informer.on(DELETE, enqueue('delete'));
    informer.on(ERROR, (err: unknown) => this.#onError(w, err));
    informer.start().catch((err: unknown) => this.#onError(w, err));
    return w;
  }

  #onError(w: KindWatcher, err: unknown): void {
    if (this.#stopped) return;
    const code = statusCodeOf(err);
    const spec = KUBERNETES_KINDS[w.kind];
    if (code === 404 && spec.crd) {
      // The CRD is not installed (e.g. no Gateway API): an empty kind until it appears; keep polling.
      if (!w.missingLogged)
        this.#log.warn(
          { kind: w.kind, path: spec.path },
          'kubernetes: kind not served (CRD missing?); treating as empty',
        );
      w.missingLogged = true;
      this.#markSynced(w);
    } else {
      this.#log.warn(
        { kind: w.kind, err: (err as Error)?.message ?? String(err), retryInMs: w.backoffMs || 800 },
        'kubernetes: list/watch failed; retrying',
      );
    }
    const initial = this.#opts.backoffInitialMs ?? 800;
    const max = this.#opts.backoffMaxMs ?? 30_000;
    w.backoffMs = w.backoffMs === 0 ? initial : Math.min(max, w.backoffMs * 2);
    // Jitter (client-go uses 1.0 jitter factor on its backoff manager) so informers do not stampede.
    const delay = Math.round(w.backoffMs * (0.5 + Math.random() * 0.5));
    if (w.retry) clearTimeout(w.retry);
    w.retry = setTimeout(() => {
      w.retry = undefined;
      if (this.#stopped) return;
      w.informer.start().catch((e: unknown) => this.#onError(w, e));
    }, delay);
    w.retry.unref();
  }

  #markSynced(w: KindWatcher): void {
    if (w.synced) return;
    w.synced = true;
    this.#log.info({ kind: w.kind, objects: w.informer.list().length }, 'kubernetes: kind synced');
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
          // Last-good rule (DESIGN.md §2): a bad version is reported; the previous one keeps serving.
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

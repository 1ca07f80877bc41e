// Writes status conditions (status-conditions.ts) to Kubernetes through the /status subresource, the
// way istiod's status queue does (istio/istio pilot/pkg/serviceregistry/kube/controller/ambient/
// statusqueue): one pending entry per object (a newer wish replaces an older one), a bounded queue, a
// bounded number of attempts with exponential backoff, and conditions of other owners left as they are.
// Each write reads the object, keeps lastTransitionTime when a condition's status did not change, sets
// observedGeneration to the generation it read, and sends a JSON merge patch carrying that
// resourceVersion, so a concurrent change answers 409 and the write is retried on the fresh object.
import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { type Logger, pino } from 'pino';
import { type Condition, OWNED_TYPES, type ObjectStatus, statusKey } from './status-conditions.js';

export interface StatusWriterOptions {
  kubeConfig: KubeConfig;
  /** Most objects waiting to be written; a new object past it is dropped (counted, logged). Default 1000. */
  maxQueue?: number;
  /** Attempts per write before it is given up (the next wish for the object tries again). Default 5. */
  maxAttempts?: number;
  /** First retry delay; doubles per attempt up to maxBackoffMs. Defaults 200 ms and 10 s. */
  backoffMs?: number;
  maxBackoffMs?: number;
  logger?: Logger;
}

export interface StatusWriterStats {
  written: number;
  unchanged: number;
  dropped: number;
  failed: number;
  queued: number;
}

interface KubeCondition extends Condition {
  lastTransitionTime?: string;
  observedGeneration?: number;
}

interface StatusObject {
  metadata?: { generation?: number; resourceVersion?: string };
  status?: { conditions?: KubeCondition[] } & Record<string, unknown>;
}

const AUTHZ = { group: 'security.istio.io', version: 'v1', plural: 'authorizationpolicies' };

export class StatusWriter {
  readonly #core: CoreV1Api;
  readonly #custom: CustomObjectsApi;
  readonly #log: Logger;
  readonly #maxQueue: number;
  readonly #maxAttempts: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  /** Insertion-ordered: the oldest wish is written first. */
  readonly #queue = new Map<string, ObjectStatus>();
  readonly #stats = { written: 0, unchanged: 0, dropped: 0, failed: 0 };
  readonly #idleWaiters = new Set<() => void>();
  #running = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(o: StatusWriterOptions) {
    this.#core = o.kubeConfig.makeApiClient(CoreV1Api);
    this.#custom = o.kubeConfig.makeApiClient(CustomObjectsApi);
    this.#log = o.logger ?? pino({ name: 'ambit-status' });
    this.#maxQueue = o.maxQueue ?? 1000;
    this.#maxAttempts = o.maxAttempts ?? 5;
    this.#backoffMs = o.backoffMs ?? 200;
    this.#maxBackoffMs = o.maxBackoffMs ?? 10_000;
  }

  /** Queue a wish for one object; replaces a pending wish for the same object. False when dropped. */
  enqueue(s: ObjectStatus): boolean {
    if (this.#stopped) return false;
    const key = statusKey(s);
    if (!this.#queue.has(key) && this.#queue.size >= this.#maxQueue) {
      this.#stats.dropped++;
      this.#log.warn({ object: key, maxQueue: this.#maxQueue }, 'status queue full: status write dropped');
      return false;
    }
    this.#queue.set(key, s);
    this.#kick();
    return true;
  }

  stats(): StatusWriterStats {
    return { ...this.#stats, queued: this.#queue.size };
  }

  /** Resolves when nothing is queued or being written (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.#running && this.#queue.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.add(resolve));
  }

  stop(): void {
    this.#stopped = true;
    this.#queue.clear();
    if (this.#timer) clearTimeout(this.#timer);
    this.#settle();
  }

  #kick(): void {
    if (this.#running || this.#stopped) return;
    this.#running = true;
    void this.#drain();
  }

  async #drain(): Promise<void> {
    while (!this.#stopped) {
      const next = this.#queue.entries().next();
      if (next.done) break;
      const [key, wish] = next.value;
      this.#queue.delete(key);
      await this.#writeWithRetry(key, wish);
    }
    this.#running = false;
    this.#settle();
  }

  #settle(): void {
    if (this.#running || (this.#queue.size > 0 && !this.#stopped)) return;
    for (const w of this.#idleWaiters) w();
    this.#idleWaiters.clear();
  }

  async #writeWithRetry(key: string, wish: ObjectStatus): Promise<void> {
    for (let attempt = 1; attempt <= this.#maxAttempts && !this.#stopped; attempt++) {
      // A newer wish for the same object arrived while this one waited: that one is written instead.
      if (this.#queue.has(key)) return;
      try {
        const changed = await this.#writeOnce(wish);
        if (changed) this.#stats.written++;
        else this.#stats.unchanged++;
        return;
      } catch (err) {
        const code = (err as { code?: number }).code;
        if (code === 404) return; // the object is gone: nothing to write
        if (attempt === this.#maxAttempts) {
          this.#stats.failed++;
          this.#log.error({ object: key, attempts: attempt, err: errText(err) }, 'status write failed');
          return;
        }
        const delay = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (attempt - 1));
        this.#log.debug({ object: key, attempt, delay, err: errText(err) }, 'status write retried');
        await new Promise<void>((r) => {
          this.#timer = setTimeout(r, delay);
        });
      }
    }
  }

  /** One read-merge-patch; false when the object already says it (no write). */
  async #writeOnce(w: ObjectStatus): Promise<boolean> {
    const obj = (await this.#read(w)) as StatusObject;
    const current = obj.status?.conditions ?? [];
    const owned = OWNED_TYPES[w.kind];
    const generation = obj.metadata?.generation;
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    const mine: KubeCondition[] = w.conditions.map((c) => {
      const old = current.find((x) => x.type === c.type);
      return {
        ...c,
        lastTransitionTime:
          old && old.status === c.status && old.lastTransitionTime ? old.lastTransitionTime : now,
        ...(generation !== undefined ? { observedGeneration: generation } : {}),
      };
    });
    const conditions = [...current.filter((x) => !owned.includes(x.type)), ...mine];
    const same = (a: KubeCondition, b: KubeCondition | undefined) =>
      b !== undefined &&
      a.type === b.type &&
      a.status === b.status &&
      a.reason === b.reason &&
      a.message === b.message &&
      a.observedGeneration === b.observedGeneration;
    if (
      conditions.length === current.length &&
      conditions.every((c) =>
        same(
          c,
          current.find((x) => x.type === c.type),
        ),
      )
    )
      return false;
    const body = {
      metadata: { resourceVersion: obj.metadata?.resourceVersion },
      status: { conditions },
    };
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    if (w.kind === 'Service') {
      await this.#core.patchNamespacedServiceStatus({ namespace: w.namespace, name: w.name, body }, merge);
    } else {
      await this.#custom.patchNamespacedCustomObjectStatus(
        { ...AUTHZ, namespace: w.namespace, name: w.name, body },
        merge,
      );
    }
    return true;
  }

  #read(w: ObjectStatus): Promise<unknown> {
    return w.kind === 'Service'
      ? this.#core.readNamespacedServiceStatus({ namespace: w.namespace, name: w.name })
      : this.#custom.getNamespacedCustomObjectStatus({ ...AUTHZ, namespace: w.namespace, name: w.name });
  }
}

function errText(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  return e.code
    ? `HTTP ${e.code}: ${typeof e.body === 'string' ? e.body.slice(0, 200) : ''}`
    : String(e.message ?? err);
}

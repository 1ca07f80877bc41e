// One kind's list + watch loop against the API server (client-go's reflector, without its cache):
// list in pages, hand each object on as soon as it is stripped (strip.ts), remember only its
// resourceVersion, then watch from the list's resourceVersion.
//
// Why not client-node's ListWatch: it caches every full object it has seen (a 7 KB Pod stays a 7 KB
// Pod in memory, as parsed JSON several times that) and reads a list as one response string, which
// past ~73k Pods exceeds V8's maximum string length. Here a list is read in pages of `pageSize`
// objects (`limit`/`continue`, Kubernetes API concepts "Retrieving large results sets in chunks";
// client-go's pager asks for 500), each page is parsed, stripped and dropped; what stays per object is
// its `namespace/name → resourceVersion` entry, which is what a re-list needs to turn the new list into
// exact adds, updates and deletes. The stripped object itself is kept once, by the Translator.
//
// The event contract is the reflector's: list → watch from the list's resourceVersion; every event
// and BOOKMARK advances it, so a watch that ends resumes where it left off and the server replays
// what was missed; `410 Gone` (history compacted, or a list's continue token expired) re-lists from
// scratch. Any other failure retries after an exponential, jittered backoff (client-go: 800 ms → 30 s).
import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { Watch } from '@kubernetes/client-node/dist/watch.js';
import type { InClusterConfig } from './in-cluster.js';
import type { MeshKind } from './schema.js';
import { stripObject } from './strip.js';

/** How to reach the API server: a loaded KubeConfig, or the in-cluster service account. */
export type ClusterAccess = KubeConfig | InClusterConfig;

export type RawObject = Record<string, unknown> & {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
};

export class KubernetesSourceError extends Error {
  constructor(
    readonly code: 'SYNC_TIMEOUT' | 'LIST_FAILED',
    message: string,
    /** HTTP status of a failed request, when there was one. */
    readonly statusCode?: number,
  ) {
    super(message);
    this.name = 'KubernetesSourceError';
  }
}

/** What a reflector tells its owner. Objects are already stripped. */
export interface ReflectorSink {
  upsert(type: 'add' | 'update', object: RawObject, resourceVersion: string): void;
  remove(namespace: string, name: string, resourceVersion: string): void;
  /** A list (the first, or a re-list) has been applied completely. */
  listed(objects: number): void;
  /** A list or watch failed; the reflector retries after `retryInMs`. */
  failed(err: unknown, retryInMs: number): void;
  /** An event arrived: the connection is healthy. */
  progressed(): void;
}

export interface ReflectorOptions {
  access: ClusterAccess;
  kind: MeshKind;
  apiVersion: string;
  /** Collection path, e.g. `/api/v1/pods`. */
  path: string;
  fieldSelector?: string;
  /** Objects per list page (`limit`). */
  pageSize: number;
  watch: BookmarkingWatch;
  backoffInitialMs: number;
  backoffMaxMs: number;
  sink: ReflectorSink;
}

const statusCodeOf = (err: unknown): number | undefined => {
  const e = err as { statusCode?: number; code?: number } | undefined;
  return e?.statusCode ?? (typeof e?.code === 'number' ? e.code : undefined);
};

/** Largest list page accepted as one string (a server ignoring `limit` must not exhaust memory). */
const MAX_PAGE_BYTES = 256 * 1024 * 1024;

/** GET `path` from the current cluster with client-node's own auth/TLS options; the parsed JSON. */
export async function getJson(access: ClusterAccess, path: string, signal: AbortSignal): Promise<unknown> {
  const cluster = access.getCurrentCluster();
  if (!cluster) throw new KubernetesSourceError('LIST_FAILED', 'kubeconfig has no current cluster');
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  const opts: RequestOptions = {};
  await access.applyToHTTPSOptions(opts);
  const isHttps = url.protocol === 'https:';
  if (!isHttps) delete opts.agent;
  return new Promise((resolve, reject) => {
    const req = (isHttps ? httpsRequest : httpRequest)(
      url,
      { ...opts, method: 'GET', headers: { ...(opts.headers ?? {}), accept: 'application/json' }, signal },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_PAGE_BYTES) {
            req.destroy(
              new KubernetesSourceError(
                'LIST_FAILED',
                `GET ${path}: response larger than ${MAX_PAGE_BYTES} bytes (does the server honour limit?)`,
              ),
            );
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          // Everything that can throw (a string too long, bad JSON) becomes this list's failure.
          try {
            const text = Buffer.concat(chunks).toString('utf8');
            chunks.length = 0;
            const code = res.statusCode ?? 0;
            if (code !== 200) {
              let message = text.slice(0, 300);
              try {
                message = (JSON.parse(text) as { message?: string }).message ?? message;
              } catch {}
              reject(new KubernetesSourceError('LIST_FAILED', `GET ${path}: ${code} ${message}`, code));
              return;
            }
            resolve(JSON.parse(text));
          } catch (err) {
            reject(new KubernetesSourceError('LIST_FAILED', `GET ${path}: ${(err as Error).message}`));
          }
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/**
 * client-node's Watch, asking for bookmarks and a bounded, randomised server-side timeout (client-go:
 * 5–10 min). It owns every watch it opened, so close() aborts them all, also one whose response
 * headers have not arrived yet.
 */
export class BookmarkingWatch extends Watch {
  readonly #open = new Set<AbortController>();
  #closed = false;

  constructor(
    config: ClusterAccess,
    private readonly timeoutRange: [number, number],
  ) {
    // Watch asks its config only getCurrentCluster() and applyToFetchOptions(), which both answer.
    super(config as KubeConfig);
  }

  get closed(): boolean {
    return this.#closed;
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
      done(err);
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

/** Thrown inside the loop to ask for a fresh list (410 Gone). */
class Relist extends Error {}

export class Reflector {
  readonly #o: ReflectorOptions;
  /** `namespace/name` → resourceVersion of every object currently known (nothing else is kept). */
  readonly #known = new Map<string, string>();
  #resourceVersion: string | undefined;
  #backoffMs = 0;
  readonly #abort = new AbortController();
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;

  constructor(opts: ReflectorOptions) {
    this.#o = opts;
  }

  /** Objects currently known. */
  get size(): number {
    return this.#known.size;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      try {
        if (this.#resourceVersion === undefined) await this.#list(signal);
        await this.#watchOnce(signal);
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof Relist || statusCodeOf(err) === 410) {
          this.#resourceVersion = undefined;
          continue;
        }
        const initial = this.#o.backoffInitialMs;
        this.#backoffMs =
          this.#backoffMs === 0 ? initial : Math.min(this.#o.backoffMaxMs, this.#backoffMs * 2);
        // Jitter (client-go's backoff manager uses 1.0): informers of many nodes must not stampede.
        const delay = Math.round(this.#backoffMs * (0.5 + Math.random() * 0.5));
        this.#o.sink.failed(err, delay);
        await this.#sleep(delay);
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  #progress(): void {
    this.#backoffMs = 0;
    this.#o.sink.progressed();
  }

  #key(o: RawObject): { namespace: string; name: string; rv: string } {
    const m = o.metadata ?? {};
    return { namespace: m.namespace ?? '', name: m.name ?? '', rv: m.resourceVersion ?? '' };
  }

  /** The whole collection, page by page; objects gone since the last list become removes. */
  async #list(signal: AbortSignal): Promise<void> {
    const { path, fieldSelector, pageSize, kind, apiVersion, sink } = this.#o;
    const seen = new Set<string>();
    let cont: string | undefined;
    let listRv = '';
    for (let page = 0; ; page++) {
      const q = new URLSearchParams();
      if (fieldSelector) q.set('fieldSelector', fieldSelector);
      q.set('limit', String(pageSize));
      if (cont) q.set('continue', cont);
      let body: { metadata?: { resourceVersion?: string; continue?: string }; items?: RawObject[] | null };
      for (let attempt = 1; ; attempt++) {
        try {
          body = (await getJson(this.#o.access, `${path}?${q}`, signal)) as typeof body;
          break;
        } catch (err) {
          // An expired continue token: start a new list (its snapshot is newer; client-go does the same).
          if (page > 0 && statusCodeOf(err) === 410) throw new Relist();
          // A connection lost mid-list (a reused keep-alive socket the server just closed) costs one
          // page, not the pages already read: the same continue token is asked for again.
          if (page === 0 || statusCodeOf(err) !== undefined || attempt >= 3 || signal.aborted) throw err;
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
      if (page === 0) this.#progress();
      listRv = body.metadata?.resourceVersion ?? listRv;
      const items = body.items ?? [];
      for (let i = 0; i < items.length; i++) {
        const raw = items[i]!;
        // Built-in kinds list their items without kind/apiVersion; the schema needs them.
        raw.kind ??= kind;
        raw.apiVersion ??= apiVersion;
        const { namespace, name, rv } = this.#key(raw);
        const key = `${namespace}/${name}`;
        seen.add(key);
        const before = this.#known.get(key);
        if (before === rv) continue;
        this.#known.set(key, rv);
        sink.upsert(before === undefined ? 'add' : 'update', stripObject(kind, raw), rv);
      }
      items.length = 0;
      cont = body.metadata?.continue || undefined;
      if (!cont) break;
    }
    for (const [key, rv] of this.#known) {
      if (seen.has(key)) continue;
      this.#known.delete(key);
      const slash = key.indexOf('/');
      sink.remove(key.slice(0, slash), key.slice(slash + 1), rv);
    }
    this.#resourceVersion = listRv;
    sink.listed(this.#known.size);
  }

  /** One watch, from the current resourceVersion, until it ends (resolves) or fails (rejects). */
  #watchOnce(signal: AbortSignal): Promise<void> {
    const { path, fieldSelector, kind, apiVersion, sink, watch } = this.#o;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let ctl: AbortController | undefined;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        ctl?.abort();
        if (err === undefined || err === null) resolve();
        else reject(err);
      };
      const onAbort = () => finish();
      signal.addEventListener('abort', onAbort);
      const onEvent = (phase: string, obj: unknown) => {
        if (settled) return;
        const o = (obj ?? {}) as RawObject;
        if (phase === 'ERROR') {
          const code = (o as { code?: number }).code;
          const message = (o as { message?: string }).message ?? 'watch error';
          finish(code === 410 ? new Relist() : new KubernetesSourceError('LIST_FAILED', message, code));
          return;
        }
        const { namespace, name, rv } = this.#key(o);
        if (rv) this.#resourceVersion = rv;
        this.#progress();
        if (phase === 'BOOKMARK') return;
        const key = `${namespace}/${name}`;
        if (phase === 'DELETED') {
          if (this.#known.delete(key)) sink.remove(namespace, name, rv);
          return;
        }
        if (phase !== 'ADDED' && phase !== 'MODIFIED') return;
        o.kind ??= kind;
        o.apiVersion ??= apiVersion;
        const before = this.#known.get(key);
        this.#known.set(key, rv);
        sink.upsert(before === undefined ? 'add' : 'update', stripObject(kind, o), rv);
      };
      watch
        .watch(
          path,
          { resourceVersion: this.#resourceVersion, ...(fieldSelector ? { fieldSelector } : {}) },
          onEvent,
          (err) => finish(err ?? undefined),
        )
        .then(
          (c) => {
            ctl = c;
            if (settled) c.abort();
          },
          (err: unknown) => finish(err),
        );
    });
  }
}

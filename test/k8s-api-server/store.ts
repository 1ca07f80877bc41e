// TEST DOUBLE — the object store behind the test Kubernetes API server: etcd-like semantics the
// clients rely on. One global, monotonically increasing resourceVersion; every write is an event in a
// bounded history; a watch from resourceVersion N replays the events after N and then streams; a
// watch from a compacted N gets `410 Gone` ("too old resource version"), as from etcd compaction.
// Owner references are garbage-collected like the real GC (background cascade), and deleting a
// namespace deletes what is in it.
import { randomUUID } from 'node:crypto';
import { alreadyExists, ApiError, conflict, gone, notFound } from './errors.js';
import type { Selector } from './selectors.js';
import { apiVersionOf, RESOURCES, type ResourceType, typeKey } from './resources.js';

export type Obj = Record<string, unknown> & { metadata: Meta };
export interface Meta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { uid: string; kind?: string; name?: string }[];
  generateName?: string;
  [k: string]: unknown;
}

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  type: EventType;
  tkey: string;
  object: Obj;
  prev?: Obj;
}

export interface WatchSink {
  tkey: string;
  namespace?: string;
  label: Selector;
  field: Selector;
  send(type: EventType | 'BOOKMARK' | 'ERROR', object: Record<string, unknown>): void;
  close(): void;
}

const clone = <T>(v: T): T => structuredClone(v);
const nsName = (ns: string | undefined, name: string) => `${ns ?? ''}/${name}`;
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

export class ObjectStore {
  #rv = 1;
  /** Events with rv <= this are gone (compacted): watching from before it is 410. */
  #compactedRv = 0;
  readonly #objects = new Map<string, Map<string, Obj>>();
  readonly #history: HistoryEvent[] = [];
  readonly #watchers = new Set<WatchSink>();

  constructor(readonly historyLimit = 10_000) {
    for (const t of RESOURCES) this.#objects.set(typeKey(t), new Map());
  }

  get resourceVersion(): string {
    return String(this.#rv);
  }

  list(t: ResourceType, namespace: string | undefined, label: Selector, field: Selector): Obj[] {
    const out: Obj[] = [];
    for (const o of this.#bucket(t).values()) {
      if (namespace && o.metadata.namespace !== namespace) continue;
      if (label(o) && field(o)) out.push(clone(o));
    }
    return out.sort((a, b) =>
      nsName(a.metadata.namespace, a.metadata.name) < nsName(b.metadata.namespace, b.metadata.name) ? -1 : 1,
    );
  }

  /**
   * The matching objects themselves, sorted by namespace/name, NOT cloned: a paged list keeps this
   * array as its consistent snapshot (the store never mutates an object after storing it — every
   * write stores a new one), and clones only the items of each page it sends.
   */
  listRefs(t: ResourceType, namespace: string | undefined, label: Selector, field: Selector): Obj[] {
    const out: Obj[] = [];
    for (const o of this.#bucket(t).values()) {
      if (namespace && o.metadata.namespace !== namespace) continue;
      if (label(o) && field(o)) out.push(o);
    }
    const key = (o: Obj) => nsName(o.metadata.namespace, o.metadata.name);
    return out.sort((a, b) => (key(a) < key(b) ? -1 : 1));
  }

  get(t: ResourceType, namespace: string | undefined, name: string): Obj {
    const o = this.#bucket(t).get(nsName(namespace, name));
    if (!o) throw notFound(t.group ? `${t.resource}.${t.group}` : t.resource, name);
    return clone(o);
  }

  tryGet(t: ResourceType, namespace: string | undefined, name: string): Obj | undefined {
    const o = this.#bucket(t).get(nsName(namespace, name));
    return o ? clone(o) : undefined;
  }

  create(t: ResourceType, namespace: string | undefined, body: Obj): Obj {
    const meta = { ...(body.metadata ?? {}) } as Meta;
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomUUID().slice(0, 5)}`;
    if (!meta.name)
      throw new ApiError(
        422,
        'Invalid',
        `${t.kind}: metadata.name: Required value: name or generateName is required`,
      );
    if (t.namespaced) {
      if (!namespace)
        throw new ApiError(400, 'BadRequest', `${t.kind} is namespaced: the URL needs /namespaces/<ns>/`);
      if (meta.namespace && meta.namespace !== namespace)
        throw new ApiError(
          400,
          'BadRequest',
          `the namespace of the provided object (${meta.namespace}) does not match the namespace sent on the request (${namespace})`,
        );
      const nsType = RESOURCES.find((x) => x.kind === 'Namespace')!;
      if (!this.#bucket(nsType).has(nsName(undefined, namespace))) throw notFound('namespaces', namespace);
      meta.namespace = namespace;
    } else delete meta.namespace;
    const bucket = this.#bucket(t);
    const key = nsName(meta.namespace, meta.name);
    if (bucket.has(key)) throw alreadyExists(t.group ? `${t.resource}.${t.group}` : t.resource, meta.name);
    const rv = ++this.#rv;
    const obj = {
      ...clone(body),
      apiVersion: apiVersionOf(t),
      kind: t.kind,
      metadata: {
        ...clone(meta),
        uid: randomUUID(),
        resourceVersion: String(rv),
        creationTimestamp: now(),
        generation: 1,
      },
    } as Obj;
    delete obj.metadata.generateName;
    if (t.kind === 'Service') this.#allocateClusterIp(obj);
    bucket.set(key, obj);
    this.#record({ rv, type: 'ADDED', tkey: typeKey(t), object: obj });
    return clone(obj);
  }

  /** Replaces an object. `subresource` 'status' changes only status; the main endpoint keeps status. */
  update(t: ResourceType, namespace: string | undefined, name: string, body: Obj, subresource?: string): Obj {
    const bucket = this.#bucket(t);
    const key = nsName(t.namespaced ? namespace : undefined, name);
    const cur = bucket.get(key);
    const resName = t.group ? `${t.resource}.${t.group}` : t.resource;
    if (!cur) throw notFound(resName, name);
    if (body.metadata?.name && body.metadata.name !== name)
      throw new ApiError(
        400,
        'BadRequest',
        `the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`,
      );
    if (body.metadata?.resourceVersion && body.metadata.resourceVersion !== cur.metadata.resourceVersion)
      throw conflict(resName, name);
    let next: Obj;
    if (subresource === 'status') next = { ...clone(cur), status: clone(body.status) };
    else {
      next = { ...clone(body), apiVersion: apiVersionOf(t), kind: t.kind } as Obj;
      next.metadata = {
        ...clone(body.metadata ?? { name }),
        name,
        ...(t.namespaced ? { namespace } : {}),
        uid: cur.metadata.uid,
        creationTimestamp: cur.metadata.creationTimestamp,
      } as Meta;
      if (!t.namespaced) delete next.metadata.namespace;
      if (t.status) {
        if (cur.status === undefined) delete next.status;
        else next.status = clone(cur.status);
      }
      if (t.kind === 'Service') {
        // apiserver patchAllocatedValues: an update that omits the allocated ClusterIP keeps it.
        const ns_ = (next.spec ?? {}) as Record<string, unknown>;
        const cs = (cur.spec ?? {}) as Record<string, unknown>;
        next.spec = ns_;
        if (!ns_.clusterIP && cs.clusterIP) {
          ns_.clusterIP = cs.clusterIP;
          ns_.clusterIPs = cs.clusterIPs;
        }
      }
      const specChanged = JSON.stringify(cur.spec) !== JSON.stringify(next.spec);
      next.metadata.generation = (cur.metadata.generation ?? 1) + (specChanged ? 1 : 0);
    }
    if (
      JSON.stringify({ ...next, metadata: { ...next.metadata, resourceVersion: undefined } }) ===
      JSON.stringify({ ...cur, metadata: { ...cur.metadata, resourceVersion: undefined } })
    )
      return clone(cur); // a no-op write does not bump resourceVersion (etcd3 store GuaranteedUpdate)
    const rv = ++this.#rv;
    next.metadata.resourceVersion = String(rv);
    bucket.set(key, next);
    this.#record({ rv, type: 'MODIFIED', tkey: typeKey(t), object: next, prev: cur });
    return clone(next);
  }

  delete(t: ResourceType, namespace: string | undefined, name: string): Obj {
    const bucket = this.#bucket(t);
    const key = nsName(t.namespaced ? namespace : undefined, name);
    const cur = bucket.get(key);
    if (!cur) throw notFound(t.group ? `${t.resource}.${t.group}` : t.resource, name);
    bucket.delete(key);
    const rv = ++this.#rv;
    const gone_ = { ...clone(cur), metadata: { ...clone(cur.metadata), resourceVersion: String(rv) } } as Obj;
    this.#record({ rv, type: 'DELETED', tkey: typeKey(t), object: gone_ });
    if (t.kind === 'Namespace') this.#deleteNamespaceContents(name);
    // The garbage collector deletes in the background (propagationPolicy Background, the default).
    setImmediate(() => this.#collectGarbage());
    return clone(gone_);
  }

  // --- watch -------------------------------------------------------------------------------------

  /**
   * Starts a watch. `fromRv` undefined/'0'/'': synthetic ADDED for every current object, then live.
   * Otherwise replays history after fromRv; 410 when that part of history is compacted.
   */
  watch(t: ResourceType, sink: WatchSink, fromRv: string | undefined): () => void {
    const tkey = typeKey(t);
    if (fromRv === undefined || fromRv === '' || fromRv === '0') {
      for (const o of this.#bucket(t).values()) if (this.#inScope(sink, o)) sink.send('ADDED', clone(o));
    } else {
      const from = Number(fromRv);
      if (!Number.isInteger(from) || from < 0)
        throw new ApiError(400, 'BadRequest', `invalid resourceVersion "${fromRv}"`);
      if (from < this.#compactedRv) throw gone(fromRv);
      for (const e of this.#history) if (e.rv > from && e.tkey === tkey) this.#deliver(sink, e);
    }
    this.#watchers.add(sink);
    return () => this.#watchers.delete(sink);
  }

  /** Closes every open watch (what an API server restart or a network cut looks like to clients). */
  dropWatches(): number {
    const n = this.#watchers.size;
    for (const w of [...this.#watchers]) {
      this.#watchers.delete(w);
      w.close();
    }
    return n;
  }

  /** Forgets all history up to now: any watch resuming from an older resourceVersion gets 410. */
  compact(): void {
    this.#compactedRv = this.#rv;
    this.#history.length = 0;
  }

  bookmark(): void {
    const rv = this.resourceVersion;
    for (const w of this.#watchers) {
      const t = RESOURCES.find((x) => typeKey(x) === w.tkey)!;
      w.send('BOOKMARK', { kind: t.kind, apiVersion: apiVersionOf(t), metadata: { resourceVersion: rv } });
    }
  }

  get watchCount(): number {
    return this.#watchers.size;
  }

  // --- internals ---------------------------------------------------------------------------------

  #nextClusterIp = 10;

  /** The apiserver allocates a ClusterIP from the service CIDR (here 10.96.0.0/16) unless headless. */
  #allocateClusterIp(svc: Obj): void {
    const spec = (svc.spec ?? {}) as Record<string, unknown>;
    svc.spec = spec;
    if (spec.type === 'ExternalName' || spec.clusterIP === 'None') return;
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== '') {
      spec.clusterIPs ??= [spec.clusterIP];
      return;
    }
    const n = this.#nextClusterIp++;
    spec.clusterIP = `10.96.${Math.floor(n / 250)}.${(n % 250) + 1}`;
    spec.clusterIPs = [spec.clusterIP];
    spec.type ??= 'ClusterIP';
  }

  #bucket(t: ResourceType): Map<string, Obj> {
    return this.#objects.get(typeKey(t))!;
  }

  #inScope(w: WatchSink, o: Obj): boolean {
    if (w.namespace && o.metadata.namespace !== w.namespace) return false;
    return w.label(o) && w.field(o);
  }

  #record(e: HistoryEvent): void {
    this.#history.push(e);
    if (this.#history.length > this.historyLimit) {
      const dropped = this.#history.splice(0, this.#history.length - this.historyLimit);
      this.#compactedRv = dropped[dropped.length - 1]!.rv;
    }
    for (const w of this.#watchers) if (w.tkey === e.tkey) this.#deliver(w, e);
  }

  /**
   * Like the apiserver's cacher: an object moving into a watch's selector arrives as ADDED, one
   * moving out as DELETED (its previous state at the event's resourceVersion).
   */
  #deliver(w: WatchSink, e: HistoryEvent): void {
    const now_ = this.#inScope(w, e.object);
    if (e.type !== 'MODIFIED') {
      if (now_) w.send(e.type, clone(e.object));
      return;
    }
    const before = e.prev !== undefined && this.#inScope(w, e.prev);
    if (now_ && before) w.send('MODIFIED', clone(e.object));
    else if (now_) w.send('ADDED', clone(e.object));
    else if (before)
      w.send('DELETED', {
        ...clone(e.prev!),
        metadata: { ...clone(e.prev!.metadata), resourceVersion: String(e.rv) },
      });
  }

  #deleteNamespaceContents(ns: string): void {
    for (const t of RESOURCES) {
      if (!t.namespaced) continue;
      for (const o of [...this.#bucket(t).values()])
        if (o.metadata.namespace === ns) this.delete(t, ns, o.metadata.name);
    }
  }

  /** Deletes objects none of whose owners exist any more (bounded passes). */
  #collectGarbage(): void {
    for (let pass = 0; pass < 10; pass++) {
      const uids = new Set<string>();
      for (const b of this.#objects.values())
        for (const o of b.values()) if (o.metadata.uid) uids.add(o.metadata.uid);
      let removed = 0;
      for (const t of RESOURCES) {
        for (const o of [...this.#bucket(t).values()]) {
          const owners = o.metadata.ownerReferences ?? [];
          if (owners.length > 0 && owners.every((ref) => !uids.has(ref.uid))) {
            this.delete(t, o.metadata.namespace, o.metadata.name);
            removed++;
          }
        }
      }
      if (removed === 0) return;
    }
  }
}

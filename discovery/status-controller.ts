// Keeps the status conditions of AuthorizationPolicies and Services current from a KubernetesSource:
// after a burst of informer events it recomputes what every object's status should say
// (status-conditions.ts) and queues only what changed to the StatusWriter. An object whose spec was
// updated is queued even when its conditions did not change (its observedGeneration moves); the
// writer's own status writes come back as updates, find the object already right and write nothing.
// A periodic resync re-queues everything, so a write given up after its attempts is tried again.
import type { Logger } from 'pino';
import type { KubernetesSource } from '../core/sources/kubernetes.js';
import { desiredStatuses, type ObjectStatus, statusKey } from './status-conditions.js';
import type { StatusWriter } from './status-writer.js';

export interface StatusControllerOptions {
  source: KubernetesSource;
  writer: StatusWriter;
  /** Quiet time after the last event before recomputing. Default 100 ms. */
  debounceMs?: number;
  /** Re-queue every object this often. Default 5 min. */
  resyncMs?: number;
  logger?: Logger;
}

export class StatusController {
  readonly #o: StatusControllerOptions;
  /** What was last queued per object (its conditions, as JSON). */
  readonly #queued = new Map<string, string>();
  readonly #forced = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #resync: NodeJS.Timeout | undefined;
  #off: (() => void) | undefined;

  constructor(o: StatusControllerOptions) {
    this.#o = o;
  }

  start(): void {
    this.#off = this.#o.source.onEvent((e) => {
      if (
        e.kind !== 'AuthorizationPolicy' &&
        e.kind !== 'Service' &&
        e.kind !== 'Gateway' &&
        e.kind !== 'Namespace'
      )
        return;
      if (e.type === 'update' && (e.kind === 'AuthorizationPolicy' || e.kind === 'Service'))
        this.#forced.add(statusKey({ kind: e.kind, namespace: e.namespace, name: e.name }));
      this.#schedule();
    });
    this.#resync = setInterval(() => {
      this.#queued.clear();
      this.#schedule();
    }, this.#o.resyncMs ?? 300_000);
    this.#resync.unref();
    this.#schedule();
  }

  stop(): void {
    this.#off?.();
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#resync) clearInterval(this.#resync);
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#recompute(), this.#o.debounceMs ?? 100);
  }

  #recompute(): void {
    this.#timer = undefined;
    let desired: ObjectStatus[];
    try {
      desired = desiredStatuses(this.#o.source.translator, this.#o.source.errors());
    } catch (err) {
      this.#o.logger?.error({ err }, 'status conditions could not be computed');
      return;
    }
    const seen = new Set<string>();
    for (const d of desired) {
      const key = statusKey(d);
      seen.add(key);
      const sig = JSON.stringify(d.conditions);
      if (this.#queued.get(key) === sig && !this.#forced.has(key)) continue;
      // A Service that neither had nor needs a condition is not worth a read.
      if (d.conditions.length === 0 && !this.#queued.has(key) && !this.#forced.has(key)) {
        this.#queued.set(key, sig);
        continue;
      }
      if (this.#o.writer.enqueue(d)) this.#queued.set(key, sig);
    }
    this.#forced.clear();
    for (const k of this.#queued.keys()) if (!seen.has(k)) this.#queued.delete(k);
  }
}

// One keyed work queue with per-key retry backoff, for the controllers that write to the Kubernetes
// API (the waypoint controller, the CA's root-cert publisher, the node agent's pod annotator). The shape of client-go's rate-limited workqueue (k8s.io/client-go/util/workqueue): a key
// is queued once however often it is added, keys are worked on one at a time, a failed key comes back
// after its own exponential delay (reset by a success), and stop() cancels every timer. The work
// function reads the latest desired state when it runs, so adding a key that is waiting out its delay
// changes nothing: the retry picks the change up, and a failing key is not hammered by every event.

export interface RetryQueueOptions {
  /** Brings one key to its desired state. A throw schedules a retry of that key. */
  work: (key: string) => Promise<void>;
  /** First retry delay after a failure; doubles each further failure. Default 500 ms. */
  firstRetryMs?: number;
  /** Retry delay cap. Default 30 s. */
  maxRetryMs?: number;
  /** Called on each failure, with the delay until the retry (the caller logs it its own way). */
  onError?: (key: string, err: unknown, retryInMs: number) => void;
}

export class RetryQueue {
  readonly #o: RetryQueueOptions;
  readonly #queued = new Set<string>();
  /** key → the delay of its last failure (absent after a success). */
  readonly #delay = new Map<string, number>();
  /** Keys waiting out their retry delay. */
  readonly #waiting = new Map<string, NodeJS.Timeout>();
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(opts: RetryQueueOptions) {
    this.#o = opts;
  }

  /** Queues `key` (once), unless it is waiting for its retry. No-op after stop(). */
  add(key: string): void {
    if (this.#stopped || this.#waiting.has(key)) return;
    this.#queued.add(key);
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
    });
  }

  /** Whether `key` is waiting out a retry delay. */
  backingOff(key: string): boolean {
    return this.#waiting.has(key);
  }

  /** Resolves when no key is queued or being worked on (keys waiting for a retry do not count). */
  async idle(): Promise<void> {
    for (let i = 0; i < 1000 && this.#running; i++) await this.#running;
  }

  /** Cancels every retry, drops what is queued, and waits for the key being worked on. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#waiting.values()) clearTimeout(t);
    this.#waiting.clear();
    this.#queued.clear();
    await this.#running;
  }

  async #drain(): Promise<void> {
    // Let the adds of one burst of events land before the first key is worked on.
    await new Promise((r) => setImmediate(r));
    while (this.#queued.size > 0 && !this.#stopped) {
      const key = this.#queued.values().next().value as string;
      this.#queued.delete(key);
      try {
        await this.#o.work(key);
        this.#delay.delete(key);
      } catch (err) {
        const first = this.#o.firstRetryMs ?? 500;
        const last = this.#delay.get(key);
        const delay = Math.min(this.#o.maxRetryMs ?? 30_000, last === undefined ? first : last * 2);
        this.#delay.set(key, delay);
        this.#o.onError?.(key, err, delay);
        if (this.#stopped) return;
        const t = setTimeout(() => {
          this.#waiting.delete(key);
          this.add(key);
        }, delay);
        t.unref();
        this.#waiting.set(key, t);
      }
    }
  }
}

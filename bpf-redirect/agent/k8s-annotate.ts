// The pod annotation `ambient.istio.io/redirection`, written by the node agent when it runs with a
// Kubernetes source, as istio-cni does (istio/istio cni/pkg/nodeagent: AnnotateEnrolledPod /
// AnnotateUnenrollPod, annotation.AmbientRedirection):
// - `enabled`  — the pod's traffic is steered to ztunnel (its capture entry is programmed);
// - `pending`  — the pod is enrolled but not programmed yet (its veth/route is not there yet);
// - removed    — the pod is not (or no longer) captured (DRAIN or NONE);
// - `failed`   — (Ambit) enrolled, but the agent cannot capture it, so its traffic is refused; the
//   reason is in `ambit.io/capture-failure` and in a Warning Event `CaptureFailed` on the pod.
// Operators and tools (`istioctl ztunnel-config workloads`, kubectl) read it to see which pods the
// data plane actually captures, as opposed to which ones are merely labelled.
//
// The agent is followed through its public status() (pods with their state), so the agent itself needs
// no Kubernetes code: `followAgent(agent, annotator)`. Writes are JSON merge patches on the pod's
// annotations only, serialized, deduplicated against what was last written, retried with backoff
// (core/queue/retry-queue.ts); a pod that is gone (404) is simply forgotten.
import { CoreV1Api, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { RetryQueue } from '../../core/queue/retry-queue.js';

export const REDIRECTION_ANNOTATION = 'ambient.istio.io/redirection';
export const CAPTURE_FAILURE_ANNOTATION = 'ambit.io/capture-failure';
export const CAPTURE_FAILED_EVENT_REASON = 'CaptureFailed';
export type RedirectionState = 'enabled' | 'pending' | `failed:${string}`;

/** The part of the agent's PodStatus this module reads. */
export interface AnnotatedPodStatus {
  name: string;
  namespace: string;
  /** CAPTURE / DRAIN / NONE / PENDING (podStateName). */
  state: string;
  /** Set while the pod is known but cannot be programmed yet. */
  pending?: string;
  /** Set when the agent gave up capturing the pod (its traffic is refused): why. */
  uncapturable?: string;
}

/** What the annotation should say for a pod, or undefined to remove it. */
export function redirectionOf(p: AnnotatedPodStatus): RedirectionState | undefined {
  const s = p.state.toUpperCase();
  if (p.uncapturable) return `failed:${p.uncapturable}`;
  if (s === 'CAPTURE') return p.pending ? 'pending' : 'enabled';
  if (s === 'PENDING') return 'pending';
  return undefined;
}

export interface RedirectionAnnotatorOptions {
  kubeConfig: KubeConfig;
  /** First retry delay after a failed write (doubles, capped at 30 s). Default 500 ms. */
  retryMs?: number;
  logger?: Logger;
}

type Want = RedirectionState | null;

export class RedirectionAnnotator {
  readonly #api: CoreV1Api;
  readonly #o: RedirectionAnnotatorOptions;
  /** ns/name → what the annotation should be (null = absent). */
  readonly #desired = new Map<string, Want>();
  /** ns/name → what we last wrote successfully. */
  readonly #written = new Map<string, Want>();
  readonly #queue: RetryQueue;

  constructor(opts: RedirectionAnnotatorOptions) {
    this.#o = opts;
    this.#api = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.#queue = new RetryQueue({
      work: (key) => this.#write(key),
      firstRetryMs: opts.retryMs ?? 500,
      onError: (key, err, retryInMs) =>
        this.#o.logger?.warn(
          { pod: key, err: (err as Error).message.split('\n')[0], retryInMs },
          'could not annotate pod',
        ),
    });
  }

  /** Sets every listed pod's annotation from its status; pods no longer listed are forgotten. */
  update(pods: readonly AnnotatedPodStatus[]): void {
    const seen = new Set<string>();
    for (const p of pods) {
      const key = `${p.namespace}/${p.name}`;
      seen.add(key);
      this.set(p.namespace, p.name, redirectionOf(p));
    }
    for (const key of [...this.#desired.keys()])
      if (!seen.has(key)) {
        // The pod left this node's view (deleted or moved): nothing to annotate.
        this.#desired.delete(key);
        this.#written.delete(key);
      }
  }

  /** Sets one pod's annotation (undefined removes it). */
  set(namespace: string, name: string, state: RedirectionState | undefined): void {
    const key = `${namespace}/${name}`;
    this.#desired.set(key, state ?? null);
    if (this.#due(key)) this.#queue.add(key);
  }

  /** Resolves when every desired annotation is written (or pending a retry timer). */
  async idle(): Promise<void> {
    await this.#queue.idle();
  }

  stop(): void {
    void this.#queue.stop();
  }

  /** Whether the pod's annotation differs from what was last written (a pod never annotated needs no removal). */
  #due(key: string): boolean {
    if (!this.#desired.has(key)) return false;
    const want = this.#desired.get(key) ?? null;
    return this.#written.get(key) !== want && !(want === null && !this.#written.has(key));
  }

  /** Writes one pod's annotation as desired now; a pod that is gone (404) is forgotten, not retried. */
  async #write(key: string): Promise<void> {
    if (!this.#due(key)) return;
    const want = this.#desired.get(key) ?? null;
    const [namespace, name] = key.split('/') as [string, string];
    const failure = want?.startsWith('failed:') ? want.slice('failed:'.length) : null;
    const redirection = failure !== null ? 'failed' : want;
    try {
      await this.#api.patchNamespacedPod(
        {
          namespace,
          name,
          body: {
            metadata: {
              annotations: { [REDIRECTION_ANNOTATION]: redirection, [CAPTURE_FAILURE_ANNOTATION]: failure },
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (err) {
      if ((err as { code?: number }).code === 404) {
        this.#desired.delete(key);
        this.#written.delete(key);
        return;
      }
      throw err;
    }
    if (failure !== null) await this.#event(namespace, name, failure);
    this.#written.set(key, want);
    this.#o.logger?.debug({ pod: key, [REDIRECTION_ANNOTATION]: want }, 'pod annotated');
  }

  /** A Warning Event on the pod (what `kubectl describe pod` shows), as kubelet reports sandbox errors. */
  async #event(namespace: string, name: string, message: string): Promise<void> {
    const now = new Date();
    await this.#api
      .createNamespacedEvent({
        namespace,
        body: {
          metadata: { name: `${name}.capture-${now.getTime().toString(16)}`, namespace },
          involvedObject: { apiVersion: 'v1', kind: 'Pod', name, namespace },
          reason: CAPTURE_FAILED_EVENT_REASON,
          message,
          type: 'Warning',
          source: { component: 'ambit-bpf-agent' },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .catch((err: unknown) =>
        this.#o.logger?.warn(
          { pod: `${namespace}/${name}`, err: (err as Error).message },
          'could not post Event',
        ),
      );
  }
}

/**
 * Follows an agent's status (polled: the agent re-derives it on every reconcile) and keeps the
 * annotations equal to it. Returns a function that stops following.
 */
export function followAgent(
  agent: { status(): { pods: readonly AnnotatedPodStatus[] } | undefined },
  annotator: RedirectionAnnotator,
  intervalMs = 500,
): () => void {
  const tick = () => {
    const s = agent.status();
    if (s) annotator.update(s.pods);
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

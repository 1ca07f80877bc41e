// Leader election on a coordination.k8s.io/v1 Lease, with client-go's leaderelection semantics
// (k8s.io/client-go/tools/leaderelection): a candidate takes the Lease when it is free or its holder
// has not renewed within leaseDurationSeconds; the holder renews every retryPeriod; a holder that
// cannot renew within renewDeadline stops acting as leader before anyone else may take over
// (renewDeadline < leaseDuration). Writes are conditional on the Lease's resourceVersion, so two
// candidates can never both win the same round. istiod elects its singleton controllers the same way
// (pilot/pkg/leaderelection); the CA uses it for root creation/renewal and root ConfigMap publishing
// when it runs with more than one replica.
import { EventEmitter } from 'node:events';
import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import type { Logger } from 'pino';

export interface LeaderElectorOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** Lease name. */
  name: string;
  /** This candidate (pod name). */
  identity: string;
  /** Default 30 s (istiod). */
  leaseDurationSeconds?: number;
  /** Default 20 s. */
  renewDeadlineMs?: number;
  /** Default 4 s. */
  retryPeriodMs?: number;
  logger?: Logger;
}

export interface LeaderElectorEvents {
  leading: [];
  lost: [];
}

const code = (err: unknown) => (err as { code?: number })?.code;

export class LeaseLeaderElector extends EventEmitter<LeaderElectorEvents> {
  readonly #api: CoordinationV1Api;
  readonly #o: Required<Omit<LeaderElectorOptions, 'logger' | 'kubeConfig'>> & { logger?: Logger };
  #leading = false;
  #lastRenew = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;

  constructor(opts: LeaderElectorOptions) {
    super();
    this.#api = opts.kubeConfig.makeApiClient(CoordinationV1Api);
    this.#o = {
      namespace: opts.namespace,
      name: opts.name,
      identity: opts.identity,
      leaseDurationSeconds: opts.leaseDurationSeconds ?? 30,
      renewDeadlineMs: opts.renewDeadlineMs ?? 20_000,
      retryPeriodMs: opts.retryPeriodMs ?? 4_000,
      logger: opts.logger,
    };
    if (this.#o.renewDeadlineMs >= this.#o.leaseDurationSeconds * 1000)
      throw new Error('leader election: renewDeadline must be shorter than leaseDuration');
  }

  isLeader(): boolean {
    return this.#leading;
  }

  /** Starts campaigning; resolves after the first attempt (leader or not). */
  async start(): Promise<void> {
    this.#stopped = false;
    await this.#round();
  }

  /** Stops campaigning; a leader releases the Lease so a successor need not wait it out. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (!this.#leading) return;
    this.#setLeading(false);
    try {
      const lease = await this.#api.readNamespacedLease({ namespace: this.#o.namespace, name: this.#o.name });
      if (lease.spec?.holderIdentity === this.#o.identity)
        await this.#api.replaceNamespacedLease({
          namespace: this.#o.namespace,
          name: this.#o.name,
          body: { ...lease, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 } },
        });
    } catch {
      // Best effort: the lease expires on its own.
    }
  }

  async #round(): Promise<void> {
    try {
      const ok = await this.#tryAcquireOrRenew();
      if (ok) this.#lastRenew = Date.now();
      if (ok && !this.#leading) this.#setLeading(true);
      if (!ok && this.#leading) this.#setLeading(false);
    } catch (err) {
      this.#o.logger?.warn(
        { err: (err as Error).message.split('\n')[0] },
        'leader election: lease update failed',
      );
      // Stop leading before the Lease can expire under us (client-go renewDeadline).
      if (this.#leading && Date.now() - this.#lastRenew > this.#o.renewDeadlineMs) this.#setLeading(false);
    }
    if (this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#round(), this.#o.retryPeriodMs);
    this.#timer.unref();
  }

  #setLeading(v: boolean): void {
    this.#leading = v;
    this.#o.logger?.info(
      { lease: `${this.#o.namespace}/${this.#o.name}`, identity: this.#o.identity },
      v ? 'leader election: leading' : 'leader election: lost leadership',
    );
    this.emit(v ? 'leading' : 'lost');
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date();
    const { namespace, name, identity, leaseDurationSeconds } = this.#o;
    let lease: V1Lease;
    try {
      lease = await this.#api.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (code(err) !== 404) throw err;
      try {
        await this.#api.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds,
              acquireTime: now,
              renewTime: now,
              leaseTransitions: 0,
            },
          },
        });
        return true;
      } catch (e) {
        if (code(e) === 409) return false; // someone else created it first
        throw e;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const renewed = spec.renewTime ? new Date(spec.renewTime as unknown as string).getTime() : 0;
    const expired = renewed + (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000 < now.getTime();
    if (holder !== '' && holder !== identity && !expired) return false;
    const transition = holder !== identity;
    try {
      await this.#api.replaceNamespacedLease({
        namespace,
        name,
        body: {
          ...lease,
          spec: {
            ...spec,
            holderIdentity: identity,
            leaseDurationSeconds,
            renewTime: now,
            ...(transition ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 } : {}),
          },
        },
      });
      return true;
    } catch (err) {
      if (code(err) === 409) return false; // lost the race for this round
      throw err;
    }
  }
}

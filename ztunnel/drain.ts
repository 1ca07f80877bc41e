// Graceful drain, as istio/ztunnel does on SIGTERM and when a pod leaves the mesh
// (src/signal.rs, src/inpod/statemanager.rs, src/config.rs CONNECTION_TERMINATION_DEADLINE):
//   1. readiness goes false first, so the kubelet / load balancers stop sending new work;
//   2. listeners stop accepting (new connections are refused);
//   3. live connections may finish until the deadline (5 s default);
//   4. whatever is left is closed, and the process exits 0.
import type { Logger } from 'pino';
import type { ConnectionManager } from './connection-manager.js';

/** Something that can stop accepting new connections (a listener). */
export interface Acceptor {
  stopAccepting(): Promise<void> | void;
}

export interface DrainResult {
  /** True when every connection finished on its own before the deadline. */
  clean: boolean;
  /** Connections force-closed at the deadline. */
  forced: number;
}

export class Drain {
  private started: Promise<DrainResult> | undefined;

  constructor(
    private readonly opts: {
      deadlineMs: number;
      connections: ConnectionManager;
      acceptors: () => Acceptor[];
      setReady: (ready: boolean) => void;
      log: Logger;
    },
  ) {}

  get draining(): boolean {
    return this.started !== undefined;
  }

  /** Starts (once) the process-wide drain; later calls return the same result. */
  run(reason: string): Promise<DrainResult> {
    this.started ??= this.doRun(reason);
    return this.started;
  }

  private async doRun(reason: string): Promise<DrainResult> {
    const { opts } = this;
    opts.setReady(false);
    opts.log.info(
      { reason, live: opts.connections.size, deadline_ms: opts.deadlineMs },
      'draining: readiness false, no longer accepting connections',
    );
    await Promise.all(opts.acceptors().map((a) => a.stopAccepting()));
    const clean = await opts.connections.waitIdle(opts.deadlineMs);
    const forced = clean ? 0 : opts.connections.closeAll('connection closed: drain deadline reached');
    opts.log.info({ clean, forced }, 'drain complete');
    return { clean, forced };
  }

  /**
   * Per-pod drain when a pod leaves the mesh: its connections get the same deadline, then are closed.
   * New connections for it stop arriving because capture no longer steers them (bpf-redirect DRAIN).
   */
  async drainPod(podIp: string): Promise<DrainResult> {
    const { opts } = this;
    const clean = await opts.connections.waitIdle(opts.deadlineMs, podIp);
    const forced = clean ? 0 : opts.connections.closeAll('connection closed: pod left the mesh', podIp);
    if (forced > 0) opts.log.info({ pod: podIp, forced }, 'pod drain deadline reached');
    return { clean, forced };
  }
}

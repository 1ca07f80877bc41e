// Tracks every live proxied connection with the inputs its policy decision was made on, so that
// (1) a policy change re-checks inbound connections and closes the ones now denied
//     (istio/ztunnel src/proxy/connection_manager.rs `PolicyWatcher`; access log: "connection closed
//     due to policy change"), and (2) drain knows how many connections each pod still has.
import type { Logger } from 'pino';

export interface TrackedConnection {
  id: number;
  direction: 'inbound' | 'outbound';
  /** The local pod this connection belongs to: destination for inbound, source for outbound. */
  podIp: string;
  /**
   * Re-evaluates the connection's policy against the current state; returns a denial reason or
   * undefined if still allowed. Absent for connections no policy governs (outbound).
   */
  recheck?: () => string | undefined;
  /** Closes the connection now (both sides), recording `reason` as its error. */
  close(reason: string): void;
}

export class ConnectionManager {
  private readonly live = new Map<number, TrackedConnection>();
  private readonly idleWaiters = new Set<() => void>();

  constructor(private readonly log: Logger) {}

  /** Registers a connection; call the returned function exactly when it ends. */
  track(conn: TrackedConnection): () => void {
    this.live.set(conn.id, conn);
    return () => {
      if (this.live.delete(conn.id)) this.notify();
    };
  }

  get size(): number {
    return this.live.size;
  }

  /** Live connections per local pod IP (drain, config_dump). */
  countsByPod(): Map<string, number> {
    const m = new Map<string, number>();
    for (const c of this.live.values()) m.set(c.podIp, (m.get(c.podIp) ?? 0) + 1);
    return m;
  }

  countFor(podIp: string): number {
    let n = 0;
    for (const c of this.live.values()) if (c.podIp === podIp) n++;
    return n;
  }

  /**
   * Re-checks every connection that carries a policy decision and closes the ones now denied.
   * Synchronous: called from the state's change listener, so closing happens in the same tick.
   */
  recheckAll(): number {
    let closed = 0;
    for (const c of [...this.live.values()]) {
      if (!c.recheck) continue;
      let denial: string | undefined;
      try {
        denial = c.recheck();
      } catch (err) {
        // Fail closed: if the new policy cannot be evaluated, the connection is not allowed.
        denial = `policy re-check failed: ${err instanceof Error ? err.message : String(err)}`;
      }
      if (denial !== undefined) {
        closed++;
        this.log.info({ conn_id: c.id, reason: denial }, 'closing connection denied by changed policy');
        c.close(`connection closed due to policy change: ${denial}`);
      }
    }
    return closed;
  }

  /** Closes all connections (of one pod when given). */
  closeAll(reason: string, podIp?: string): number {
    let n = 0;
    for (const c of [...this.live.values()]) {
      if (podIp !== undefined && c.podIp !== podIp) continue;
      n++;
      c.close(reason);
    }
    return n;
  }

  /** Resolves true once no connection (of `podIp`, if given) is live, or false at the deadline. */
  waitIdle(deadlineMs: number, podIp?: string): Promise<boolean> {
    const idle = (): boolean => (podIp === undefined ? this.live.size === 0 : this.countFor(podIp) === 0);
    if (idle()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = (): void => {
        if (!idle()) return;
        clearTimeout(timer);
        this.idleWaiters.delete(check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.idleWaiters.delete(check);
        resolve(false);
      }, deadlineMs);
      this.idleWaiters.add(check);
    });
  }

  private notify(): void {
    for (const w of [...this.idleWaiters]) w();
  }
}

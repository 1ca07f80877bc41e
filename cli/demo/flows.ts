// The web view's data: the ztunnels' (and waypoint's) admin flow streams (`/flows`, newline-delimited
// JSON, core/telemetry/flow-events.ts), read from inside each node's netns — the admin port listens on
// that netns' 127.0.0.1, as istio/ztunnel keeps its admin on localhost. Nothing here comes from the
// traffic generator: what the page shows is what the data path reported.
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { nsPath } from '../../netns/topology.js';
import type { FlowEvent } from '../../core/telemetry/flow-events.js';

/** One row of the flow table (like `hubble observe`): one finished connection or request, as one proxy saw it. */
export interface FlowRow {
  seq: number;
  time: string;
  /** Who observed it: `ztunnel/node1`, `waypoint/shop/waypoint`. */
  reporter: string;
  direction: string;
  src: { addr: string; workload?: string; namespace?: string; identity?: string };
  dst: { addr: string; workload?: string; namespace?: string; identity?: string; service?: string };
  /** The tunnel's CONNECT authority (the destination pod's ip:port) when the hop was HBONE. */
  target?: string;
  /** The destination port's declared protocol (Istio's protocol selection) for flows seen at L4 only. */
  protocol?: string;
  /** mTLS (HBONE) or plaintext, as the reporter saw the hop it terminated or originated. */
  mtls: boolean;
  verdict: 'FORWARDED' | 'DENIED' | 'ERROR';
  /** The deciding policy `ns/name`, when one decided. */
  policy?: string;
  bytesSent?: number;
  bytesRecv?: number;
  durationMs?: number;
  error?: string;
  responseFlags?: string;
  /** Present when a waypoint saw the request (HTTP or gRPC). */
  l7?: { protocol?: string; method?: string; path?: string; status?: number; grpcStatus?: number };
}

/** A waypoint's request event: a ztunnel-shaped FlowEvent plus what the request was (waypoint/request.ts). */
type AnyFlowEvent = FlowEvent & {
  request?: { protocol?: string; method?: string; path?: string; status?: number; grpcStatus?: number };
  reporter?: string;
  verdict?: string;
};

const DENIED = /denied|\b401\b|\b403\b|RBAC|PERMISSION_DENIED/i;

export function toFlowRow(reporter: string, e: AnyFlowEvent, seq: number): FlowRow {
  const q = e.request;
  const l7 = q
    ? {
        ...(q.protocol ? { protocol: q.protocol } : {}),
        ...(q.method ? { method: q.method } : {}),
        ...(q.path ? { path: q.path } : {}),
        ...(typeof q.status === 'number' ? { status: q.status } : {}),
        ...(typeof q.grpcStatus === 'number' ? { grpcStatus: q.grpcStatus } : {}),
      }
    : undefined;
  const denied =
    e.verdict === 'DENIED' ||
    e.responseFlags === 'DENY' ||
    (e.error !== undefined && DENIED.test(e.error)) ||
    q?.status === 403 ||
    q?.grpcStatus === 7;
  const verdict: FlowRow['verdict'] = denied
    ? 'DENIED'
    : e.error || (e.responseFlags && e.responseFlags !== '-')
      ? 'ERROR'
      : 'FORWARDED';
  return {
    seq,
    time: e.time,
    reporter: e.reporter ?? reporter,
    direction: e.direction,
    src: e.src,
    dst: e.dst,
    ...(e.hboneAddr ? { target: e.hboneAddr } : {}),
    mtls: e.securityPolicy === 'mutual_tls',
    verdict,
    ...(e.policy ? { policy: e.policy } : {}),
    ...(e.bytesSent !== undefined ? { bytesSent: e.bytesSent } : {}),
    ...(e.bytesRecv !== undefined ? { bytesRecv: e.bytesRecv } : {}),
    ...(e.durationMs !== undefined ? { durationMs: e.durationMs } : {}),
    ...(e.error ? { error: e.error } : {}),
    ...(e.responseFlags && e.responseFlags !== '-' ? { responseFlags: e.responseFlags } : {}),
    ...(l7 ? { l7 } : {}),
  };
}

export interface FlowSourceSpec {
  reporter: string;
  netns: string;
  url: string;
}

/**
 * Follows every admin flow stream (a `curl -N` inside the proxy's netns, restarted while the demo runs)
 * and keeps the last `keep` rows. Emits 'flow' for each finished connection/request.
 */
export class FlowCollector extends EventEmitter<{ flow: [FlowRow] }> {
  private readonly rows: FlowRow[] = [];
  private readonly children = new Set<ChildProcess>();
  private seq = 0;
  private stopped = false;

  constructor(
    private readonly log: Logger,
    private readonly keep = 3000,
  ) {
    super();
    this.setMaxListeners(0);
  }

  recent(): readonly FlowRow[] {
    return this.rows;
  }

  /** `history` on the first connect only: a reconnect must not replay rows already shown. */
  follow(spec: FlowSourceSpec, history = true): void {
    if (this.stopped) return;
    const child = spawn(
      'nsenter',
      [
        `--net=${nsPath(spec.netns)}`,
        'curl',
        '-sSN',
        '--max-time',
        '0',
        `${spec.url}${history ? '' : '?history=0'}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.children.add(child);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (!line.trim()) return;
      let e: AnyFlowEvent;
      try {
        e = JSON.parse(line) as AnyFlowEvent;
      } catch {
        this.log.warn({ reporter: spec.reporter, line: line.slice(0, 200) }, 'unparsable flow event');
        return;
      }
      // Only finished connections: they carry bytes and the final verdict (hubble shows one row per flow).
      if (e.phase === 'open') return;
      const row = toFlowRow(spec.reporter, e, ++this.seq);
      this.rows.push(row);
      if (this.rows.length > this.keep) this.rows.shift();
      this.emit('flow', row);
    });
    child.on('exit', () => {
      this.children.delete(child);
      if (this.stopped) return;
      // The proxy restarted or is not up yet: retry, once a second, while the demo runs.
      setTimeout(() => this.follow(spec, false), 1000).unref();
    });
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.children) c.kill('SIGKILL');
    this.children.clear();
  }
}

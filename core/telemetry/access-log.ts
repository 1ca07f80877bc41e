// One access-log line per connection, with Istio ztunnel's field names (istio/ztunnel
// src/proxy/metrics.rs, log target `access`): `src.addr`, `src.workload`, `src.namespace`,
// `src.identity` (mTLS only), `dst.addr`, `dst.hbone_addr`, `dst.service`, `dst.workload`,
// `dst.namespace`, `dst.identity`, `direction`, `bytes_sent`, `bytes_recv`, `duration`, `error`.
// "connection opened" logs at debug, "connection complete" at info, or at error with `error=` on failure.
import type { Logger } from 'pino';

export interface AccessLogEndpoint {
  addr: string;
  workload?: string;
  namespace?: string;
  identity?: string;
  cluster?: string;
  service?: string;
}

export interface AccessLogRecord {
  connId: number;
  direction: 'outbound' | 'inbound';
  src: AccessLogEndpoint;
  dst: AccessLogEndpoint;
  /** CONNECT authority, when tunneled. */
  hboneAddr?: string;
}

export interface AccessLogClose {
  /** Client → server bytes. */
  bytesSent: number;
  /** Server → client bytes. */
  bytesRecv: number;
  durationMs: number;
  error?: string;
  responseFlags?: string;
}

function fields(r: AccessLogRecord): Record<string, string | number> {
  const out: Record<string, string | number> = { conn_id: r.connId };
  const put = (k: string, val: string | undefined): void => {
    if (val !== undefined && val !== '') out[k] = val;
  };
  put('src.addr', r.src.addr);
  put('src.workload', r.src.workload);
  put('src.namespace', r.src.namespace);
  put('src.identity', r.src.identity);
  put('src.cluster', r.src.cluster);
  put('dst.addr', r.dst.addr);
  put('dst.hbone_addr', r.hboneAddr);
  put('dst.service', r.dst.service);
  put('dst.workload', r.dst.workload);
  put('dst.namespace', r.dst.namespace);
  put('dst.identity', r.dst.identity);
  put('dst.cluster', r.dst.cluster);
  out.direction = r.direction;
  return out;
}

export class AccessLog {
  /** `log` should be a child bound to `{ scope: 'access' }` (ztunnel's `access` log target). */
  constructor(private readonly log: Logger) {}

  opened(r: AccessLogRecord): void {
    this.log.debug(fields(r), 'connection opened');
  }

  complete(r: AccessLogRecord, c: AccessLogClose): void {
    const f = {
      ...fields(r),
      bytes_sent: c.bytesSent,
      bytes_recv: c.bytesRecv,
      duration: `${Math.round(c.durationMs)}ms`,
    };
    if (c.error !== undefined) {
      this.log.error(
        { ...f, error: c.error, ...(c.responseFlags ? { response_flags: c.responseFlags } : {}) },
        'connection complete',
      );
    } else {
      this.log.info(f, 'connection complete');
    }
  }

  /** Failures before enough context exists: only addresses, direction and the error (as ztunnel). */
  failed(srcAddr: string, dstAddr: string, direction: 'outbound' | 'inbound', error: string): void {
    this.log.error({ 'src.addr': srcAddr, 'dst.addr': dstAddr, direction, error }, 'connection failed');
  }
}

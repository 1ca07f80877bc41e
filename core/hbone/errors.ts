// Every way an HBONE tunnel can fail, as typed errors, each mapped in ONE place to the HTTP status the
// HBONE server answers (istio/ztunnel src/proxy/inbound.rs) and to Istio's `response_flags` label
// (istio/ztunnel src/proxy/metrics.rs ResponseFlags). ztunnel, the waypoint and telemetry read
// `status` / `responseFlags` from here instead of deciding them again.
import type { ResponseFlags } from '../telemetry/metrics.js';

export type HboneErrorCode =
  | 'HBONE_NOT_CONNECT'
  | 'HBONE_BAD_AUTHORITY'
  | 'HBONE_IP_MISMATCH'
  | 'HBONE_POLICY_DENIED'
  | 'HBONE_UNKNOWN_DESTINATION'
  | 'HBONE_ILLEGAL_PORT'
  | 'HBONE_UPSTREAM_CONNECT_FAILED'
  | 'HBONE_STATUS'
  | 'HBONE_IDENTITY_MISMATCH'
  | 'HBONE_PEER_NOT_TRUSTED'
  | 'HBONE_TLS_FAILURE'
  | 'HBONE_H2_FAILURE'
  | 'HBONE_CONNECT_TIMEOUT'
  | 'HBONE_CERTIFICATE_UNAVAILABLE'
  | 'HBONE_POOL_CLOSED';

/**
 * The table: code → (status the HBONE server sends, response flag recorded).
 * istio/ztunnel inbound.rs: 400 not CONNECT / unparsable authority / ip mismatch; 401 RBAC deny
 * (flag DENY); 503 unknown local workload, unresolvable port, illegal port, upstream connect failure
 * (flag CONNECT). Client-side failures never produce a status (the stream never got one) but still
 * carry a flag: TLS_FAILURE, IDENTITY_ERROR, H2_HANDSHAKE_FAILURE, NETWORK_POLICY (a timeout dialing
 * 15008: "maybe a NetworkPolicy is blocking HBONE port 15008").
 */
export const HBONE_ERROR_TABLE: Record<HboneErrorCode, { status: number; responseFlags: ResponseFlags }> = {
  HBONE_NOT_CONNECT: { status: 400, responseFlags: 'CONNECT' },
  HBONE_BAD_AUTHORITY: { status: 400, responseFlags: 'CONNECT' },
  HBONE_IP_MISMATCH: { status: 400, responseFlags: 'CONNECT' },
  HBONE_POLICY_DENIED: { status: 401, responseFlags: 'DENY' },
  HBONE_UNKNOWN_DESTINATION: { status: 503, responseFlags: 'CONNECT' },
  HBONE_ILLEGAL_PORT: { status: 503, responseFlags: 'CONNECT' },
  HBONE_UPSTREAM_CONNECT_FAILED: { status: 503, responseFlags: 'CONNECT' },
  // A non-200 answer seen by the client: the status is the server's; flag by status (401 → DENY).
  HBONE_STATUS: { status: 503, responseFlags: 'CONNECT' },
  HBONE_IDENTITY_MISMATCH: { status: 503, responseFlags: 'IDENTITY_ERROR' },
  HBONE_PEER_NOT_TRUSTED: { status: 503, responseFlags: 'TLS_FAILURE' },
  HBONE_TLS_FAILURE: { status: 503, responseFlags: 'TLS_FAILURE' },
  HBONE_H2_FAILURE: { status: 503, responseFlags: 'H2_HANDSHAKE_FAILURE' },
  HBONE_CONNECT_TIMEOUT: { status: 503, responseFlags: 'NETWORK_POLICY' },
  HBONE_CERTIFICATE_UNAVAILABLE: { status: 503, responseFlags: 'IDENTITY_ERROR' },
  HBONE_POOL_CLOSED: { status: 503, responseFlags: 'CONNECT' },
};

export class HboneError extends Error {
  readonly status: number;
  readonly responseFlags: ResponseFlags;
  constructor(
    readonly code: HboneErrorCode,
    message: string,
    options?: { cause?: unknown; status?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    const row = HBONE_ERROR_TABLE[code];
    this.status = options?.status ?? row.status;
    this.responseFlags = code === 'HBONE_STATUS' && this.status === 401 ? 'DENY' : row.responseFlags;
  }
}

/** `:method` was not CONNECT (server → 400). */
export class NotConnect extends HboneError {
  constructor(method: string | undefined) {
    super('HBONE_NOT_CONNECT', `HBONE request method is ${method ?? '(none)'}, expected CONNECT`);
  }
}

/** `:authority` is missing or not `ip:port` / `[v6]:port` / `host:port` (server → 400). */
export class BadAuthority extends HboneError {
  constructor(authority: string | undefined, reason: string) {
    super('HBONE_BAD_AUTHORITY', `bad HBONE :authority ${JSON.stringify(authority ?? '')}: ${reason}`);
  }
}

/** Authority IP is not the destination this connection reached (istio/ztunnel "ip mismatch", → 400). */
export class IpMismatch extends HboneError {
  constructor(authorityIp: string, localIp: string) {
    super('HBONE_IP_MISMATCH', `ip mismatch: ${authorityIp} != ${localIp}`);
  }
}

/** L4 AuthorizationPolicy denied the tunnel (→ 401, flag DENY). `reason` is the access-log text. */
export class PolicyDenied extends HboneError {
  constructor(readonly reason: string) {
    super('HBONE_POLICY_DENIED', `connection closed due to policy rejection: ${reason}`);
  }
}

/** No local workload owns the destination, or its port cannot be resolved (→ 503). */
export class UnknownDestination extends HboneError {
  constructor(what: string) {
    super('HBONE_UNKNOWN_DESTINATION', `unknown destination: ${what}`);
  }
}

/** Destination port is one of ztunnel's own ports (15001/15006/15008): a loop (→ 503). */
export class IllegalPort extends HboneError {
  constructor(port: number) {
    super('HBONE_ILLEGAL_PORT', `destination port ${port} is a ztunnel port and never a valid target`);
  }
}

/** The upstream TCP connect behind the tunnel failed (→ 503, flag CONNECT). */
export class UpstreamConnectFailed extends HboneError {
  constructor(target: string, cause?: unknown) {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    super('HBONE_UPSTREAM_CONNECT_FAILED', `upstream connect to ${target} failed${why}`, { cause });
  }
}

/** The client got a non-200 answer to its CONNECT (istio/ztunnel client: "http status: <code>"). */
export class HboneStatusError extends HboneError {
  constructor(status: number, authority: string) {
    super('HBONE_STATUS', `http status: ${status} for CONNECT ${authority}`, { status });
  }
}

/** The server's certificate holds none of the SPIFFE IDs the client expected. */
export class IdentityMismatch extends HboneError {
  constructor(presented: string[], expected: string[]) {
    super(
      'HBONE_IDENTITY_MISMATCH',
      `server presented ${presented.length ? presented.join(', ') : '(no SPIFFE ID)'}, expected one of ${expected.join(', ')}`,
    );
  }
}

/** The client's certificate is not a SPIFFE identity of our trust domain (server closes the connection). */
export class PeerNotTrusted extends HboneError {
  constructor(reason: string) {
    super('HBONE_PEER_NOT_TRUSTED', `HBONE peer rejected: ${reason}`);
  }
}

/** TLS could not be established (bad chain, no shared version/cipher, no ALPN h2, handshake timeout). */
export class TlsFailure extends HboneError {
  constructor(where: string, cause?: unknown) {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    super('HBONE_TLS_FAILURE', `TLS handshake with ${where} failed${why}`, { cause });
  }
}

/** HTTP/2 could not be set up over an established TLS connection, or the session died. */
export class H2Failure extends HboneError {
  constructor(where: string, cause?: unknown) {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    super('HBONE_H2_FAILURE', `HTTP/2 with ${where} failed${why}`, { cause });
  }
}

/** TCP connect to the next hop timed out (istio/ztunnel's NetworkPolicy hint, flag NETWORK_POLICY). */
export class ConnectTimeout extends HboneError {
  constructor(target: string, ms: number) {
    super(
      'HBONE_CONNECT_TIMEOUT',
      `connection to ${target} timed out after ${ms} ms, maybe a NetworkPolicy is blocking HBONE port ${target.split(':').pop()}`,
    );
  }
}

/** No certificate could be had for an identity (from the certificate provider). */
export class CertificateUnavailable extends HboneError {
  constructor(identity: string, cause?: unknown) {
    const why = cause instanceof Error ? `: ${cause.message}` : '';
    super('HBONE_CERTIFICATE_UNAVAILABLE', `no certificate for ${identity}${why}`, { cause });
  }
}

/** The pool was closed while a connect was pending or afterwards. */
export class PoolClosed extends HboneError {
  constructor() {
    super('HBONE_POOL_CLOSED', 'HBONE client pool is closed');
  }
}

/** HTTP status and flags for any error: HboneError as tabled, anything else fails closed as 503/CONNECT. */
export function statusOf(err: unknown): { status: number; responseFlags: ResponseFlags } {
  if (err instanceof HboneError) return { status: err.status, responseFlags: err.responseFlags };
  return { status: 503, responseFlags: 'CONNECT' };
}

// Every way a request can fail at the waypoint, as typed errors with codes, each mapped in ONE place to
// the HTTP status the client gets and to Envoy's response flag (Istio's `response_flags` label): a
// waypoint is Envoy in Istio, so clients and dashboards expect Envoy's answers (403 `RBAC: access denied`,
// 503 `no healthy upstream`, 504 `upstream request timeout`).

export type WaypointErrorCode =
  | 'WAYPOINT_RBAC_DENIED'
  | 'WAYPOINT_NO_ROUTE'
  | 'WAYPOINT_NO_HEALTHY_UPSTREAM'
  | 'WAYPOINT_UPSTREAM_CONNECT_FAILED'
  | 'WAYPOINT_UPSTREAM_RESET'
  | 'WAYPOINT_REQUEST_TIMEOUT'
  | 'WAYPOINT_BAD_REQUEST'
  | 'WAYPOINT_PAYLOAD_TOO_LARGE'
  | 'WAYPOINT_CONFIG';

/** code → (HTTP status, Envoy response flag, Envoy's body text). */
export const WAYPOINT_ERROR_TABLE: Record<WaypointErrorCode, { status: number; flag: string; body: string }> =
  {
    // envoy extensions/filters/http/rbac: 403 with body "RBAC: access denied", flag RBAC (RBAC_ACCESS_DENIED).
    WAYPOINT_RBAC_DENIED: { status: 403, flag: 'RBAC', body: 'RBAC: access denied' },
    WAYPOINT_NO_ROUTE: { status: 404, flag: 'NR', body: '' },
    WAYPOINT_NO_HEALTHY_UPSTREAM: { status: 503, flag: 'UH', body: 'no healthy upstream' },
    WAYPOINT_UPSTREAM_CONNECT_FAILED: {
      status: 503,
      flag: 'UF',
      body: 'upstream connect error or disconnect/reset before headers. reset reason: connection failure',
    },
    WAYPOINT_UPSTREAM_RESET: {
      status: 503,
      flag: 'UR',
      body: 'upstream connect error or disconnect/reset before headers. reset reason: remote reset',
    },
    WAYPOINT_REQUEST_TIMEOUT: { status: 504, flag: 'UT', body: 'upstream request timeout' },
    WAYPOINT_BAD_REQUEST: { status: 400, flag: 'DPE', body: 'Bad Request' },
    // envoy buffer filter / retry buffering over the limit: 413 "Payload Too Large".
    WAYPOINT_PAYLOAD_TOO_LARGE: { status: 413, flag: 'DPE', body: 'Payload Too Large' },
    WAYPOINT_CONFIG: { status: 500, flag: 'NC', body: 'waypoint configuration error' },
  };

export class WaypointError extends Error {
  readonly status: number;
  readonly flag: string;
  readonly body: string;
  constructor(
    readonly code: WaypointErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WaypointError';
    const row = WAYPOINT_ERROR_TABLE[code];
    this.status = row.status;
    this.flag = row.flag;
    this.body = row.body;
  }
}

/** Any thrown value as a WaypointError (unknown failures of the upstream are connection failures). */
export function asWaypointError(err: unknown): WaypointError {
  if (err instanceof WaypointError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new WaypointError('WAYPOINT_UPSTREAM_CONNECT_FAILED', message, { cause: err });
}

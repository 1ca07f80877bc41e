// ztunnel's proxy errors as values with codes, and the one place that maps each to the HBONE status a
// peer sees and the Istio `response_flags` telemetry records (istio/ztunnel src/proxy.rs `Error`,
// src/proxy/inbound.rs status mapping, src/proxy/metrics.rs response flags).
import {
  HboneError,
  PolicyDenied as HbonePolicyDenied,
  UnknownDestination,
  UpstreamConnectFailed as HboneUpstreamConnectFailed,
} from '../core/hbone/errors.js';
import type { ResponseFlags } from '../core/telemetry/metrics.js';

export type ProxyErrorCode =
  | 'POLICY_DENIED'
  | 'BAD_REQUEST'
  | 'IP_MISMATCH'
  | 'UNKNOWN_DESTINATION'
  | 'ILLEGAL_PORT'
  | 'UPSTREAM_CONNECT_FAILED'
  | 'NO_HEALTHY_UPSTREAM'
  | 'SELF_CALL'
  | 'WAYPOINT_UNRESOLVED'
  | 'UNKNOWN_SOURCE'
  | 'CERTIFICATE_UNAVAILABLE'
  | 'HBONE_FAILED'
  | 'DRAINING';

export class ProxyError extends Error {
  constructor(
    readonly code: ProxyErrorCode,
    message: string,
    /** The `ns/name` of the deciding policy, for POLICY_DENIED. */
    readonly policy?: string,
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

export class PolicyDenied extends ProxyError {
  constructor(
    readonly reason: string,
    policy?: string,
  ) {
    // istio/ztunnel access log text: "connection closed due to policy rejection: <reason>".
    super('POLICY_DENIED', `connection closed due to policy rejection: ${reason}`, policy);
    this.name = 'PolicyDenied';
  }
}

export class UpstreamConnectFailed extends ProxyError {
  constructor(
    readonly target: string,
    cause: string,
  ) {
    super('UPSTREAM_CONNECT_FAILED', `connection to ${target} failed: ${cause}`);
    this.name = 'UpstreamConnectFailed';
  }
}

/** HBONE response status for an inbound stream refused with this error (DESIGN.md §4). */
export function hboneStatusOf(err: unknown): number {
  if (err instanceof HboneError) return err.status;
  if (!(err instanceof ProxyError)) return 503;
  switch (err.code) {
    case 'BAD_REQUEST':
    case 'IP_MISMATCH':
      return 400;
    case 'POLICY_DENIED':
      return 401;
    default:
      return 503;
  }
}

export function responseFlagsOf(err: unknown): ResponseFlags {
  if (err instanceof HboneError) return err.responseFlags;
  if (err instanceof ProxyError) {
    switch (err.code) {
      case 'POLICY_DENIED':
        return 'DENY';
      case 'CERTIFICATE_UNAVAILABLE':
        return 'IDENTITY_ERROR';
      default:
        return 'CONNECT';
    }
  }
  const code = (err as { code?: string } | undefined)?.code ?? '';
  if (/TLS|CERT|HANDSHAKE|ERR_SSL/i.test(code)) return 'TLS_FAILURE';
  return 'CONNECT';
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The core/hbone error the HBONE server turns into the right status for a refused inbound stream. */
export function toHboneError(err: unknown): HboneError {
  if (err instanceof HboneError) return err;
  if (err instanceof PolicyDenied) return new HbonePolicyDenied(err.reason);
  if (err instanceof UpstreamConnectFailed) return new HboneUpstreamConnectFailed(err.target, err);
  return new UnknownDestination(messageOf(err));
}

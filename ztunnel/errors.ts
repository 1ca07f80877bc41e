// ztunnel's own refusals, for the outbound path only: the conditions a source ztunnel decides before any
// tunnel exists (istio/ztunnel src/proxy.rs `Error`: UnknownSource, SelfCall, NoHealthyUpstream, …). Every
// refusal that has an HBONE status or is shared with the waypoint (policy denial, illegal port, upstream
// connect failure, TLS, identity) is a core/hbone/errors.ts HboneError — one vocabulary, with the
// status and Istio `response_flags` tabled once there.
import { HboneError } from '../core/hbone/errors.js';
import type { ResponseFlags } from '../core/telemetry/metrics.js';

export type ProxyErrorCode =
  | 'NO_HEALTHY_UPSTREAM'
  | 'SELF_CALL'
  | 'WAYPOINT_UNRESOLVED'
  | 'UNKNOWN_SOURCE'
  | 'DRAINING';

export class ProxyError extends Error {
  constructor(
    readonly code: ProxyErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

/** Istio `response_flags` for any refusal: an HboneError as tabled, else a connect failure (or TLS). */
export function responseFlagsOf(err: unknown): ResponseFlags {
  if (err instanceof HboneError) return err.responseFlags;
  if (err instanceof ProxyError) return 'CONNECT';
  const code = (err as { code?: string } | undefined)?.code ?? '';
  if (/TLS|CERT|HANDSHAKE|ERR_SSL/i.test(code)) return 'TLS_FAILURE';
  return 'CONNECT';
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// Protective limits of the waypoint, with their defaults in one place. Each bounds what one client can
// make the waypoint hold, so an abusive client is answered or cut off while others keep being served.
// Defaults follow Envoy's where Istio's waypoint uses them (max_request_headers_kb 60 → we keep Node's
// 16 KiB cap, which is Node's own hardening default; Envoy's HTTP/2 max_concurrent_streams for the
// waypoint's inner listener is 2^31, which we do NOT copy: 100 like ztunnel's HBONE limit).

export interface WaypointLimits {
  /** Request head bytes (request line + headers). Over → 431 (HTTP/1.1) or a stream reset by nghttp2 (HTTP/2). Default 16 KiB. */
  maxHeaderBytes: number;
  /** Time to receive a complete request head (slowloris). Over → 408 and close. Default 10 s. */
  headersTimeoutMs: number;
  /** Idle keep-alive connection timeout. Default 60 s. */
  keepAliveTimeoutMs: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients; extra streams are refused. Default 100. */
  maxConcurrentStreams: number;
  /**
   * Rapid reset (CVE-2023-44487): client stream resets allowed per HTTP/2 session in `resetWindowMs`;
   * over → GOAWAY ENHANCE_YOUR_CALM and the session is closed. Default 200 per 1 s.
   */
  maxResetsPerWindow: number;
  resetWindowMs: number;
  /** Time to recognise the protocol inside the tunnel before treating it as opaque TCP. Default 2 s. */
  detectTimeoutMs: number;
}

export const DEFAULT_LIMITS: WaypointLimits = {
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 60_000,
  maxConcurrentStreams: 100,
  maxResetsPerWindow: 200,
  resetWindowMs: 1000,
  detectTimeoutMs: 2000,
};

export function resolveLimits(partial: Partial<WaypointLimits> = {}): WaypointLimits {
  const l = { ...DEFAULT_LIMITS, ...partial };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isInteger(v) || v <= 0) {
      throw new Error(`waypoint limits: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  return l;
}

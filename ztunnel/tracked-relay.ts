// The byte-copying phase every ztunnel path ends in: register the connection with the connection
// manager (so a policy change can re-check and close it, and drain can count it), relay both ways,
// and finish its telemetry once with why it closed.
import type { Duplex } from 'node:stream';
import type { ConnectionReport } from '../core/telemetry/connection-report.js';
import type { TrackedConnection } from './connection-manager.js';
import { messageOf } from './errors.js';
import type { ProxyContext } from './proxy-context.js';
import { relay } from '../core/relay/relay.js';

export interface TrackOptions {
  direction: TrackedConnection['direction'];
  /** The local pod the connection belongs to (drain and per-pod counts). */
  podIp: string;
  /** Re-evaluates the connection's policy after a state change: a reason to close it, or undefined. */
  recheck?: () => string | undefined;
}

export async function relayTracked(
  ctx: ProxyContext,
  report: ConnectionReport,
  track: TrackOptions,
  downstream: Duplex,
  upstream: Duplex,
): Promise<void> {
  report.open();
  let closeReason: string | undefined;
  const untrack = ctx.connections.track({
    id: report.id,
    ...track,
    close: (reason) => {
      closeReason ??= reason;
      downstream.destroy();
      upstream.destroy();
    },
  });
  const result = await relay(downstream, upstream, {
    onRequestBytes: (n) => {
      report.requestBytes += n;
    },
    onResponseBytes: (n) => {
      report.responseBytes += n;
    },
  });
  untrack();
  const error = closeReason ?? (result.error ? messageOf(result.error) : undefined);
  // A connection closed by a policy re-check is a denial in telemetry (response_flags DENY).
  report.finish(error, closeReason?.includes('policy') ? 'DENY' : 'CONNECT');
}

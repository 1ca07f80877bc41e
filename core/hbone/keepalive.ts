// HTTP/2 keepalive for HBONE sessions, both sides: a PING every `pingIntervalMs` (10 s), and a
// session whose PING is not acknowledged within `pingTimeoutMs` (20 s) is destroyed
// (istio/ztunnel src/proxy/h2.rs; Envoy waypoints use the same 10 s / 20 s).
import type * as http2 from 'node:http2';
import type { HboneSettings } from './settings.js';

export function startKeepalive(
  session: http2.Http2Session,
  settings: Pick<HboneSettings, 'pingIntervalMs' | 'pingTimeoutMs'>,
  onDead: (err: Error) => void,
): void {
  let outstanding: NodeJS.Timeout | undefined;
  const interval = setInterval(() => {
    if (session.destroyed || session.closed || outstanding) return;
    outstanding = setTimeout(() => {
      const err = new Error(`no PING acknowledgement within ${settings.pingTimeoutMs} ms`);
      onDead(err);
      session.destroy(err);
    }, settings.pingTimeoutMs);
    outstanding.unref();
    const sent = session.ping((err) => {
      clearTimeout(outstanding);
      outstanding = undefined;
      // An error here means the session is going away; its own 'close' cleans up.
      void err;
    });
    if (!sent) {
      clearTimeout(outstanding);
      outstanding = undefined;
    }
  }, settings.pingIntervalMs);
  interval.unref();
  session.once('close', () => {
    clearInterval(interval);
    if (outstanding) clearTimeout(outstanding);
  });
}

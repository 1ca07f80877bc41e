// Streams the waypoint itself resets (upstream failure mid-response, handler error) are marked, so the
// rapid-reset guard (h2.ts) counts only resets the CLIENT sent: a broken backend must never make the
// waypoint GOAWAY its own clients.
import type * as http2 from 'node:http2';

const local = new WeakSet<http2.Http2Stream>();

export function resetStream(stream: http2.Http2Stream, code: number): void {
  local.add(stream);
  if (!stream.destroyed && !stream.closed) stream.close(code);
}

export function resetByUs(stream: http2.Http2Stream): boolean {
  return local.has(stream);
}

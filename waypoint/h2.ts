// HTTP/2 with prior knowledge (gRPC) on a tunneled stream. Node's HTTP/2 server takes the stream with
// `emit('connection', stream)` (wrapped in a JS stream socket) and runs nghttp2 on it. Protections,
// each confined to the abusive client's session:
//  - SETTINGS_MAX_CONCURRENT_STREAMS = maxConcurrentStreams; streams beyond it are refused
//    (RST_STREAM REFUSED_STREAM) and a client that keeps opening them is cut off after
//    maxSessionRejectedStreams (Node: GOAWAY ENHANCE_YOUR_CALM);
//  - rapid reset (CVE-2023-44487): more than maxResetsPerWindow client resets within resetWindowMs →
//    GOAWAY ENHANCE_YOUR_CALM and the session is closed;
//  - SETTINGS_MAX_HEADER_LIST_SIZE = maxHeaderBytes; bigger header blocks are refused;
//  - an idle session (no frames for keepAliveTimeoutMs) is closed.
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { WaypointLimits } from './limits.js';
import type { TunnelContext } from './request.js';
import { resetByUs, resetStream } from './stream-reset.js';

export type H2RequestHandler = (
  ctx: TunnelContext,
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
) => Promise<void>;

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = http2.constants;

export class H2Front {
  readonly server: http2.Http2Server;
  private readonly contexts = new WeakMap<http2.Http2Session, TunnelContext>();
  private pending: { ctx: TunnelContext; tunnel: Duplex } | undefined;
  private readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(
    private readonly limits: WaypointLimits,
    handler: H2RequestHandler,
    private readonly log: Logger,
  ) {
    this.server = http2.createServer({
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderBytes,
        enablePush: false,
      },
      // Node counts the streams it has closed but not yet released (it frees them on the next loop turn)
      // against SETTINGS_MAX_CONCURRENT_STREAMS: a batch of HEADERS+RST_STREAM pairs read at once has
      // Node refuse the pairs past 100 itself (RST_STREAM ENHANCE_YOUR_CALM), and past
      // maxSessionRejectedStreams it drops the session with no GOAWAY at all. Through a relay that batches
      // writes (ztunnel) a rapid-reset client hit that before guardRapidReset, which sees only the
      // streams Node accepted, could answer with GOAWAY ENHANCE_YOUR_CALM. The guard acts first now;
      // this stays a bound (Node counts per session, never resetting).
      maxSessionRejectedStreams: 10 * limits.maxResetsPerWindow,
      maxSessionInvalidFrames: 100,
    });
    this.server.setTimeout(limits.keepAliveTimeoutMs);
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      // `emit('connection')` creates the session synchronously: the tunnel context is the pending one.
      const pending = this.pending;
      if (pending) this.contexts.set(session, pending.ctx);
      this.sessions.add(session);
      session.once('close', () => {
        this.sessions.delete(session);
        // The session sits on a JS stream wrapper that does not end the tunnel: end it here, so the
        // client sees the GOAWAY and then the tunnel close.
        if (pending && !pending.tunnel.destroyed) {
          pending.tunnel.end();
          setTimeout(() => pending.tunnel.destroy(), 1000).unref();
        }
      });
      this.guardRapidReset(session);
    });
    this.server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
      const ctx = this.contexts.get(req.stream.session as http2.Http2Session);
      if (!ctx) {
        resetStream(res.stream, http2.constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      handler(ctx, req, res).catch((err: unknown) => {
        this.log.error({ err: (err as Error).message }, 'HTTP/2 request handler failed');
        resetStream(res.stream, http2.constants.NGHTTP2_INTERNAL_ERROR);
      });
    });
    this.server.on('sessionError', (err) => this.log.debug({ err: err.message }, 'HTTP/2 session error'));
  }

  private guardRapidReset(session: http2.ServerHttp2Session): void {
    const { maxResetsPerWindow, resetWindowMs } = this.limits;
    let windowStart = Date.now();
    let resets = 0;
    let cutOff = false;
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      stream.once('close', () => {
        // A stream the CLIENT cancelled before we finished answering it.
        if (
          stream.rstCode === NGHTTP2_NO_ERROR ||
          resetByUs(stream) ||
          stream.sentTrailers ||
          (stream.headersSent && stream.writableEnded)
        )
          return;
        const now = Date.now();
        if (now - windowStart > resetWindowMs) {
          windowStart = now;
          resets = 0;
        }
        resets++;
        if (resets > maxResetsPerWindow && !session.destroyed && !cutOff) {
          cutOff = true;
          this.log.warn(
            { resets, windowMs: resetWindowMs },
            'HTTP/2 rapid reset: closing the session (GOAWAY ENHANCE_YOUR_CALM)',
          );
          session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
          // Give the GOAWAY frame time to leave through the tunnel, then drop whatever is still open.
          setTimeout(() => session.destroy(), 200).unref();
        }
      });
    });
  }

  /** Serves HTTP/2 on one tunnel. */
  serve(stream: Duplex, ctx: TunnelContext): void {
    this.pending = { ctx, tunnel: stream };
    try {
      this.server.emit('connection', stream);
    } finally {
      this.pending = undefined;
    }
    stream.resume();
  }

  close(): void {
    for (const s of this.sessions) s.destroy();
    this.server.close();
  }
}

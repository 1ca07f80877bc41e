// The one byte relay of every proxy path (ztunnel's, and the waypoint's opaque TCP). Copies bytes both
// ways between the downstream (app or tunnel stream) and the upstream, counting them for telemetry. A FIN in one direction becomes end() on the other side (istio/ztunnel src/copy.rs:
// half-close maps to END_STREAM on HBONE), and an error on either side destroys both: a reset stays a
// reset. Bytes already read from one side are written to the other before that reset (a peer that
// sends a last frame and then resets, as an HTTP/2 server's GOAWAY before it drops the connection,
// must not lose the frame to its own reset). Resolves once both sides are closed, with the first error seen.
import net from 'node:net';
import type { Duplex } from 'node:stream';

/** Aborts one side: a TCP socket gets an RST (the app sees ECONNRESET, as behind istio/ztunnel), a stream is destroyed (RST_STREAM). */
function abort(side: Duplex): void {
  if (side.destroyed) return;
  if (side instanceof net.Socket && !side.connecting) side.resetAndDestroy();
  else side.destroy();
}

/**
 * How long a side being aborted may take to take in the bytes the relay already wrote to it (a peer that
 * stopped reading must not keep the connection for ever).
 */
export const RELAY_FLUSH_TIMEOUT_MS = 1000;

/** Writes to one side that Node has not yet handed to the kernel (or to nghttp2), and who waits for them. */
class Outbox {
  pending = 0;
  private waiters: (() => void)[] = [];

  written = (): void => {
    this.pending--;
    if (this.pending === 0) for (const w of this.waiters.splice(0)) w();
  };

  /** Calls `then` once every write so far has completed (at once when none is pending). */
  whenFlushed(then: () => void): void {
    if (this.pending === 0) then();
    else this.waiters.push(then);
  }
}

/**
 * Aborts `side` after the bytes already relayed to it have left the process: the relay's corked batch is
 * sent and the writes still buffered in the stream complete first, bounded by RELAY_FLUSH_TIMEOUT_MS.
 * Resetting at once dropped them (a TCP RST and RST_STREAM discard what is still queued).
 */
function abortAfterFlush(side: Duplex, outbox: Outbox): void {
  if (side.destroyed) return;
  while (side.writableCorked > 0) side.uncork();
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    abort(side);
  };
  const timer = setTimeout(finish, RELAY_FLUSH_TIMEOUT_MS);
  timer.unref();
  outbox.whenFlushed(finish);
}

/**
 * Stream buffer limit for this process (Node's default is 16 KiB). The relay pauses a source while
 * its destination holds more than this; at 16 KiB every 64 KiB socket read or HTTP/2 DATA burst
 * paused the source and stalled the HBONE pipeline for a loop turn (bench/ztunnel bulk: both proxies
 * ~30-40 % idle at 1.3 Gbit/s). A limit, not an allocation: idle connections cost nothing more.
 */
export const RELAY_HIGH_WATER_MARK = 256 * 1024;

export interface RelayCounters {
  /** Client → server bytes (downstream → upstream). */
  onRequestBytes(n: number): void;
  /** Server → client bytes (upstream → downstream). */
  onResponseBytes(n: number): void;
}

export interface RelayResult {
  error?: Error;
}

export interface RelayOptions {
  /**
   * The downstream's FIN was already read before the relay started (the waypoint's protocol detection
   * can consume it): the upstream is half-closed at once and that direction counts as ended.
   */
  downstreamEnded?: boolean;
}

export function relay(
  downstream: Duplex,
  upstream: Duplex,
  counters: RelayCounters,
  opts: RelayOptions = {},
): Promise<RelayResult> {
  return new Promise((resolve) => {
    let firstError: Error | undefined;
    let closed = 0;
    const onClose = (): void => {
      closed++;
      if (closed === 2) resolve(firstError ? { error: firstError } : {});
    };
    const toDownstream = new Outbox();
    const toUpstream = new Outbox();
    const fail =
      (other: Duplex, outbox: Outbox) =>
      (err: Error): void => {
        firstError ??= err;
        abortAfterFlush(other, outbox);
      };
    downstream.on('data', (b: Buffer) => counters.onRequestBytes(b.length));
    upstream.on('data', (b: Buffer) => counters.onResponseBytes(b.length));
    downstream.on('error', fail(upstream, toUpstream));
    upstream.on('error', fail(downstream, toDownstream));
    // A side that closes without a clean end (reset, destroy) takes the other down too; a clean end
    // only half-closes, which pipe() does through end().
    downstream.once('close', () => {
      if (!downstream.readableEnded || !downstream.writableFinished) abortAfterFlush(upstream, toUpstream);
      onClose();
    });
    upstream.once('close', () => {
      if (!upstream.readableEnded || !upstream.writableFinished) abortAfterFlush(downstream, toDownstream);
      onClose();
    });
    // Once both directions have ended, close both (a socket with allowHalfOpen stays open otherwise).
    let ended = opts.downstreamEnded ? 1 : 0;
    const onEnd = (): void => {
      ended++;
      if (ended === 2) {
        downstream.end();
        upstream.end();
      }
    };
    if (opts.downstreamEnded) upstream.end();
    else downstream.once('end', onEnd);
    upstream.once('end', onEnd);
    if (!opts.downstreamEnded) forward(downstream, upstream, toUpstream);
    forward(upstream, downstream, toDownstream);
  });
}

/**
 * pipe() with write batching. One socket read on the HBONE side yields several HTTP/2 DATA frames
 * (Node's nghttp2 sends 16 KiB frames whatever SETTINGS_MAX_FRAME_SIZE allows), each delivered as its
 * own 'data' event from its own C++ callback, so process.nextTick runs between them and batches
 * nothing (measured: 1.0 chunk per tick, 6 per setImmediate). The first chunk of a loop turn is written
 * at once (a lone request/response keeps its latency); the ones after it in the same turn are corked
 * and go out together as one writev when the turn's I/O is done (setImmediate). bench/ztunnel bulk, the
 * receiving ztunnel: 2.16 -> 1.36 CPU-s/GB. Backpressure as pipe(): pause the source while the
 * destination is over its high-water mark.
 */
function forward(src: Duplex, dst: Duplex, outbox: Outbox): void {
  let corked = false;
  let waiting = false;
  const uncork = (): void => {
    corked = false;
    dst.uncork();
  };
  const onDrain = (): void => {
    waiting = false;
    src.resume();
  };
  src.on('data', (chunk: Buffer) => {
    if (dst.destroyed) return;
    outbox.pending++;
    const ok = dst.write(chunk, outbox.written);
    if (!corked) {
      corked = true;
      dst.cork();
      setImmediate(uncork);
    }
    if (!ok && !waiting) {
      waiting = true;
      src.pause();
      dst.once('drain', onDrain);
    }
  });
  src.once('end', () => {
    if (!dst.destroyed) dst.end();
  });
  // A source a previous reader paused (the waypoint's protocol detection) does not flow by itself
  // when a 'data' listener is added; the relay owns it now.
  if (src.isPaused()) src.resume();
}

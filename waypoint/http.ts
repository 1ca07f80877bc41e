// HTTP/1.1 on a tunneled stream. Node's HTTP server parses the stream handed to it with
// `emit('connection', stream)` and enforces the request-head limits (limits.ts), which answer abusive
// clients with a clear status and close only THEIR connection:
//  - head over maxHeaderBytes → 431 Request Header Fields Too Large;
//  - malformed request line / headers → 400 Bad Request;
//  - head not complete within headersTimeoutMs (slowloris) → 408 Request Timeout.
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { WaypointLimits } from './limits.js';
import type { TunnelContext } from './request.js';
import { tunnelSocket } from './tunnel-socket.js';
import { isTunnelledUpgrade } from './upgrade.js';

export type RequestHandler = (
  ctx: TunnelContext,
  req: http.IncomingMessage,
  res: http.ServerResponse,
) => Promise<void>;

function clientErrorStatus(err: NodeJS.ErrnoException): [number, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'Request Header Fields Too Large'];
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_HEADER_TIMEOUT':
      return [408, 'Request Timeout'];
    default:
      return [400, 'Bad Request'];
  }
}

export type UpgradeHandler = (
  ctx: TunnelContext,
  req: http.IncomingMessage,
  socket: Duplex,
  held: Buffer,
  resumeHttp: (held: Buffer) => void,
) => Promise<void>;

/** The request head again without its upgrade (Upgrade, HTTP2-Settings and those tokens of Connection). */
function withoutUpgrade(req: http.IncomingMessage): Buffer {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    const k = name.toLowerCase();
    let v = req.rawHeaders[i + 1]!;
    if (k === 'upgrade' || k === 'http2-settings') continue;
    if (k === 'connection') {
      v = v
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t && !/^(?:upgrade|http2-settings)$/i.test(t))
        .join(', ');
      if (!v) continue;
    }
    lines.push(`${name}: ${v}`);
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

const refuse = (socket: Duplex, text: string): void => {
  const body = `${text}\n`;
  socket.end(
    `HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
  );
};

export class Http1Front {
  readonly server: http.Server;
  private readonly contexts = new WeakMap<object, TunnelContext>();
  private readonly heads = new WeakMap<object, { busy(): void; idle(): void }>();
  /** Per connection: responses not yet finished, and who waits for none to be left. */
  private readonly inFlight = new WeakMap<object, { count: number; waiters: (() => void)[] }>();

  constructor(
    private readonly limits: WaypointLimits,
    handler: RequestHandler,
    private readonly log: Logger,
    upgrade?: UpgradeHandler,
  ) {
    this.server = http.createServer({
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      // Bodies are bounded by the route timeouts and the buffered-body cap, not by a server-wide clock.
      requestTimeout: 0,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // How often the headers timeout is checked (Node default 30 s would let slowloris linger).
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
      // Unknown methods, bad chunking and bare LF are rejected (Node's strict llhttp), like Envoy.
      insecureHTTPParser: false,
    });
    this.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const head = this.heads.get(req.socket);
      head?.busy();
      res.once('finish', () => head?.idle());
      const flight = this.inFlight.get(req.socket);
      if (flight) {
        flight.count++;
        res.once('close', () => {
          flight.count--;
          if (flight.count === 0) for (const w of flight.waiters.splice(0)) w();
        });
      }
      const ctx = this.contexts.get(req.socket);
      if (!ctx) {
        res.writeHead(500).end();
        return;
      }
      handler(ctx, req, res).catch((err: unknown) => {
        this.log.error({ err: (err as Error).message }, 'HTTP/1.1 request handler failed');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, held: Buffer) => {
      this.heads.get(socket)?.busy();
      const ctx = this.contexts.get(socket);
      if (!ctx || !upgrade) {
        socket.destroy();
        return;
      }
      // Earlier pipelined responses on this connection go out first, in order (RFC 9112 §9.3.2).
      this.whenIdle(socket, () => {
        const resumeHttp = (rest: Buffer): void => this.resumeHttp(socket, rest);
        if (!isTunnelledUpgrade(req)) {
          // Not a configured upgrade type: a plain request without its Upgrade header (Envoy ignores
          // upgrades that are not in upgrade_configs). The head is parsed again with what followed it.
          resumeHttp(Buffer.concat([withoutUpgrade(req), held]));
          return;
        }
        upgrade(ctx, req, socket, held, resumeHttp).catch((err: unknown) => {
          this.log.error({ err: (err as Error).message }, 'HTTP/1.1 upgrade handler failed');
          socket.destroy();
        });
      });
    });
    // HTTP/1.1 CONNECT is not proxied (Envoy: only when upgrade_configs names CONNECT; Istio's waypoint does not).
    this.server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
      this.log.info('HTTP/1.1 CONNECT refused (400)');
      refuse(socket, 'CONNECT is not supported through the waypoint');
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const [status, text] = clientErrorStatus(err);
      this.log.info({ code: err.code, status, err: err.message }, 'HTTP/1.1 client error');
      if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
        const body = `${text}\n`;
        socket.end(
          `HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        );
      } else {
        socket.destroy();
      }
    });
  }

  /** Serves HTTP/1.1 on one tunnel. */
  serve(tunnel: Duplex, ctx: TunnelContext): void {
    const socket = tunnelSocket(tunnel);
    this.contexts.set(socket, ctx);
    this.inFlight.set(socket, { count: 0, waiters: [] });
    this.guardHead(socket);
    this.server.emit('connection', socket);
  }

  /** Hands a connection taken over by an upgrade back to the HTTP parser, `rest` first. */
  private resumeHttp(socket: Duplex, rest: Buffer): void {
    if (socket.destroyed) return;
    if (rest.length > 0) socket.unshift(rest);
    this.heads.get(socket)?.idle();
    this.server.emit('connection', socket);
  }

  private whenIdle(socket: Duplex, run: () => void): void {
    const flight = this.inFlight.get(socket);
    if (!flight || flight.count === 0) run();
    else flight.waiters.push(run);
  }

  // Slowloris: Node's own headersTimeout is checked on its connection list, which does not follow
  // sockets handed over with emit('connection'), so the head clock runs here: it starts with the first
  // byte of a request and stops when the head is complete ('request'); a head still incomplete after
  // headersTimeoutMs gets 408 and the tunnel is closed.
  private guardHead(socket: Duplex): void {
    let state: 'idle' | 'head' | 'busy' = 'idle';
    let timer: NodeJS.Timeout | undefined;
    const stop = (): void => {
      if (timer) clearTimeout(timer);
      timer = undefined;
    };
    socket.on('data', () => {
      if (state !== 'idle') return;
      state = 'head';
      timer = setTimeout(() => {
        if (state !== 'head' || socket.destroyed) return;
        this.log.info({ timeoutMs: this.limits.headersTimeoutMs }, 'HTTP/1.1 request head timeout (408)');
        const body = 'Request Timeout\n';
        socket.end(
          `HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\n\r\n${body}`,
        );
        setTimeout(() => socket.destroy(), 1000).unref();
      }, this.limits.headersTimeoutMs);
    });
    this.heads.set(socket, {
      busy: () => {
        state = 'busy';
        stop();
      },
      idle: () => {
        state = 'idle';
      },
    });
    socket.once('close', stop);
  }

  close(): void {
    this.server.closeAllConnections();
    this.server.close();
  }
}

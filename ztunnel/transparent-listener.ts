// The transparent capture listener: 0.0.0.0:1500x with IP_TRANSPARENT, so that connections steered
// to it by tc `bpf_sk_assign` or nftables TPROXY — SYNs for addresses this host does not own — are
// accepted, and `socket.localAddress/localPort` IS the original destination while `remoteAddress`
// is the real client (kernel Documentation/networking/tproxy.rst; docs/architecture.md §5). Without IP_TRANSPARENT the kernel
// takes the assigned SYN but never answers it.
//
// Stays bound to the wildcard address: bpf-redirect finds the listener by port alone
// (`bpf_skc_lookup_tcp` with an all-zero address), and TPROXY `to :port` does the same.
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import ipaddr from 'ipaddr.js';
import { type Logger, pino } from 'pino';
import { getOriginalDst, listenInNetns } from './native/index.js';
import {
  CAPTURE_PORTS,
  type CaptureContext,
  type CaptureKind,
  type CaptureListener,
  type CaptureRejection,
  type SocketAddress,
  loopGuard,
} from './capture.js';

export interface TransparentListenerOptions {
  kind: CaptureKind;
  /** Default: ztunnel's port for the kind (15001 / 15006 / 15008). */
  port?: number;
  /** Default 0.0.0.0 (see the header: the listener is found by port). */
  host?: string;
  /** Create the listening socket in this network namespace (e.g. /run/netns/<node>); default: ours. */
  netnsPath?: string;
  /** IP_TRANSPARENT on the listener (default true; needs CAP_NET_ADMIN). false only for unprivileged tests. */
  transparent?: boolean;
  /**
   * Where the original destination comes from: the socket's local address (TPROXY, sk_assign: the
   * default) or conntrack's SO_ORIGINAL_DST (a REDIRECT/DNAT capture, where localAddress is ours).
   */
  originalDst?: 'local-address' | 'so-original-dst';
  logger?: Logger;
}

function toSocketAddress(address: string | undefined, port: number | undefined): SocketAddress | undefined {
  if (!address || port === undefined) return undefined;
  try {
    const ip = ipaddr.process(address); // ::ffff:a.b.c.d → a.b.c.d
    return { address: ip.toString(), port, family: ip.kind() === 'ipv4' ? 4 : 6 };
  } catch {
    return undefined;
  }
}

export class TransparentListener extends EventEmitter implements CaptureListener {
  readonly kind: CaptureKind;
  private readonly server: net.Server;
  private readonly log: Logger;
  private bound: SocketAddress | undefined;

  constructor(private readonly opts: TransparentListenerOptions) {
    super();
    this.kind = opts.kind;
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ listener: opts.kind });
    // noDelay: istio/ztunnel sets TCP_NODELAY on every proxied socket. allowHalfOpen: a client's FIN
    // is relayed as END_STREAM while the answer still flows back (HBONE half-close, docs/architecture.md §4).
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => this.accept(s));
    this.server.on('error', (err) => this.emit('error', err));
  }

  get address(): SocketAddress | undefined {
    return this.bound;
  }

  async start(): Promise<void> {
    const port = this.opts.port ?? CAPTURE_PORTS[this.kind];
    const host = this.opts.host ?? '0.0.0.0';
    const transparent = this.opts.transparent ?? true;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      const done = () => {
        this.server.off('error', onError);
        resolve();
      };
      if (transparent || this.opts.netnsPath) {
        // IP_TRANSPARENT before bind (the addon), in the requested namespace.
        const fd = listenInNetns(this.opts.netnsPath, host, port, { transparent });
        this.server.listen({ fd }, done);
      } else {
        this.server.listen(port, host, done);
      }
    });
    const a = this.server.address() as net.AddressInfo;
    this.bound = toSocketAddress(a.address, a.port);
    this.log.info({ address: `${a.address}:${a.port}`, transparent }, 'capture listener started');
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) {
        resolve();
        return;
      }
      this.server.close(() => resolve());
    });
  }

  private accept(socket: net.Socket): void {
    socket.on('error', (err) => this.log.debug({ err: err.message }, 'captured socket error'));
    const source = toSocketAddress(socket.remoteAddress, socket.remotePort);
    let originalDst: SocketAddress | undefined;
    if (this.opts.originalDst === 'so-original-dst') {
      try {
        const d = getOriginalDst(socket);
        originalDst = toSocketAddress(d.address, d.port);
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'no SO_ORIGINAL_DST');
      }
    } else {
      originalDst = toSocketAddress(socket.localAddress, socket.localPort);
    }
    if (!originalDst || !source) {
      this.reject(socket, {
        kind: this.kind,
        reason: 'no-original-destination',
        message: 'captured connection without an original destination or source address',
        ...(source ? { source } : {}),
      });
      return;
    }
    let loop = loopGuard(this.kind, originalDst);
    // A connection straight to this listener's own port (not captured) would loop just the same.
    if (!loop && this.kind !== 'inbound-hbone' && originalDst.port === this.bound?.port) {
      loop = `original destination ${originalDst.address}:${originalDst.port} is this ${this.kind} listener`;
    }
    if (loop) {
      this.reject(socket, { kind: this.kind, reason: 'loop', message: loop, originalDst, source });
      return;
    }
    const ctx: CaptureContext = { kind: this.kind, originalDst, source };
    if (this.listenerCount('connection') === 0) {
      // Nobody to hand it to: refuse rather than hold an unserved connection open.
      socket.resetAndDestroy();
      return;
    }
    this.emit('connection', socket, ctx);
  }

  private reject(socket: net.Socket, r: CaptureRejection): void {
    this.log.warn({ reason: r.reason, src: r.source, dst: r.originalDst }, r.message);
    // RST, not FIN: the client should see a refused connection, not an empty answer.
    socket.resetAndDestroy();
    this.emit('rejected', r);
  }
}

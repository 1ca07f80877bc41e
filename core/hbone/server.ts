// The HBONE server (ztunnel's 15008 and the waypoint's listener): TLS 1.3 mTLS with the certificate
// of the DESTINATION (no SNI: chosen by the local address the client reached, istio/ztunnel src/tls),
// client chain verified against the mesh roots and its SPIFFE ID required in our trust domain
// (istio/ztunnel TrustDomainVerifier), then HTTP/2 where every CONNECT stream is one tunnel.
//
// How it is put together, and why:
//  - TLS is terminated by one non-listening `tls.Server` per server identity, fed raw sockets with
//    `emit('connection')`. Node then enforces requestCert/rejectUnauthorized, ALPN and its handshake
//    timeout the standard way; a rotated certificate is installed with `setSecureContext`, which only
//    affects NEW connections, so live tunnels keep flowing on the old one.
//  - HTTP/2 runs on the verified TLS socket through `http2.performServerHandshake`, so the session is
//    only created after the identity checks passed (fail closed) and knows its peer.
//  - The server does not own a port: `serve(socket)` takes sockets from anywhere (a listener of its
//    own via `listen()`, or ztunnel's transparent 15008 capture listener).
import { EventEmitter } from 'node:events';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { canonicalIp as canonicalIpText } from '../route/address.js';
import { type Logger, pino } from 'pino';
import { type SpiffeId, formatSpiffeId } from '../identity/spiffe.js';
import {
  type Authority,
  type Baggage,
  type Forwarded,
  formatBaggage,
  parseAuthority,
  parseBaggage,
  parseForwarded,
  parseTraceparent,
} from './connect-request.js';
import {
  HboneError,
  IllegalPort,
  IpMismatch,
  NotConnect,
  PeerNotTrusted,
  TlsFailure,
  UnknownDestination,
  statusOf,
} from './errors.js';
import { ALPN_H2, type HboneSettings, LOOP_GUARD_PORTS, h2Settings, resolveSettings } from './settings.js';
import { type HboneCertificate, hboneTlsOptions, spiffeIdOf } from './tls.js';
import { startKeepalive } from './keepalive.js';

export interface Endpoint {
  address: string;
  port: number;
}

/** What the server knows about one CONNECT, handed to `onConnect`. */
export interface InboundConnect {
  /** The client's verified SPIFFE identity (mTLS): the source identity for policy. */
  peerIdentity: SpiffeId;
  /** Serial of the client's leaf, for logs. */
  peerSerial: string;
  /** Parsed `:authority`; already checked by `checkAuthority`. */
  authority: Authority;
  authorityText: string;
  forwarded?: Forwarded;
  baggage: Baggage;
  traceparent?: string;
  /** TCP peer of the HBONE connection: the source pod's IP when the source IP was preserved. */
  remoteAddress: string;
  remotePort: number;
  /** The address the client reached: the destination pod (original destination when captured). */
  localAddress: string;
  localPort: number;
  /** The server identity that answered (the destination's). */
  serverIdentity: SpiffeId;
  headers: http2.IncomingHttpHeaders;
  /** Answers 200 (with the destination's `baggage`, as ztunnel does) and returns the tunnel. */
  accept(responseBaggage?: Baggage): http2.ServerHttp2Stream;
}

export type ConnectHandler = (stream: http2.ServerHttp2Stream, info: InboundConnect) => Promise<void> | void;

/** Throws an HboneError (→ its status) when the authority is not acceptable on this connection. */
export type AuthorityCheck = (
  authority: Authority,
  conn: { localAddress: string; localPort: number },
) => void;

export interface HboneServerOptions {
  /**
   * The certificate to present on a connection that reached `local` (the destination pod IP; there is
   * no SNI). Called per connection, so a rotated certificate is used from the next connection on.
   * `undefined` → no workload there: the connection is closed.
   */
  certificateFor(local: Endpoint): Promise<HboneCertificate | undefined> | HboneCertificate | undefined;
  /** One call per CONNECT that passed method and authority checks. Throw an HboneError to refuse it. */
  onConnect: ConnectHandler;
  /** Default: an IP authority must be the local address (400 "ip mismatch"), a hostname is 503. */
  checkAuthority?: AuthorityCheck;
  settings?: Partial<HboneSettings>;
  logger?: Logger;
}

export interface HboneConnectionInfo {
  peerIdentity: SpiffeId;
  serverIdentity: SpiffeId;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

/** Node reports v4 peers of dual-stack sockets as ::ffff:a.b.c.d; policy wants a.b.c.d (core/route/address.ts). */
export function canonicalIp(ip: string | undefined): string {
  return ip ? canonicalIpText(ip) : '';
}

/** istio/ztunnel inbound.rs: the authority IP must be the pod this connection reached. */
export const defaultAuthorityCheck: AuthorityCheck = (authority, conn) => {
  if (authority.kind === 'hostname') {
    throw new UnknownDestination(`no service ${authority.hostname} is known to this server`);
  }
  if (canonicalIp(authority.ip) !== canonicalIp(conn.localAddress)) {
    throw new IpMismatch(authority.ip, canonicalIp(conn.localAddress));
  }
};

interface IdentityTerminator {
  server: tls.Server;
  cert: HboneCertificate;
}

/**
 * Events: 'secureConnection' (info: HboneConnectionInfo) after a connection passed every check;
 * 'tlsClientError' (err: HboneError, remote: Endpoint) when one was refused.
 */
export class HboneServer extends EventEmitter {
  readonly settings: HboneSettings;
  private readonly log: Logger;
  private readonly terminators = new Map<string, IdentityTerminator>();
  private readonly sockets = new Set<net.Socket>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly listeners_ = new Set<net.Server>();
  private closed = false;
  private readonly checkAuthority: AuthorityCheck;

  constructor(private readonly opts: HboneServerOptions) {
    super();
    this.settings = resolveSettings(opts.settings);
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.checkAuthority = opts.checkAuthority ?? defaultAuthorityCheck;
  }

  /** Live HTTP/2 sessions (HBONE connections). */
  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Listens on host:port (or an already-listening fd, e.g. a transparent socket) and serves it. */
  async listen(opts: { host?: string; port?: number; fd?: number }): Promise<net.AddressInfo> {
    const server = net.createServer({ noDelay: true }, (s) => this.serve(s));
    this.listeners_.add(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const done = () => {
        server.off('error', reject);
        resolve();
      };
      if (opts.fd !== undefined) server.listen({ fd: opts.fd }, done);
      else server.listen(opts.port ?? 0, opts.host ?? '0.0.0.0', done);
    });
    server.on('error', (err) => this.log.error({ err }, 'HBONE listener error'));
    return server.address() as net.AddressInfo;
  }

  /** Serves one accepted TCP connection. */
  serve(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', (err) => this.log.debug({ err }, 'HBONE socket error'));
    socket.setNoDelay(true);
    const local = { address: canonicalIp(socket.localAddress), port: socket.localPort ?? 0 };
    const remote = { address: canonicalIp(socket.remoteAddress), port: socket.remotePort ?? 0 };
    // Hold the bytes of the ClientHello while the certificate is looked up (it may be async).
    socket.pause();
    // The lookup shares the handshake deadline: a connection never waits longer than that for a cert.
    let lookupTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      lookupTimer = setTimeout(
        () => reject(new UnknownDestination(`certificate lookup for ${local.address} timed out`)),
        this.settings.handshakeTimeoutMs,
      );
      lookupTimer.unref();
    });
    Promise.race([Promise.resolve().then(() => this.opts.certificateFor(local)), deadline])
      .finally(() => clearTimeout(lookupTimer))
      .then(
        (cert) => {
          if (socket.destroyed) return;
          if (!cert) {
            this.refuse(
              socket,
              new UnknownDestination(`no workload certificate for ${local.address}`),
              remote,
            );
            return;
          }
          const t = this.terminatorFor(cert);
          // No resume(): with no 'data' listener it would discard the buffered ClientHello. The TLS
          // wrap replays whatever the socket already buffered (node _tls_wrap "emulate receiving it").
          // tls.Server's connection listener wraps the socket; 'secureConnection' follows.
          t.server.emit('connection', socket);
        },
        (err: unknown) =>
          this.refuse(
            socket,
            err instanceof HboneError
              ? err
              : new UnknownDestination(`certificate lookup for ${local.address} failed`),
            remote,
          ),
      );
  }

  /** Stops listening and accepting; live sessions get GOAWAY and may finish. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.listeners_].map((l) => new Promise<void>((resolve) => l.close(() => resolve()))),
    );
    for (const s of this.sessions) s.close();
  }

  /** Closes every connection now (after close(), for drain deadlines and tests). */
  destroy(): void {
    this.closed = true;
    for (const l of this.listeners_) l.close();
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
  }

  /** Forgets the TLS terminator of an identity whose last workload left this node. */
  releaseIdentity(identity: SpiffeId): void {
    const key = formatSpiffeId(identity);
    if (!this.terminators.has(key)) return;
    // Connections mid-handshake keep their reference to it and finish normally.
    this.terminators.delete(key);
  }

  private refuse(socket: net.Socket, err: HboneError, remote: Endpoint): void {
    this.log.warn(
      { src: `${remote.address}:${remote.port}`, error: err.message },
      'HBONE connection refused',
    );
    socket.destroy();
    this.emit('tlsClientError', err, remote);
  }

  private terminatorFor(cert: HboneCertificate): IdentityTerminator {
    const key = formatSpiffeId(cert.identity);
    const existing = this.terminators.get(key);
    const tlsOptions: tls.TlsOptions = hboneTlsOptions(cert);
    if (existing) {
      // A new leaf (rotation) or a new trust bundle (root rotation) → new context for NEW connections.
      const changed =
        existing.cert !== cert &&
        (existing.cert.serial !== cert.serial || existing.cert.rootsPem.join('') !== cert.rootsPem.join(''));
      if (changed) {
        // Rotation: new connections present the new certificate; live ones are untouched.
        existing.server.setSecureContext(tlsOptions);
        existing.cert = cert;
        this.log.info({ identity: key, serial: cert.serial }, 'HBONE server certificate rotated');
      }
      return existing;
    }
    const server = tls.createServer({
      ...tlsOptions,
      requestCert: true,
      // Verified in onSecure instead: with `true` Node destroys an unverified client silently, and
      // we want every refused peer logged and counted. The decision is the same (fail closed).
      rejectUnauthorized: false,
      ALPNProtocols: ALPN_H2,
      handshakeTimeout: this.settings.handshakeTimeoutMs,
    });
    const t: IdentityTerminator = { server, cert };
    server.on('secureConnection', (s: tls.TLSSocket) => this.onSecure(s, t));
    server.on('tlsClientError', (err: Error, s: tls.TLSSocket) => {
      const remote = { address: canonicalIp(s.remoteAddress), port: s.remotePort ?? 0 };
      this.log.warn(
        { src: `${remote.address}:${remote.port}`, err: err.message },
        'HBONE TLS handshake failed',
      );
      this.emit('tlsClientError', new TlsFailure(`${remote.address}:${remote.port}`, err), remote);
    });
    this.terminators.set(key, t);
    return t;
  }

  private onSecure(socket: tls.TLSSocket, t: IdentityTerminator): void {
    const remote = { address: canonicalIp(socket.remoteAddress), port: socket.remotePort ?? 0 };
    const local = { address: canonicalIp(socket.localAddress), port: socket.localPort ?? 0 };
    socket.on('error', (err) => this.log.debug({ err }, 'HBONE TLS socket error'));
    const serverTd = t.cert.identity.trustDomain;
    let peerIdentity: SpiffeId | undefined;
    let failure: HboneError | undefined;
    if (socket.alpnProtocol !== 'h2') {
      failure = new PeerNotTrusted(`client did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})`);
    } else if (!socket.authorized) {
      failure = new PeerNotTrusted(`client certificate not verified: ${String(socket.authorizationError)}`);
    } else {
      const peer = socket.getPeerCertificate();
      peerIdentity = spiffeIdOf(peer);
      if (!peerIdentity) {
        failure = new PeerNotTrusted('client certificate has no SPIFFE URI SAN');
      } else if (peerIdentity.trustDomain !== serverTd) {
        // istio/ztunnel TrustDomainVerifier: the client's trust domain must equal our own.
        failure = new PeerNotTrusted(
          `client ${formatSpiffeId(peerIdentity)} is not in trust domain ${serverTd}`,
        );
      }
    }
    if (failure || !peerIdentity) {
      this.refuse(socket, failure ?? new PeerNotTrusted('no identity'), remote);
      return;
    }
    const conn: HboneConnectionInfo = {
      peerIdentity,
      serverIdentity: t.cert.identity,
      remoteAddress: remote.address,
      remotePort: remote.port,
      localAddress: local.address,
      localPort: local.port,
    };
    const peerSerial = socket.getPeerCertificate().serialNumber ?? '';
    const session = http2.performServerHandshake(socket, {
      settings: h2Settings(this.settings, 'server'),
      maxSessionMemory: this.settings.maxSessionMemoryMb,
      maxHeaderListPairs: 128,
    });
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
    session.on('error', (err) => this.log.debug({ err }, 'HBONE session error'));
    // The connection window is not a SETTINGS value; it is raised with a WINDOW_UPDATE on stream 0.
    session.setLocalWindowSize(this.settings.connectionWindowBytes);
    startKeepalive(session, this.settings, (err) =>
      this.log.info({ err: err.message }, 'HBONE peer unresponsive'),
    );
    session.on('stream', (stream, headers) => this.onStream(stream, headers, conn, peerSerial));
    this.emit('secureConnection', conn);
  }

  private onStream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    conn: HboneConnectionInfo,
    peerSerial: string,
  ): void {
    stream.on('error', (err) => this.log.debug({ err }, 'HBONE stream error'));
    let answered = false;
    const reject = (err: unknown) => {
      if (answered || stream.destroyed || stream.closed) return;
      answered = true;
      const { status } = statusOf(err);
      if (!(err instanceof HboneError)) this.log.error({ err }, 'HBONE connect handler failed');
      else
        this.log.debug(
          { src: `${conn.remoteAddress}:${conn.remotePort}`, status, error: err.message },
          'HBONE CONNECT refused',
        );
      if (stream.headersSent) {
        stream.close(http2.constants.NGHTTP2_CANCEL);
      } else {
        stream.respond({ ':status': status }, { endStream: true });
      }
    };
    try {
      const method = headers[':method'];
      if (method !== 'CONNECT') throw new NotConnect(method);
      const authorityText = headers[':authority'];
      const authority = parseAuthority(authorityText);
      this.checkAuthority(authority, conn);
      if (LOOP_GUARD_PORTS.has(authority.port)) throw new IllegalPort(authority.port);
      const forwarded = parseForwarded(headers.forwarded);
      const traceparent = parseTraceparent(headers.traceparent);
      const info: InboundConnect = {
        peerIdentity: conn.peerIdentity,
        peerSerial,
        authority,
        authorityText: authorityText ?? '',
        ...(forwarded ? { forwarded } : {}),
        baggage: parseBaggage(headers.baggage),
        ...(traceparent ? { traceparent } : {}),
        remoteAddress: conn.remoteAddress,
        remotePort: conn.remotePort,
        localAddress: conn.localAddress,
        localPort: conn.localPort,
        serverIdentity: conn.serverIdentity,
        headers,
        accept: (responseBaggage?: Baggage) => {
          if (answered) throw new Error('HBONE stream already answered');
          answered = true;
          const h: http2.OutgoingHttpHeaders = { ':status': 200 };
          const b = responseBaggage ? formatBaggage(responseBaggage) : '';
          if (b) h.baggage = b;
          stream.respond(h, { endStream: false });
          return stream;
        },
      };
      Promise.resolve()
        .then(() => this.opts.onConnect(stream, info))
        .then(() => {
          // A handler that neither accepted nor refused: fail closed.
          if (!answered) reject(new UnknownDestination(`CONNECT ${info.authorityText} was not handled`));
        }, reject);
    } catch (err) {
      reject(err);
    }
  }
}

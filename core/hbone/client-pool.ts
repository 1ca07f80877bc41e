// The HBONE client: a pool of mTLS HTTP/2 connections, one CONNECT stream per tunneled connection
// (istio/ztunnel src/proxy/pool.rs, src/proxy/h2/client.rs).
//  - Pool key: (source identity, expected destination identities, next hop, source IP). Several
//    connections per key; one is handed out until it would exceed min(maxStreamsPerConnection = 100,
//    the peer's SETTINGS_MAX_CONCURRENT_STREAMS), then the next caller opens a new one.
//  - Concurrent first use waits for ONE handshake: a per-key pending dial is shared.
//  - A connection with no streams is released after `idleReleaseMs` (POOL_UNUSED_RELEASE_TIMEOUT).
//  - The server must present one of the expected SPIFFE IDs (any URI SAN equal to any expected ID);
//    otherwise the connection fails with IdentityMismatch. No SNI is sent; no session resumption.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { type Logger, pino } from 'pino';
import { type SpiffeId, formatSpiffeId } from '../identity/spiffe.js';
import {
  type Baggage,
  type Forwarded,
  connectHeaders,
  formatAuthority,
  parseBaggage,
} from './connect-request.js';
import {
  CertificateUnavailable,
  ConnectTimeout,
  H2Failure,
  HboneError,
  HboneStatusError,
  IdentityMismatch,
  PoolClosed,
  TlsFailure,
  UpstreamConnectFailed,
} from './errors.js';
import { startKeepalive } from './keepalive.js';
import { ALPN_H2, type HboneSettings, h2Settings, resolveSettings } from './settings.js';
import { type HboneCertificate, matchExpectedIdentity, secureContextFor, uriSansOf } from './tls.js';

export interface NextHop {
  host: string;
  port: number;
}

export interface HboneConnectRequest {
  /** Our identity for this tunnel: the source workload's (ztunnel impersonates it) or the waypoint's. */
  sourceIdentity: SpiffeId;
  /** The server must present one of these (workload ID, service SANs, or the waypoint's). */
  expectedIdentities: SpiffeId[];
  nextHop: NextHop;
  /** Bind the HBONE connection to this (usually non-local) address: the source pod's IP. */
  sourceIp?: string;
  /** `:authority`: podIP:targetPort, or the original VIP:port for a waypoint. */
  authority: string;
  forwarded?: Forwarded;
  baggage?: Baggage;
  traceparent?: string;
  /** Extra request headers (e.g. x-forwarded-network). */
  headers?: Record<string, string>;
}

/** The HBONE client as a proxy path uses it (HboneClientPool is the implementation; tests may pass another dialer of real tunnels). */
export interface HboneDialer {
  connect(req: HboneConnectRequest): Promise<Duplex>;
}

/** What the caller learns about a tunnel besides its bytes. */
export interface TunnelInfo {
  /** The expected identity the server proved. */
  peerIdentity: SpiffeId;
  peerSerial: string;
  /** The destination's `baggage` from the 200 response (ztunnel ENABLE_RESPONSE_BAGGAGE). */
  responseBaggage: Baggage;
  /** Local/remote address of the HBONE TCP connection carrying this tunnel. */
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
}

/** The tunnel: a Duplex (END_STREAM both ways on half-close) plus what the handshake established. */
export type HboneTunnel = http2.ClientHttp2Stream & { readonly hbone: TunnelInfo };

/** Makes the TCP socket to the next hop; the default is `net.connect`. A transparent dialer binds `sourceIp`. */
export type SocketFactory = (opts: { host: string; port: number; sourceIp?: string }) => net.Socket;

export interface HboneClientPoolOptions {
  /** Our workload certificate for an identity; called for every NEW connection, so rotation is picked up. */
  certificateFor(identity: SpiffeId): Promise<HboneCertificate>;
  /** Needed when requests carry `sourceIp` (e.g. ztunnel/native `transparentSocketFactory`). */
  createSocket?: SocketFactory;
  settings?: Partial<HboneSettings>;
  logger?: Logger;
}

interface PooledConnection {
  key: string;
  session: http2.ClientHttp2Session;
  tlsSocket: tls.TLSSocket;
  peerIdentity: SpiffeId;
  peerSerial: string;
  active: number;
  maxStreams: number;
  /** No new streams: closing, errored or GOAWAY received. */
  retired: boolean;
  idleTimer?: NodeJS.Timeout;
}

interface PoolEntry {
  conns: PooledConnection[];
  pending?: Promise<PooledConnection>;
}

export function poolKey(req: HboneConnectRequest): string {
  return JSON.stringify([
    formatSpiffeId(req.sourceIdentity),
    req.expectedIdentities.map(formatSpiffeId).sort(),
    formatAuthority(req.nextHop.host, req.nextHop.port),
    req.sourceIp ?? '',
  ]);
}

export class HboneClientPool {
  readonly settings: HboneSettings;
  private readonly log: Logger;
  private readonly entries = new Map<string, PoolEntry>();
  private closed = false;
  /** Connections (TLS handshakes) made so far; for tests and metrics. */
  handshakes = 0;

  constructor(private readonly opts: HboneClientPoolOptions) {
    this.settings = resolveSettings(opts.settings);
    this.log = opts.logger ?? pino({ level: 'silent' });
  }

  /** Open HBONE connections, all keys. */
  get connectionCount(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.conns.length;
    return n;
  }

  /** Opens one tunnel; resolves once the server answered 200, rejects with an HboneError otherwise. */
  async connect(req: HboneConnectRequest): Promise<HboneTunnel> {
    if (req.expectedIdentities.length === 0) {
      throw new IdentityMismatch([], ['(none given: a tunnel needs at least one expected identity)']);
    }
    let conn = await this.acquire(req);
    if (conn.session.closed || conn.session.destroyed) {
      // It died between the handshake and now (GOAWAY, reset): one more try on a live connection.
      this.release(conn);
      this.retire(conn, false);
      conn = await this.acquire(req);
    }
    // `acquire` reserved a stream slot on `conn`; give it back when the stream closes, whatever happens.
    let stream: http2.ClientHttp2Stream;
    try {
      stream = conn.session.request(
        connectHeaders({
          authority: req.authority,
          ...(req.forwarded ? { forwarded: req.forwarded } : {}),
          ...(req.baggage ? { baggage: req.baggage } : {}),
          ...(req.traceparent ? { traceparent: req.traceparent } : {}),
          ...(req.headers ? { extra: req.headers } : {}),
        }),
        { endStream: false },
      );
    } catch (err) {
      this.release(conn);
      throw new H2Failure(`${req.nextHop.host}:${req.nextHop.port}`, err);
    }
    stream.once('close', () => this.release(conn));
    return await new Promise<HboneTunnel>((resolve, reject) => {
      const onError = (err: Error) => {
        cleanup();
        reject(new H2Failure(`${req.nextHop.host}:${req.nextHop.port}`, err));
      };
      const onClose = () => {
        cleanup();
        reject(
          new H2Failure(
            `${req.nextHop.host}:${req.nextHop.port}`,
            new Error('stream closed before a response'),
          ),
        );
      };
      const onResponse = (headers: http2.IncomingHttpHeaders) => {
        cleanup();
        const status = Number(headers[':status']);
        if (status !== 200) {
          // istio/ztunnel: any non-200 fails the connection ("http status: <code>"). The stream is
          // ours to finish; a late reset on it must not become an unhandled 'error'.
          stream.on('error', () => undefined);
          stream.close(http2.constants.NGHTTP2_CANCEL);
          reject(new HboneStatusError(status, req.authority));
          return;
        }
        const s = conn.tlsSocket;
        const info: TunnelInfo = {
          peerIdentity: conn.peerIdentity,
          peerSerial: conn.peerSerial,
          responseBaggage: parseBaggage(headers.baggage),
          localAddress: s.localAddress ?? '',
          localPort: s.localPort ?? 0,
          remoteAddress: s.remoteAddress ?? '',
          remotePort: s.remotePort ?? 0,
        };
        resolve(Object.assign(stream, { hbone: info }) as HboneTunnel);
      };
      const cleanup = () => {
        stream.off('response', onResponse);
        stream.off('error', onError);
        stream.off('close', onClose);
      };
      stream.once('response', onResponse);
      stream.once('error', onError);
      stream.once('close', onClose);
    });
  }

  /** Closes every pooled connection (GOAWAY; live streams may finish) and refuses new connects. */
  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) for (const c of e.conns) this.retire(c, true);
  }

  /** Destroys every connection now. */
  destroy(): void {
    this.closed = true;
    for (const e of this.entries.values()) for (const c of e.conns) c.session.destroy();
    this.entries.clear();
  }

  private async acquire(req: HboneConnectRequest): Promise<PooledConnection> {
    const key = poolKey(req);
    // Bounded: each round either returns, or waits for a dial that adds a connection.
    for (let round = 0; round < 1000; round++) {
      if (this.closed) throw new PoolClosed();
      let entry = this.entries.get(key);
      if (!entry) {
        entry = { conns: [] };
        this.entries.set(key, entry);
      }
      const free = entry.conns.find((c) => !c.retired && c.active < c.maxStreams);
      if (free) {
        this.reserve(free);
        return free;
      }
      if (!entry.pending) {
        const e = entry;
        e.pending = this.dial(key, req).finally(() => {
          e.pending = undefined;
        });
        const conn = await e.pending;
        if (!conn.retired) {
          // The entry may have been dropped and re-created while we dialled: add to the live one.
          const live = this.entries.get(key) ?? e;
          live.conns.push(conn);
          this.entries.set(key, live);
        }
        this.reserve(conn);
        return conn;
      }
      // Someone else's handshake is in flight for this key: wait for it (its failure is ours too:
      // no dial storm against a dead next hop), then look again.
      await entry.pending;
    }
    throw new H2Failure(
      `${req.nextHop.host}:${req.nextHop.port}`,
      new Error('pool acquire did not converge'),
    );
  }

  private reserve(c: PooledConnection): void {
    c.active++;
    if (c.idleTimer) {
      clearTimeout(c.idleTimer);
      c.idleTimer = undefined;
    }
    // Full: out of the rotation until a stream closes (istio pool.rs removes it at max streams).
  }

  private release(c: PooledConnection): void {
    c.active--;
    if (c.active > 0 || c.retired) {
      if (c.retired && c.active === 0) c.session.close();
      return;
    }
    c.idleTimer = setTimeout(() => {
      this.log.debug({ key: c.key }, 'HBONE connection idle, releasing');
      this.retire(c, true);
    }, this.settings.idleReleaseMs);
    c.idleTimer.unref();
  }

  private retire(c: PooledConnection, closeWhenIdle: boolean): void {
    c.retired = true;
    if (c.idleTimer) clearTimeout(c.idleTimer);
    const entry = this.entries.get(c.key);
    if (entry) {
      entry.conns = entry.conns.filter((x) => x !== c);
      if (entry.conns.length === 0 && !entry.pending) this.entries.delete(c.key);
    }
    if (closeWhenIdle && c.active === 0 && !c.session.closed) c.session.close();
  }

  private async dial(key: string, req: HboneConnectRequest): Promise<PooledConnection> {
    const hop = formatAuthority(req.nextHop.host, req.nextHop.port);
    const s = this.settings;
    let cert: HboneCertificate;
    try {
      cert = await this.opts.certificateFor(req.sourceIdentity);
    } catch (err) {
      throw err instanceof HboneError
        ? err
        : new CertificateUnavailable(formatSpiffeId(req.sourceIdentity), err);
    }
    this.handshakes++;
    const raw = this.openSocket(req);
    const expected = req.expectedIdentities.map(formatSpiffeId);
    const tlsSocket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      let phase: 'tcp' | 'tls' = 'tcp';
      // After the handshake settles, socket errors belong to the HTTP/2 session (or are only logged).
      let settled = false;
      let timer = setTimeout(() => fail(new ConnectTimeout(hop, s.connectTimeoutMs)), s.connectTimeoutMs);
      raw.once('connect', () => {
        phase = 'tls';
        clearTimeout(timer);
        timer = setTimeout(
          () => fail(new TlsFailure(hop, new Error('handshake timed out'))),
          s.handshakeTimeoutMs,
        );
      });
      const sock = tls.connect({
        socket: raw,
        host: req.nextHop.host,
        // No `servername`: HBONE sends no SNI (istio/ztunnel uses a dummy IP server name).
        secureContext: secureContextFor(cert),
        ALPNProtocols: ALPN_H2,
        minVersion: 'TLSv1.3',
        rejectUnauthorized: true,
        // DNS names are never checked; the server must hold one of the expected SPIFFE IDs.
        checkServerIdentity: (_host, peer) =>
          matchExpectedIdentity(peer, req.expectedIdentities)
            ? undefined
            : new IdentityMismatch(uriSansOf(peer), expected),
      });
      const fail = (err: HboneError) => {
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        raw.destroy();
        reject(err);
      };
      sock.once('secureConnect', () => {
        settled = true;
        clearTimeout(timer);
        if (sock.alpnProtocol !== 'h2') {
          fail(
            new TlsFailure(
              hop,
              new Error(`server did not negotiate ALPN h2 (got ${String(sock.alpnProtocol)})`),
            ),
          );
          return;
        }
        resolve(sock);
      });
      const onError = (err: Error) => {
        if (err instanceof HboneError) fail(err);
        else if (phase === 'tcp') fail(new UpstreamConnectFailed(hop, err));
        else fail(new TlsFailure(hop, err));
      };
      sock.on('error', (err) => (settled ? this.log.debug({ err, hop }, 'HBONE TLS error') : onError(err)));
      raw.on('error', (err) => (settled ? this.log.debug({ err, hop }, 'HBONE TCP error') : onError(err)));
    });
    const peer = tlsSocket.getPeerCertificate();
    const peerIdentity = matchExpectedIdentity(peer, req.expectedIdentities)!;
    const session = http2.connect(`https://${hop}`, {
      createConnection: () => tlsSocket,
      settings: h2Settings(s, 'client'),
      maxSessionMemory: s.maxSessionMemoryMb,
      peerMaxConcurrentStreams: s.maxStreamsPerConnection,
    });
    const conn: PooledConnection = {
      key,
      session,
      tlsSocket,
      peerIdentity,
      peerSerial: peer.serialNumber ?? '',
      active: 0,
      maxStreams: s.maxStreamsPerConnection,
      retired: false,
    };
    session.on('error', (err) => this.log.debug({ err, hop }, 'HBONE client session error'));
    session.on('goaway', () => this.retire(conn, false));
    session.once('close', () => {
      this.retire(conn, false);
      conn.retired = true;
    });
    session.on('remoteSettings', (settings) => {
      conn.maxStreams = Math.min(
        s.maxStreamsPerConnection,
        settings.maxConcurrentStreams ?? Number.POSITIVE_INFINITY,
      );
    });
    // Respect the peer's SETTINGS before handing out streams: wait for its first SETTINGS frame.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        session.destroy();
        reject(new H2Failure(hop, new Error('no SETTINGS from server')));
      }, s.handshakeTimeoutMs);
      session.once('remoteSettings', () => {
        clearTimeout(timer);
        session.off('close', onClose);
        resolve();
      });
      const onClose = () => {
        clearTimeout(timer);
        reject(new H2Failure(hop, new Error('connection closed during HTTP/2 setup')));
      };
      session.once('close', onClose);
    });
    session.setLocalWindowSize(s.connectionWindowBytes);
    startKeepalive(session, s, (err) =>
      this.log.info({ hop, err: err.message }, 'HBONE server unresponsive'),
    );
    this.log.debug(
      { hop, peer: formatSpiffeId(peerIdentity), maxStreams: conn.maxStreams },
      'HBONE connection up',
    );
    return conn;
  }

  private openSocket(req: HboneConnectRequest): net.Socket {
    const { host, port } = req.nextHop;
    let raw: net.Socket;
    if (this.opts.createSocket) {
      raw = this.opts.createSocket({ host, port, ...(req.sourceIp ? { sourceIp: req.sourceIp } : {}) });
    } else {
      if (req.sourceIp) {
        throw new H2Failure(
          formatAuthority(host, port),
          new Error('sourceIp needs a transparent socket factory (createSocket option)'),
        );
      }
      raw = net.connect({ host, port });
    }
    raw.setNoDelay(true);
    // istio/ztunnel: TCP keepalive 180 s.
    raw.setKeepAlive(true, 180_000);
    return raw;
  }
}

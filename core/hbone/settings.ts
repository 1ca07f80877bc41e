// HBONE's knobs, with their defaults, in one place (docs/architecture.md §4; istio/ztunnel src/config.rs
// and src/proxy/h2/*.rs; measured on this machine with bench/hbone.bench.ts and bench/ztunnel.bench.ts).
import type * as http2 from 'node:http2';

const MiB = 1024 * 1024;

/** ztunnel's ports: 15001 outbound capture, 15006 inbound plaintext, 15008 inbound HBONE. */
export const HBONE_PORT = 15008;
export const OUTBOUND_CAPTURE_PORT = 15001;
export const INBOUND_PLAINTEXT_PORT = 15006;
/** Never a valid tunnel target: connecting there would loop back into ztunnel (istio/ztunnel illegal ports). */
export const LOOP_GUARD_PORTS: ReadonlySet<number> = new Set([
  OUTBOUND_CAPTURE_PORT,
  INBOUND_PLAINTEXT_PORT,
  HBONE_PORT,
]);

export interface HboneSettings {
  /** HTTP/2 initial stream window. ztunnel HTTP2_STREAM_WINDOW_SIZE = 4 MiB; Node's 64 KiB default
   *  caps one tunnel at ~2 Gbit/s here, 4 MiB nearly doubles bulk (measured with bench/ztunnel.bench.ts). */
  streamWindowBytes: number;
  /** HTTP/2 connection window. ztunnel HTTP2_CONNECTION_WINDOW_SIZE = 16 MiB. */
  connectionWindowBytes: number;
  /** HTTP/2 max frame size we accept. ztunnel HTTP2_FRAME_SIZE = 1 MiB. */
  maxFrameBytes: number;
  /** Client: streams per pooled connection, also capped by the peer's SETTINGS_MAX_CONCURRENT_STREAMS.
   *  ztunnel POOL_MAX_STREAMS_PER_CONNECTION = 100. */
  maxStreamsPerConnection: number;
  /** Server: SETTINGS_MAX_CONCURRENT_STREAMS we advertise. ztunnel's 15008 advertises 200. */
  serverMaxConcurrentStreams: number;
  /** Max header list: ztunnel client 16 KiB, server 64 KiB; we accept 64 KiB both ways. */
  maxHeaderListBytes: number;
  /** Keepalive PING interval (10 s) and the time without an ACK after which the connection is dropped (20 s). */
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** Idle pooled connection release. ztunnel POOL_UNUSED_RELEASE_TIMEOUT = 5 min. */
  idleReleaseMs: number;
  /** TCP connect timeout to the next hop (istio/ztunnel: 10 s). */
  connectTimeoutMs: number;
  /** TLS handshake (+ HTTP/2 SETTINGS exchange) deadline for one connection, both sides. */
  handshakeTimeoutMs: number;
  /** nghttp2 session memory cap, MB. Node's 10 MB default is below one full 16 MiB connection window. */
  maxSessionMemoryMb: number;
}

export const DEFAULT_HBONE_SETTINGS: Readonly<HboneSettings> = Object.freeze({
  streamWindowBytes: 4 * MiB,
  connectionWindowBytes: 16 * MiB,
  maxFrameBytes: 1 * MiB,
  maxStreamsPerConnection: 100,
  serverMaxConcurrentStreams: 200,
  maxHeaderListBytes: 64 * 1024,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 20_000,
  idleReleaseMs: 300_000,
  connectTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  maxSessionMemoryMb: 64,
});

export function resolveSettings(overrides: Partial<HboneSettings> = {}): HboneSettings {
  const s = { ...DEFAULT_HBONE_SETTINGS, ...overrides };
  for (const [k, v] of Object.entries(s)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new RangeError(`HBONE setting ${k} must be a positive number, got ${String(v)}`);
    }
  }
  // RFC 9113 §6.5.2: SETTINGS_MAX_FRAME_SIZE is 16 KiB .. 16 MiB - 1.
  if (s.maxFrameBytes < 16_384 || s.maxFrameBytes > 16_777_215) {
    throw new RangeError(`HBONE setting maxFrameBytes must be 16384..16777215, got ${s.maxFrameBytes}`);
  }
  return s;
}

/**
 * TLS 1.3 only, AES-GCM only (istio/ztunnel tls: TLS13_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256,
 * no ChaCha20). AES-128 first: with AES-NI it is the faster of the two (measured with bench/ztunnel.bench.ts),
 * and both are offered so any Istio peer agrees on one.
 */
export const TLS_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';
export const TLS_MIN_VERSION = 'TLSv1.3' as const;
export const TLS_MAX_VERSION = 'TLSv1.3' as const;
/** Key exchange: the aws-lc defaults ztunnel uses (X25519, P-256, P-384). */
export const TLS_ECDH_CURVES = 'X25519:P-256:P-384';
/** Both sides offer / accept exactly `h2`. */
export const ALPN_H2 = ['h2'];

/** SETTINGS we send, client or server. Push is off (ztunnel client disables it; a server never pushes). */
export function h2Settings(s: HboneSettings, role: 'client' | 'server'): http2.Settings {
  return {
    enablePush: false,
    initialWindowSize: s.streamWindowBytes,
    maxFrameSize: s.maxFrameBytes,
    maxHeaderListSize: s.maxHeaderListBytes,
    ...(role === 'server' ? { maxConcurrentStreams: s.serverMaxConcurrentStreams } : {}),
  };
}

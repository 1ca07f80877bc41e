// TypeScript face of the ambit_native addon (transparent.c): IP_TRANSPARENT for ztunnel's capture
// listeners and for source-IP-preserving upstream sockets, SO_ORIGINAL_DST for a REDIRECT capture.
// Loaded lazily with createRequire so that code paths that never need it (unit tests, the CLI)
// work on a machine where `npm run build:native` has not run.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface AmbitNative {
  setIpTransparent(fd: number): void;
  createTransparentSocket(ip: string, port: number, netnsPath?: string): number;
  listenInNetns(netnsPath: string | undefined, ip: string, port: number, transparent: boolean): number;
  getOriginalDst(fd: number): { address: string; port: number };
}

/** The addon could not be loaded (not built, wrong platform) or a socket call in it failed. */
export class NativeAddonError extends Error {
  constructor(
    readonly code: 'NATIVE_ADDON_MISSING' | 'NATIVE_CALL_FAILED' | 'NATIVE_NO_FD',
    message: string,
    readonly errno?: string,
  ) {
    super(message);
    this.name = 'NativeAddonError';
  }
}

const here = dirname(fileURLToPath(import.meta.url));
// Source (vitest runs ztunnel/native/index.ts) and dist (dist/ztunnel/native/index.js)
// both find the one build output under the source tree.
const CANDIDATES = [
  process.env.AMBIT_NATIVE_ADDON,
  resolve(here, 'build/ambit_native.node'),
  resolve(here, '../../../ztunnel/native/build/ambit_native.node'),
].filter((p): p is string => typeof p === 'string' && p.length > 0);

let loaded: AmbitNative | undefined;

function addon(): AmbitNative {
  if (loaded) return loaded;
  const path = CANDIDATES.find((p) => existsSync(p));
  if (!path) {
    throw new NativeAddonError(
      'NATIVE_ADDON_MISSING',
      `ambit native addon not built: none of ${CANDIDATES.join(', ')} exists; run \`npm run build:native\``,
    );
  }
  const require = createRequire(import.meta.url);
  try {
    loaded = require(path) as AmbitNative;
  } catch (err) {
    throw new NativeAddonError(
      'NATIVE_ADDON_MISSING',
      `ambit native addon at ${path} failed to load: ${(err as Error).message}`,
    );
  }
  return loaded;
}

/** True when the addon is built and loads; lets tests and callers choose a path without try/catch. */
export function nativeAvailable(): boolean {
  try {
    addon();
    return true;
  } catch {
    return false;
  }
}

function call<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof NativeAddonError) throw err;
    const e = err as Error & { code?: string };
    throw new NativeAddonError('NATIVE_CALL_FAILED', `${what}: ${e.message}`, e.code);
  }
}

/** The file descriptor behind a listening net.Server or connected net.Socket (libuv handle). */
export function fdOf(target: net.Server | net.Socket): number {
  const handle = (target as unknown as { _handle?: { fd?: number } })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new NativeAddonError(
      'NATIVE_NO_FD',
      'socket has no file descriptor yet (call after listen() has completed / after connect)',
    );
  }
  return fd;
}

/**
 * Sets IP_TRANSPARENT (IPV6_TRANSPARENT for v6) on a listening server or a raw fd. After listen() is
 * enough (docs/capture.md §1; kernel Documentation/networking/tproxy.rst): the flag is checked when a SYN for a non-local address arrives.
 * Needs CAP_NET_ADMIN (or CAP_NET_RAW); fails with errno EPERM otherwise.
 */
export function setIpTransparent(server: net.Server | number): void {
  const fd = typeof server === 'number' ? server : fdOf(server);
  const native = addon();
  call(`setIpTransparent(fd ${fd})`, () => native.setIpTransparent(fd));
}

/**
 * Source-IP preservation, what works from Node (tested on this kernel, 6.18):
 *  - `net.connect({ localAddress: podIp })` fails: bind() to a non-local address is EADDRNOTAVAIL.
 *  - with `net.ipv4.ip_nonlocal_bind=1` bind() succeeds but connect() fails (ENETUNREACH here): the
 *    output route lookup accepts a non-local source only for transparent sockets (FLOWI_FLAG_ANYSRC).
 *  - libuv creates the socket inside bind(), so JS cannot set IP_TRANSPARENT between socket() and
 *    bind(). Hence this function: socket() + IP_TRANSPARENT + bind(ip) natively, then
 *    `new net.Socket({ fd }).connect()` in JS — tested end to end (test/hbone-capture.test.ts).
 *
 * A TCP socket fd bound to `ip` (usually NOT a local address: the source pod's IP) with IP_TRANSPARENT
 * set before bind(). Wrap it with `new net.Socket({ fd })` and `connect()`; the peer then sees `ip` as
 * the client. Return packets must be routed to this host's socket: tc steering marks packets of
 * sockets it finds (`bpf_skc_lookup_tcp`), nftables uses `socket transparent 1` + fwmark, both with
 * `ip rule fwmark → local 0.0.0.0/0 dev lo` (docs/capture.md §1, §2).
 */
export function createTransparentSocket(ip: string, port = 0, netnsPath?: string): number {
  const native = addon();
  const where = netnsPath ? ` in ${netnsPath}` : '';
  return call(`createTransparentSocket(${ip}, ${port})${where}`, () =>
    native.createTransparentSocket(ip, port, netnsPath),
  );
}

/**
 * A listening TCP socket fd (backlog 511, SO_REUSEADDR, optionally IP_TRANSPARENT before bind) created
 * inside the network namespace at `netnsPath` (e.g. /run/netns/<name>; undefined = our own). Serve it
 * with `net.createServer().listen({ fd })`. One process can so own listeners in several namespaces,
 * as istio/ztunnel's in-pod mode does; needs CAP_SYS_ADMIN for setns.
 */
export function listenInNetns(
  netnsPath: string | undefined,
  ip: string,
  port: number,
  opts: { transparent?: boolean } = {},
): number {
  const native = addon();
  return call(`listenInNetns(${netnsPath ?? 'own netns'}, ${ip}:${port})`, () =>
    native.listenInNetns(netnsPath, ip, port, opts.transparent ?? false),
  );
}

/** SO_ORIGINAL_DST (IPv4) of a connection captured by an nftables/iptables REDIRECT. */
export function getOriginalDst(socket: net.Socket | number): { address: string; port: number } {
  const fd = typeof socket === 'number' ? socket : fdOf(socket);
  const native = addon();
  return call(`getOriginalDst(fd ${fd})`, () => native.getOriginalDst(fd));
}

/**
 * A socket factory for HboneClientPool (core/hbone `createSocket`): with `sourceIp`, the connection
 * leaves from that address (IP_TRANSPARENT set before bind, so the destination sees the source pod's
 * IP, docs/capture.md §3); with `netnsPath`, the socket lives in that
 * network namespace. Neither → a plain `net.connect`.
 */
export function transparentSocketFactory(
  opts: { netnsPath?: string } = {},
): (o: { host: string; port: number; sourceIp?: string }) => net.Socket {
  return ({ host, port, sourceIp }) => {
    if (!sourceIp && !opts.netnsPath) return net.connect({ host, port });
    const bindIp = sourceIp ?? (net.isIPv6(host) ? '::' : '0.0.0.0');
    const fd = createTransparentSocket(bindIp, 0, opts.netnsPath);
    const socket = new net.Socket({ fd, readable: true, writable: true });
    socket.connect(port, host);
    return socket;
  };
}

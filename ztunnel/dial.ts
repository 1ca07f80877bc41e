// Plain TCP upstream dialing for the paths that end in a pod (inbound after HBONE, inbound plaintext,
// outbound to non-mesh / same-node / passthrough destinations). The socket is bound to the original
// client's IP with IP_TRANSPARENT so the application sees the real source pod as its peer
// (istio/ztunnel ENABLE_ORIG_SRC; docs/architecture.md §7 "Source IP"); replies come back to this node's socket
// through the capture's `socket transparent` / fwmark local-route rules.
import net from 'node:net';
import { createTransparentSocket, nativeAvailable } from './native/index.js';
import { UpstreamConnectFailed } from '../core/hbone/errors.js';
import { formatAddr } from '../core/route/address.js';
import type { SocketAddr } from '../core/route/address.js';

export interface DialOptions {
  target: SocketAddr;
  /** Bind to this (non-local) source IP first; undefined = the kernel's choice. */
  sourceIp?: string;
  timeoutMs: number;
  /** SO_MARK-like intent is carried by the capture rules; ztunnel sockets are recognised by transparency. */
}

/** Connects, resolving with a connected socket or rejecting with UpstreamConnectFailed. */
export function dial(opts: DialOptions): Promise<net.Socket> {
  const target = formatAddr(opts.target.ip, opts.target.port);
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    try {
      if (opts.sourceIp !== undefined) {
        if (!nativeAvailable()) {
          throw new Error('source IP preservation needs the native addon (npm run build:native)');
        }
        const fd = createTransparentSocket(opts.sourceIp, 0);
        socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
      } else {
        socket = new net.Socket({ allowHalfOpen: true });
      }
    } catch (err) {
      reject(new UpstreamConnectFailed(target, err));
      return;
    }
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UpstreamConnectFailed(target, new Error(`connection timed out after ${opts.timeoutMs} ms`)));
    }, opts.timeoutMs);
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new UpstreamConnectFailed(target, err));
    });
    socket.connect({ port: opts.target.port, host: opts.target.ip }, () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      // istio/ztunnel sets TCP_NODELAY on every proxied socket.
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

/**
 * The HBONE client pool's socket factory: a connecting socket bound to the source pod's IP (so the
 * peer ztunnel sees the pod as TCP client, docs/architecture.md §7), or an
 * ordinary one when no source IP is asked for.
 */
export function transparentSocketFactory(opts: {
  host: string;
  port: number;
  sourceIp?: string;
}): net.Socket {
  if (opts.sourceIp === undefined) return net.connect({ host: opts.host, port: opts.port, noDelay: true });
  const fd = createTransparentSocket(opts.sourceIp, 0);
  const socket = new net.Socket({ fd, readable: true, writable: true });
  socket.setNoDelay(true);
  return socket.connect({ host: opts.host, port: opts.port });
}

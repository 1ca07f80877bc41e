// Upstream: per request, pick an endpoint of the chosen backend and reach it — over HBONE to the
// endpoint's ztunnel (`podIP:15008`, `:authority podIP:targetPort`) with the WAYPOINT'S OWN identity
// (istio.io docs/ambient/usage/l4-policy: the destination ztunnel sees the waypoint as the source and applies its L4
// policies to it), or plain TCP to a pod outside the mesh. HTTP/1.1 goes through undici with a custom
// connector that returns the HBONE stream; HTTP/2 and gRPC through node:http2 sessions whose
// `createConnection` returns the stream. Both are pooled per endpoint, so connections are reused.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { Pool } from 'undici';
import type { HboneDialer } from '../core/hbone/client-pool.js';
import { HboneError } from '../core/hbone/errors.js';
import { HBONE_PORT } from '../core/hbone/settings.js';
import type { SpiffeId } from '../core/identity/spiffe.js';
import { formatAddr } from '../core/route/address.js';
import { candidateEndpoints, selectEndpoint as pickEndpoint } from '../core/route/endpoint.js';
import type { AppProtocol, Service, Workload } from '../core/state/model.js';
import { type MeshState, identityOf } from '../core/state/state.js';
import { WaypointError } from './errors.js';

export type { HboneDialer };

export interface UpstreamEndpoint {
  workload: Workload;
  ip: string;
  targetPort: number;
  /** HBONE when the pod is in the mesh (tunnelProtocol HBONE), plain TCP otherwise. */
  hbone: boolean;
  /** Service the endpoint was picked for (telemetry). */
  service?: Service;
  /** The service port's declared protocol (appProtocol / port name): decides the upstream HTTP version. */
  appProtocol?: AppProtocol;
}

export interface UpstreamOptions {
  state: MeshState;
  hbone: HboneDialer;
  /** The waypoint's identity: every upstream tunnel is opened with it. */
  identity: SpiffeId;
  /** Port of the endpoint's ztunnel HBONE listener. Default 15008. */
  hbonePort?: number;
  /** undici connections per endpoint. Default 64. */
  http1ConnectionsPerEndpoint?: number;
  connectTimeoutMs?: number;
  random?: () => number;
}

/**
 * Picks an endpoint of (service, servicePort) by the mesh's one endpoint policy (core/route/endpoint.ts:
 * healthy endpoints, capacity-weighted random — the same choice ztunnel makes); none → 503.
 */
export function selectEndpoint(
  state: MeshState,
  service: Service,
  servicePort: number,
  random: () => number = Math.random,
): UpstreamEndpoint {
  const ep = pickEndpoint(candidateEndpoints(state, service, servicePort), random);
  if (!ep) {
    throw new WaypointError(
      'WAYPOINT_NO_HEALTHY_UPSTREAM',
      `no healthy upstream for ${service.namespace}/${service.name}:${servicePort}`,
    );
  }
  const declared = service.ports.find((p) => p.servicePort === servicePort)?.appProtocol;
  return {
    ...endpointOf(ep.workload, ep.targetPort, service),
    ...(declared ? { appProtocol: declared } : {}),
  };
}

export function endpointOf(workload: Workload, targetPort: number, service?: Service): UpstreamEndpoint {
  return {
    workload,
    ip: workload.addresses[0] ?? '',
    targetPort,
    hbone: workload.tunnelProtocol === 'HBONE',
    ...(service ? { service } : {}),
  };
}

/**
 * undici ends an idle keep-alive connection (or one the server closed) with `socket.destroy(err)`; on an
 * HTTP/2 CONNECT stream Node turns any destroy-with-error into RST_STREAM INTERNAL_ERROR, which the
 * destination ztunnel then logs as a failed connection every few seconds (the app's 5 s keep-alive).
 * Abandoning a stream is CANCEL in HTTP/2 (RFC 9113 §8.4 / §7), which Node does not surface as an
 * error on the peer: close with it first; undici still sees its own error.
 */
function cancelOnDestroy(s: Duplex): Duplex {
  const h2 = s as Partial<http2.ClientHttp2Stream> & Duplex;
  if (typeof h2.close !== 'function' || !('rstCode' in h2)) return s;
  const destroy = s.destroy.bind(s);
  s.destroy = (err?: Error) => {
    if (!h2.closed) h2.close?.(http2.constants.NGHTTP2_CANCEL);
    return destroy(err);
  };
  return s;
}

const keyOf = (ep: UpstreamEndpoint): string => `${ep.hbone ? 'hbone' : 'tcp'}|${ep.ip}|${ep.targetPort}`;

export class Upstream {
  private readonly pools = new Map<string, Pool>();
  private readonly sessions = new Map<string, Promise<http2.ClientHttp2Session>>();
  private closed = false;
  readonly random: () => number;

  private readonly unsubscribe: () => void;

  constructor(private readonly opts: UpstreamOptions) {
    this.random = opts.random ?? Math.random;
    // Connections to an address that no longer hosts a workload are closed, not kept for ever.
    this.unsubscribe = opts.state.onChange((changes) => {
      if (changes.some((c) => c.kind === 'workload' && c.op === 'delete')) this.evictGone();
    });
  }

  private evictGone(): void {
    const gone = (key: string): boolean =>
      this.opts.state.workloadByIp(key.split('|')[1] ?? '') === undefined;
    for (const [key, pool] of this.pools) {
      if (!gone(key)) continue;
      this.pools.delete(key);
      void pool.destroy().catch(() => undefined);
    }
    for (const [key, session] of this.sessions) {
      if (!gone(key)) continue;
      this.sessions.delete(key);
      session.then(
        (s) => s.close(),
        () => undefined,
      );
    }
  }

  /** One byte stream to the endpoint: an HBONE tunnel, or a TCP connection for a pod outside the mesh. */
  async dial(ep: UpstreamEndpoint): Promise<Duplex> {
    if (this.closed) throw new WaypointError('WAYPOINT_UPSTREAM_CONNECT_FAILED', 'waypoint is shutting down');
    if (!ep.hbone) {
      const socket = net.connect({ host: ep.ip, port: ep.targetPort, allowHalfOpen: true, noDelay: true });
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new Error(`connect ${ep.ip}:${ep.targetPort} timed out`));
        }, this.opts.connectTimeoutMs ?? 10_000);
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      }).catch((err: unknown) => {
        throw new WaypointError('WAYPOINT_UPSTREAM_CONNECT_FAILED', (err as Error).message, { cause: err });
      });
      return socket;
    }
    try {
      return await this.opts.hbone.connect({
        sourceIdentity: this.opts.identity,
        expectedIdentities: [identityOf(ep.workload)],
        nextHop: { host: ep.ip, port: this.opts.hbonePort ?? HBONE_PORT },
        authority: formatAddr(ep.ip, ep.targetPort),
      });
    } catch (err) {
      // A 401 from the destination ztunnel is its L4 policy refusing the waypoint: Envoy reports the
      // upstream reset as 503 too; the message keeps the HBONE reason.
      const message = err instanceof HboneError ? `${err.code}: ${err.message}` : (err as Error).message;
      throw new WaypointError('WAYPOINT_UPSTREAM_CONNECT_FAILED', message, { cause: err });
    }
  }

  /** The undici pool for an HTTP/1.1 endpoint; its connector opens tunnels on demand. */
  http1(ep: UpstreamEndpoint): Pool {
    const key = keyOf(ep);
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(`http://${ep.ip.includes(':') ? `[${ep.ip}]` : ep.ip}:${ep.targetPort}`, {
        connections: this.opts.http1ConnectionsPerEndpoint ?? 64,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connect: (_opts, callback) => {
          this.dial(ep).then(
            (s) => callback(null, cancelOnDestroy(s) as net.Socket),
            (err: Error) => callback(err, null),
          );
        },
      });
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** The HTTP/2 session for an endpoint (one per endpoint, multiplexed; re-dialled when it closes). */
  http2(ep: UpstreamEndpoint): Promise<http2.ClientHttp2Session> {
    const key = keyOf(ep);
    const existing = this.sessions.get(key);
    if (existing) return existing;
    const p = this.dial(ep).then((stream) => {
      const session = http2.connect(`http://${ep.ip.includes(':') ? `[${ep.ip}]` : ep.ip}:${ep.targetPort}`, {
        createConnection: () => stream,
      });
      const forget = (): void => {
        if (this.sessions.get(key) === p) this.sessions.delete(key);
      };
      session.on('close', forget);
      session.on('goaway', forget);
      session.on('error', forget);
      // The tunnel ending ends the session (the destination ztunnel or the pod went away).
      stream.once('close', () => {
        forget();
        session.destroy();
      });
      return session;
    });
    p.catch(() => {
      if (this.sessions.get(key) === p) this.sessions.delete(key);
    });
    this.sessions.set(key, p);
    return p;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of sessions)
      s.then(
        (x) => x.destroy(),
        () => undefined,
      );
  }
}

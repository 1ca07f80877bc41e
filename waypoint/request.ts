// One HTTP request (HTTP/1.1 or HTTP/2, gRPC included) through the waypoint: authorize with the L7
// policies → route → forward to an endpoint over HBONE with the waypoint's identity → answer, and report
// it (istio_requests_total / istio_request_duration_milliseconds with reporter="waypoint", one access-log
// line). Both protocols use Node's compatibility request/response objects, so this file is written once.
import type * as http from 'node:http';
import type * as http2 from 'node:http2';
import type { Logger } from 'pino';
import type { Connection, RequestContext } from '../core/policy/evaluate.js';
import type { Service } from '../core/state/model.js';
import { type MeshState, workloadIdentity } from '../core/state/state.js';
import type { FlowEvents } from '../core/telemetry/flow-events.js';
import type { PeerLabels } from '../core/telemetry/metrics.js';
import type { RequestAuthorizer } from './authz.js';
import { WaypointError, asWaypointError } from './errors.js';
import type { PathNormalization } from '../core/http/request-target.js';
import { type ForwardRequest, type Headers, forward } from './forward.js';
import { GRPC_STATUS, grpcStatusForHttp, isGrpc, sendGrpcLocalReply } from './grpc.js';
import type { RequestMetrics } from './metrics.js';
import { HOP_BY_HOP, forwardableHeaders, readRequestHead } from './request-head.js';
import { type HeaderModifier, type RouteRule, type Router, pickBackend } from './routes.js';
import { resetStream } from './stream-reset.js';
import type { WaypointDestination as Destination } from '../core/route/inbound.js';
import type { WaypointTracer } from './tracing.js';
import { type Upstream, type UpstreamEndpoint, endpointOf, selectEndpoint } from './upstream.js';

/** What the waypoint knows about the tunnel a request came in on. */
export interface TunnelContext {
  conn: Connection;
  destination: Destination;
  source: PeerLabels;
  /** The client's SPIFFE ID (with spiffe://), for logs. */
  sourcePrincipal: string;
}

export interface RequestDeps {
  state: MeshState;
  authorizer: RequestAuthorizer;
  router: Router;
  upstream: Upstream;
  metrics: RequestMetrics;
  accessLog: Logger;
  log: Logger;
  /** Largest request body buffered for retries; bigger → 413. */
  maxBufferedBodyBytes: number;
  /** meshConfig.pathNormalization.normalization: how paths are normalized before policy and routes. */
  pathNormalization: PathNormalization;
  /** Live request events (the demo's flow view reads them from the stats port's /flows, loopback only). */
  flows?: FlowEvents;
  /** Set only when tracing is configured (tracing.ts); absent, no span object is ever made. */
  tracer?: WaypointTracer;
}

let nextFlowId = 1;

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

function applyModifier(h: Headers, m: HeaderModifier | undefined): void {
  if (!m) return;
  for (const [k, v] of m.set) h[k] = v;
  for (const [k, v] of m.add) {
    const cur = h[k];
    h[k] = cur === undefined ? v : Array.isArray(cur) ? [...cur, v] : [cur, v];
  }
  for (const k of m.remove) delete h[k];
}

function readBody(req: Req, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new WaypointError('WAYPOINT_PAYLOAD_TOO_LARGE', `request body over ${limit} bytes`));
        // Stop reading; the 413 goes out and the connection closes after it (the body is not drained).
        req.pause();
        return;
      }
      chunks.push(c);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('aborted', () =>
      reject(new WaypointError('WAYPOINT_UPSTREAM_RESET', 'client aborted the request')),
    );
  });
}

const serviceByName = (state: MeshState, ns: string, name: string): Service | undefined =>
  state.servicesByHostname(`${name}.${ns}.svc.cluster.local`).find((s) => s.namespace === ns);

/** The destination labels of a metric: the endpoint's workload (empty before one is chosen). */
export function peerOf(ep: UpstreamEndpoint | undefined): PeerLabels {
  const w = ep?.workload;
  if (!w) return {};
  return {
    workload: w.workloadName || w.name,
    namespace: w.namespace,
    principal: workloadIdentity(w),
    canonicalService: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
  };
}

/** How the request's backend endpoints are chosen: the route's weighted backendRefs, else the destination. */
export function endpointPicker(
  deps: RequestDeps,
  tunnel: TunnelContext,
  rule: RouteRule | undefined,
): () => UpstreamEndpoint {
  const dst = tunnel.destination;
  const random = deps.upstream.random;
  if (rule && rule.backends.length > 0) {
    return () => {
      const b = pickBackend(rule.backends, random);
      if (!b) throw new WaypointError('WAYPOINT_CONFIG', `${rule.id}: every backendRef has weight 0`);
      const svc = serviceByName(deps.state, b.namespace, b.name);
      if (!svc)
        throw new WaypointError(
          'WAYPOINT_NO_HEALTHY_UPSTREAM',
          `backend service ${b.namespace}/${b.name} not found`,
        );
      return selectEndpoint(deps.state, svc, b.port ?? dst.port, random);
    };
  }
  if (dst.service) {
    const svc = dst.service;
    return () => selectEndpoint(deps.state, svc, dst.port, random);
  }
  const w = dst.workload;
  if (!w) throw new WaypointError('WAYPOINT_NO_HEALTHY_UPSTREAM', 'destination has no service or workload');
  return () => endpointOf(w, dst.port);
}

export async function handleRequest(
  deps: RequestDeps,
  tunnel: TunnelContext,
  req: Req,
  res: Res,
): Promise<void> {
  const started = performance.now();
  const h2 = 'stream' in req && (req as http2.Http2ServerRequest).httpVersionMajor === 2;
  const grpc = h2 && isGrpc(req.headers);
  // As received until the head is read (a refused request is logged as it came).
  let method = req.method ?? '-';
  let path = req.url ?? '-';
  let authority = (h2 ? req.headers[':authority'] : req.headers.host) ?? '-';
  const dst = tunnel.destination;
  let status = 0;
  let grpcStatus = '';
  let flag = '-';
  let endpoint: UpstreamEndpoint | undefined;
  let tries = 0;
  let reason: string | undefined;
  let policy: string | undefined;
  let requestBytes = 0;
  let responseBytes = 0;
  const protocol = grpc ? 'GRPC' : h2 ? 'HTTP/2' : 'HTTP/1.1';
  const span = deps.tracer?.start({
    method,
    path,
    authority,
    protocol,
    headers: req.headers,
    sourcePrincipal: tunnel.sourcePrincipal,
  });

  const localReply = (err: WaypointError): void => {
    status = err.status;
    flag = err.flag;
    reason = err.message;
    if (res.headersSent) {
      // Mid-response failure: the client must see a broken exchange, not a truncated success.
      if (h2) resetStream((res as http2.Http2ServerResponse).stream, 0x2 /* INTERNAL_ERROR */);
      else req.socket?.destroy();
      return;
    }
    if (grpc) {
      const g = grpcStatusForHttp(err.status);
      grpcStatus = String(g);
      status = 200;
      sendGrpcLocalReply(res as http2.Http2ServerResponse, g, err.body || err.message);
      return;
    }
    const body = err.body;
    responseBytes = Buffer.byteLength(body);
    (res as http.ServerResponse).writeHead(err.status, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
      // The unread rest of an oversized body must not be parsed as the next request.
      // A refused head (400) closes the connection as Envoy does after a codec-level error.
      ...((err.code === 'WAYPOINT_PAYLOAD_TOO_LARGE' || err.code === 'WAYPOINT_BAD_REQUEST') && !h2
        ? { connection: 'close' }
        : {}),
    });
    res.end(body);
  };

  try {
    ({ method, path, authority } = readRequestHead(
      req as http.IncomingMessage,
      h2,
      deps.pathNormalization,
      `${dst.ip}:${dst.port}`,
    ));
    const request: RequestContext = {
      method,
      path,
      host: authority,
      headers: req.headers as RequestContext['headers'],
    };
    const decision = deps.authorizer.authorize(tunnel.conn, request, dst.service);
    policy = decision.policy;
    if (!decision.allow) {
      throw new WaypointError('WAYPOINT_RBAC_DENIED', decision.reason);
    }
    const rule = deps.router.route(dst.service, dst.port, grpc, { method, path, headers: req.headers });
    const headers = forwardableHeaders(req.headers);
    applyModifier(headers, rule?.requestHeaders);
    if (!h2) headers.host = authority;
    // Envoy adds the client's address; the app behind the waypoint sees the original client.
    const xff = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = xff ? `${xff}, ${tunnel.conn.sourceIp}` : tunnel.conn.sourceIp;
    headers['x-forwarded-proto'] = 'http';
    span?.inject(headers);
    const body = await readBody(req, deps.maxBufferedBodyBytes);
    requestBytes = body.length;
    const controller = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) controller.abort();
    };
    res.once('close', onClose);
    const fwd: ForwardRequest = {
      protocol: h2 ? 'http2' : 'http1',
      grpc,
      method,
      path,
      authority,
      headers,
      body,
    };
    const r = await forward(deps.upstream, endpointPicker(deps, tunnel, rule), fwd, rule, controller);
    endpoint = r.endpoint;
    tries = r.tries;
    status = r.status;
    const out: Headers = {};
    for (const [k, v] of Object.entries(r.headers)) if (!HOP_BY_HOP.has(k) && !k.startsWith(':')) out[k] = v;
    applyModifier(out, rule?.responseHeaders);
    if (grpc && out['grpc-status'] !== undefined) grpcStatus = String(out['grpc-status']);
    // Both response classes share this surface; TypeScript cannot call through their union.
    const w = res as http.ServerResponse;
    w.writeHead(r.status, out as http.OutgoingHttpHeaders);
    await new Promise<void>((resolve) => {
      r.body.on('data', (c: Buffer) => {
        responseBytes += c.length;
        if (!w.write(c)) {
          r.body.pause();
          w.once('drain', () => r.body.resume());
        }
      });
      r.body.once('end', resolve);
      r.body.once('error', (err) => {
        localReply(asWaypointError(err));
        resolve();
      });
      r.body.once('close', resolve);
    });
    const trailers = await r.trailers;
    res.off('close', onClose);
    if (!res.writableEnded && !res.destroyed) {
      if (trailers && Object.keys(trailers).length > 0) {
        if (grpc && trailers['grpc-status'] !== undefined) grpcStatus = String(trailers['grpc-status']);
        res.addTrailers(trailers as http.OutgoingHttpHeaders);
      }
      res.end();
    }
  } catch (err) {
    const e = asWaypointError(err);
    if (e.code !== 'WAYPOINT_RBAC_DENIED') deps.log.debug({ err: e.message, code: e.code }, 'request failed');
    localReply(e);
  } finally {
    if (grpc && grpcStatus === '' && status === 200) grpcStatus = String(GRPC_STATUS.OK);
    span?.end({
      status,
      grpcStatus,
      responseFlags: flag,
      ...(endpoint ? { upstream: `${endpoint.ip}:${endpoint.targetPort}` } : {}),
      ...(reason ? { reason } : {}),
    });
    recordRequest(deps, tunnel, {
      method,
      path,
      authority,
      protocol,
      requestBytes,
      responseBytes,
      grpc,
      status,
      grpcStatus,
      flag,
      endpoint,
      tries,
      durationMs: performance.now() - started,
      ...(reason ? { reason } : {}),
      ...(policy ? { policy } : {}),
    });
  }
}

export interface RequestOutcome {
  method: string;
  path: string;
  authority: string;
  protocol: 'GRPC' | 'HTTP/2' | 'HTTP/1.1';
  grpc: boolean;
  status: number;
  grpcStatus: string;
  flag: string;
  endpoint: UpstreamEndpoint | undefined;
  tries: number;
  durationMs: number;
  /** Request and response body bytes (istio_request_bytes / istio_response_bytes). */
  requestBytes?: number;
  responseBytes?: number;
  reason?: string;
  policy?: string;
}

/** Reports one request: Istio metrics (reporter=waypoint), a flow event, and one access-log line. */
export function recordRequest(deps: RequestDeps, tunnel: TunnelContext, o: RequestOutcome): void {
  const {
    method,
    path,
    authority,
    grpc,
    status,
    grpcStatus,
    flag,
    endpoint,
    tries,
    durationMs,
    reason,
    policy,
  } = o;
  const dst = tunnel.destination;
  const svc = dst.service;
  deps.metrics.record({
    source: tunnel.source,
    destination: peerOf(endpoint),
    ...(svc ? { service: { hostname: svc.hostname, namespace: svc.namespace, name: svc.name } } : {}),
    protocol: grpc ? 'grpc' : 'http',
    responseCode: status,
    grpcStatus,
    responseFlags: flag,
    durationMs,
    requestBytes: o.requestBytes ?? 0,
    responseBytes: o.responseBytes ?? 0,
  });
  // The same facts as one flow event, shaped like ztunnel's (core/telemetry/flow-events.ts) plus the
  // request's method, path and status.
  deps.flows?.publish({
    id: nextFlowId++,
    phase: 'close',
    time: new Date().toISOString(),
    direction: 'inbound',
    path: 'inbound',
    src: {
      addr: tunnel.conn.sourceIp,
      identity: tunnel.sourcePrincipal,
      ...(tunnel.source.workload ? { workload: tunnel.source.workload } : {}),
      ...(tunnel.source.namespace ? { namespace: tunnel.source.namespace } : {}),
    },
    dst: {
      addr: endpoint ? `${endpoint.ip}:${endpoint.targetPort}` : `${dst.ip}:${dst.port}`,
      ...(svc ? { service: svc.hostname } : {}),
      ...(endpoint ? { workload: endpoint.workload.name, namespace: endpoint.workload.namespace } : {}),
    },
    securityPolicy: 'mutual_tls',
    durationMs: Math.round(durationMs),
    responseFlags: flag,
    ...(reason ? { error: reason } : {}),
    ...(policy ? { policy } : {}),
    request: {
      protocol: o.protocol,
      method,
      path,
      status,
      ...(grpcStatus ? { grpcStatus: Number(grpcStatus) } : {}),
    },
  } as Parameters<FlowEvents['publish']>[0]);
  // Istio's access-log field names (Envoy %RESPONSE_CODE%, %UPSTREAM_HOST%, ...). The line is only built
  // when it will be written (access logging off must cost nothing per request).
  if (!deps.accessLog.isLevelEnabled('info')) return;
  deps.accessLog.info(
    {
      src: { addr: tunnel.conn.sourceIp, identity: tunnel.sourcePrincipal },
      dst: { service: svc?.hostname, addr: `${dst.ip}:${dst.port}`, workload: endpoint?.workload.name },
      upstream_host: endpoint ? `${endpoint.ip}:${endpoint.targetPort}` : undefined,
      method,
      path,
      authority,
      protocol: o.protocol,
      response_code: status,
      grpc_status: grpcStatus || undefined,
      response_flags: flag,
      attempts: tries,
      duration_ms: Math.round(durationMs * 100) / 100,
      ...(reason ? { reason } : {}),
    },
    'request',
  );
}

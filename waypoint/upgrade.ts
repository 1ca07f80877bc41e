// HTTP/1.1 Upgrade (WebSocket and the like) through the waypoint: Istio's waypoint enables the websocket
// upgrade on its HTTP connection manager, so an upgrade request gets the same L7 authorization and route
// as any request, then the connection becomes a byte pipe to the chosen endpoint (over HBONE with the
// waypoint's identity). The endpoint's own answer (101 or a refusal) goes back unchanged.
import type * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { WaypointError, asWaypointError } from './errors.js';
import { type RequestDeps, type TunnelContext, endpointPicker, recordRequest } from './request.js';
import type { UpstreamEndpoint } from './upstream.js';

const reply = (socket: Duplex, err: WaypointError): void => {
  const body = err.body;
  socket.end(
    `HTTP/1.1 ${err.status} ${err.status === 403 ? 'Forbidden' : 'Service Unavailable'}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
};

export async function handleUpgrade(
  deps: RequestDeps,
  tunnel: TunnelContext,
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const started = performance.now();
  const method = req.method ?? 'GET';
  const path = req.url ?? '/';
  const authority = req.headers.host ?? `${tunnel.destination.ip}:${tunnel.destination.port}`;
  let endpoint: UpstreamEndpoint | undefined;
  let status = 0;
  let flag = '-';
  try {
    const decision = deps.authorizer.authorize(
      tunnel.conn,
      { method, path, host: authority, headers: req.headers as Record<string, string> },
      tunnel.destination.service,
    );
    if (!decision.allow) throw new WaypointError('WAYPOINT_RBAC_DENIED', decision.reason);
    const rule = deps.router.route(tunnel.destination.service, tunnel.destination.port, false, {
      method,
      path,
      headers: req.headers,
    });
    endpoint = endpointPicker(deps, tunnel, rule)();
    const upstream = await deps.upstream.dial(endpoint);
    // The request head as received (raw header pairs keep case and order), plus the client address.
    const lines = [`${method} ${path} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2)
      lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    lines.push(`x-forwarded-for: ${tunnel.conn.sourceIp}`);
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    upstream.once('data', (first: Buffer) => {
      status = Number(/^HTTP\/1\.1 (\d{3})/.exec(first.toString('latin1', 0, 16))?.[1] ?? 0);
    });
    upstream.pipe(socket);
    socket.pipe(upstream);
    await new Promise<void>((resolve) => {
      const done = (): void => {
        upstream.destroy();
        socket.destroy();
        resolve();
      };
      upstream.once('close', done);
      socket.once('close', done);
      upstream.once('error', done);
      socket.once('error', done);
    });
  } catch (err) {
    const e = asWaypointError(err);
    status = e.status;
    flag = e.flag;
    reply(socket, e);
  } finally {
    recordRequest(deps, tunnel, {
      method,
      path,
      authority,
      protocol: 'HTTP/1.1',
      grpc: false,
      status,
      grpcStatus: '',
      flag,
      endpoint,
      tries: endpoint ? 1 : 0,
      durationMs: performance.now() - started,
    });
  }
}

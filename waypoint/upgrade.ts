// HTTP/1.1 Upgrade through the waypoint, as Istio configures Envoy: `upgrade_configs` holds `websocket`
// only, so that is the one upgrade tunnelled; any other (h2c, unknown) is handled as a plain request with
// the Upgrade header removed (http.ts). A WebSocket request is read, authorized and routed like any
// request (request-head.ts, the same header sanitation), then sent upstream; the connection becomes a byte
// tunnel ONLY when the upstream answers 101 (Envoy: the upgrade completes on the upstream's 101). Any
// other answer goes back to the client and the connection stays HTTP: the bytes the client sent after the
// upgrade request were held back, and are parsed, authorized and routed as requests of their own.
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { relay } from '../core/relay/relay.js';
import { WaypointError, asWaypointError } from './errors.js';
import { HOP_BY_HOP, forwardableHeaders, readRequestHead } from './request-head.js';
import { type RequestDeps, type TunnelContext, endpointPicker, recordRequest } from './request.js';
import { tunnelSocket } from './tunnel-socket.js';
import type { UpstreamEndpoint } from './upstream.js';

/** Upgrade types tunnelled (Istio's HttpConnectionManager upgrade_configs: websocket). */
export const TUNNELLED_UPGRADES = new Set(['websocket']);
/** Largest non-101 answer body relayed on a connection that stays open; bigger → the connection closes. */
const MAX_REFUSAL_BODY = 64 * 1024;
/** Longest wait for the upstream's answer to an upgrade request. */
const UPGRADE_ANSWER_TIMEOUT_MS = 30_000;

/**
 * Whether a request's upgrade is tunnelled: a GET (RFC 6455 §4.1) without a body whose Upgrade header is
 * one configured type (Envoy compares the header value case-insensitively with upgrade_type).
 */
export function isTunnelledUpgrade(req: http.IncomingMessage): boolean {
  const u = req.headers.upgrade;
  if (req.method !== 'GET' || typeof u !== 'string' || !TUNNELLED_UPGRADES.has(u.trim().toLowerCase()))
    return false;
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (len === undefined || len === '0');
}

const STATUS_TEXT = (status: number): string => http.STATUS_CODES[status] ?? 'Unknown';

function replyAndClose(socket: Duplex, err: WaypointError): void {
  const body = err.body;
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_TEXT(err.status)}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** The head of a response from Node's parsed message, raw names kept, hop-by-hop ones dropped unless 101. */
function responseHead(res: http.IncomingMessage, keepUpgrade: boolean, extra: string[] = []): string {
  const lines = [`HTTP/1.1 ${res.statusCode} ${res.statusMessage || STATUS_TEXT(res.statusCode ?? 0)}`];
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const k = res.rawHeaders[i]!.toLowerCase();
    if (!keepUpgrade && (HOP_BY_HOP.has(k) || k === 'content-length')) continue;
    lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
  }
  return `${[...lines, ...extra].join('\r\n')}\r\n\r\n`;
}

function readBounded(res: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        res.destroy();
        resolve(undefined);
      } else chunks.push(c);
    });
    res.once('end', () => resolve(Buffer.concat(chunks)));
    res.once('error', () => resolve(undefined));
  });
}

type UpstreamAnswer =
  | { kind: 'upgraded'; res: http.IncomingMessage; socket: Duplex; head: Buffer }
  | { kind: 'response'; res: http.IncomingMessage };

/** Sends the upgrade request on `upstream` and waits for its answer (Node's HTTP/1.1 client parses it). */
function sendUpgrade(
  upstream: Duplex,
  path: string,
  headers: http.OutgoingHttpHeaders,
  client: Duplex,
): Promise<UpstreamAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      createConnection: () => tunnelSocket(upstream) as unknown as import('node:net').Socket,
      method: 'GET',
      path,
      headers,
      // No `agent`: createConnection is used only without one.
    });
    const timer = setTimeout(
      () =>
        req.destroy(
          new WaypointError(
            'WAYPOINT_REQUEST_TIMEOUT',
            `no answer to the upgrade in ${UPGRADE_ANSWER_TIMEOUT_MS} ms`,
          ),
        ),
      UPGRADE_ANSWER_TIMEOUT_MS,
    );
    const onClientGone = (): void => {
      req.destroy(new WaypointError('WAYPOINT_UPSTREAM_RESET', 'client went away'));
    };
    client.once('close', onClientGone);
    const settle = (): void => {
      clearTimeout(timer);
      client.off('close', onClientGone);
    };
    req.once('upgrade', (res, socket, head) => {
      settle();
      resolve({ kind: 'upgraded', res, socket, head });
    });
    req.once('response', (res) => {
      settle();
      resolve({ kind: 'response', res });
    });
    req.once('error', (err) => {
      settle();
      reject(err);
    });
    req.end();
  });
}

/**
 * A WebSocket upgrade request. `held` is what the client sent after the request head: written upstream
 * only once the tunnel exists; otherwise `resumeHttp(held)` hands the connection back to the HTTP parser.
 */
export async function handleUpgrade(
  deps: RequestDeps,
  tunnel: TunnelContext,
  req: http.IncomingMessage,
  socket: Duplex,
  held: Buffer,
  resumeHttp: (held: Buffer) => void,
): Promise<void> {
  const started = performance.now();
  const dst = tunnel.destination;
  let method = req.method ?? '-';
  let path = req.url ?? '-';
  let authority = req.headers.host ?? '-';
  let endpoint: UpstreamEndpoint | undefined;
  let status = 0;
  let flag = '-';
  let reason: string | undefined;
  let requestBytes = 0;
  let responseBytes = 0;
  try {
    ({ method, path, authority } = readRequestHead(
      req,
      false,
      deps.pathNormalization,
      `${dst.ip}:${dst.port}`,
    ));
    const decision = deps.authorizer.authorize(
      tunnel.conn,
      { method, path, host: authority, headers: req.headers as Record<string, string> },
      dst.service,
    );
    if (!decision.allow) throw new WaypointError('WAYPOINT_RBAC_DENIED', decision.reason);
    const rule = deps.router.route(dst.service, dst.port, false, { method, path, headers: req.headers });
    endpoint = endpointPicker(deps, tunnel, rule)();
    const upstream = await deps.upstream.dial(endpoint);
    // The same sanitation as any request, then the upgrade headers themselves (hop-by-hop, so re-added).
    const headers: http.OutgoingHttpHeaders = { ...forwardableHeaders(req.headers) };
    for (const [k, v] of rule?.requestHeaders?.set ?? []) headers[k] = v;
    for (const k of rule?.requestHeaders?.remove ?? []) delete headers[k];
    headers.host = authority;
    headers.connection = 'Upgrade';
    headers.upgrade = req.headers.upgrade;
    const xff = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = xff ? `${xff}, ${tunnel.conn.sourceIp}` : tunnel.conn.sourceIp;
    headers['x-forwarded-proto'] = 'http';
    const answer = await sendUpgrade(upstream, path, headers, socket);
    status = answer.res.statusCode ?? 0;
    if (answer.kind === 'upgraded') {
      socket.write(responseHead(answer.res, true));
      if (answer.head.length > 0) socket.write(answer.head);
      if (held.length > 0) answer.socket.write(held);
      requestBytes = held.length;
      responseBytes = answer.head.length;
      // The one relay (core/relay): a FIN one way half-closes the other, a reset stays a reset.
      // The upgraded stream's bytes count as the request's and the response's (istio_request_bytes).
      await relay(socket, answer.socket, {
        onRequestBytes: (n) => {
          requestBytes += n;
        },
        onResponseBytes: (n) => {
          responseBytes += n;
        },
      });
      return;
    }
    // Not upgraded: the answer goes back as a plain response and the connection stays HTTP.
    const body = await readBounded(answer.res, MAX_REFUSAL_BODY);
    upstream.destroy();
    if (body === undefined) {
      flag = 'UR';
      socket.destroy();
      return;
    }
    socket.write(responseHead(answer.res, false, [`content-length: ${body.length}`]));
    socket.write(body);
    resumeHttp(held);
  } catch (err) {
    const e = asWaypointError(err);
    status = e.status;
    flag = e.flag;
    reason = e.message;
    replyAndClose(socket, e);
  } finally {
    recordRequest(deps, tunnel, {
      method,
      path,
      authority,
      protocol: 'HTTP/1.1',
      requestBytes,
      responseBytes,
      grpc: false,
      status,
      grpcStatus: '',
      flag,
      endpoint,
      tries: endpoint ? 1 : 0,
      durationMs: performance.now() - started,
      ...(reason ? { reason } : {}),
    });
  }
}

// The request head as the waypoint acts on it, checked and normalized once, before authorization: the
// same method, path and authority are what policy matches, what routes match and what the app receives.
// Envoy's answers are followed (each with its source); anything refused is a 400 that never reaches the app.
import type * as http from 'node:http';
import {
  type PathNormalization,
  RequestTargetError,
  parseRequestTarget,
} from '../core/http/request-target.js';
import { WaypointError } from './errors.js';
import type { Headers } from './forward.js';

export interface RequestHead {
  method: string;
  /** Normalized path + query as sent. */
  path: string;
  /** host[:port] the request is for (absolute-form URI > :authority > Host). */
  authority: string;
}

// RFC 9110 §5.6.2 token, without lower-case letters: Istio refuses a method that is not upper case with
// 400 (normalization doc, "Method related"), and HTTP/2 leaves :method unchecked to the server (RFC 9113
// §8.3.1). HTTP/1.1 methods are already checked by Node's strict parser (llhttp).
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Z]+$/;
// RFC 3986 §3.2.2/§3.2.3 host [":" port]: reg-name / IPv4 / IP-literal characters only.
const AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=%]*(?::[0-9]*)?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]*)?$/;

const bad = (message: string): WaypointError => new WaypointError('WAYPOINT_BAD_REQUEST', message);

/** HTTP/1.1: exactly one Host (RFC 9112 §3.2: "MUST respond with a 400 ... more than one Host"). */
function http1Authority(req: http.IncomingMessage): string | undefined {
  let host: string | undefined;
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i]!;
    if (k.length !== 4 || k.toLowerCase() !== 'host') continue;
    if (host !== undefined) throw bad('more than one Host header');
    host = req.rawHeaders[i + 1]!;
  }
  if (host === undefined && req.httpVersion === '1.1') throw bad('HTTP/1.1 request without Host');
  // RFC 9112 §6.3: a request whose Transfer-Encoding does not end in chunked has no reliable length:
  // 400 and close (what follows could be read as a second request).
  const te = req.headers['transfer-encoding'];
  if (te !== undefined && !/(?:^|,)[ \t]*chunked[ \t]*$/i.test(te))
    throw bad('Transfer-Encoding does not end in chunked');
  return host;
}

/** HTTP/2: :authority, else Host; both present and different → 400 (RFC 9113 §8.3.1). */
function http2Authority(headers: http.IncomingHttpHeaders): string | undefined {
  const authority = headers[':authority'] as string | undefined;
  const host = headers.host;
  if (authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase())
    throw bad('Host differs from :authority');
  return authority ?? host;
}

/**
 * Reads the method, target and authority of a request; throws WaypointError 400 for anything Envoy
 * refuses. `fallbackAuthority` (the tunnel's destination) serves HTTP/1.0 requests without Host.
 */
export function readRequestHead(
  req: { method?: string; url?: string; headers: http.IncomingHttpHeaders } & Partial<
    Pick<http.IncomingMessage, 'rawHeaders' | 'httpVersion'>
  >,
  h2: boolean,
  normalization: PathNormalization,
  fallbackAuthority: string,
): RequestHead {
  const method = req.method ?? '';
  if (!METHOD.test(method)) throw bad(`invalid method ${JSON.stringify(method.slice(0, 32))}`);
  // CONNECT is not proxied (Envoy handles it only when upgrade_configs names CONNECT, which Istio's
  // waypoint does not); extended CONNECT (RFC 8441) is never offered: SETTINGS_ENABLE_CONNECT_PROTOCOL is
  // not sent, so a client's :protocol is refused by the HTTP/2 layer itself.
  if (method === 'CONNECT') throw bad('CONNECT is not supported through the waypoint');
  const hostField = h2 ? http2Authority(req.headers) : http1Authority(req as http.IncomingMessage);
  let target: ReturnType<typeof parseRequestTarget>;
  try {
    target = parseRequestTarget(req.url ?? '', normalization, method);
  } catch (err) {
    if (err instanceof RequestTargetError) throw bad(err.message);
    throw err;
  }
  const authority = target.authority ?? hostField ?? fallbackAuthority;
  if (!AUTHORITY.test(authority)) throw bad('invalid authority');
  return { method, path: target.path, authority };
}

// RFC 9110 §7.6.1 connection-specific headers never cross a proxy (and HTTP/2 forbids them); Envoy
// removes the same set (connection, keep-alive, proxy-connection, transfer-encoding, upgrade, te).
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
  'proxy-authenticate',
  'proxy-authorization',
  'http2-settings',
  // Envoy sanitizes XFCC from clients (forward_client_cert_details SANITIZE): a client must not be able to
  // tell the app which certificate it presented. The waypoint's own identity is what the app's ztunnel sees.
  'x-forwarded-client-cert',
]);

/** Header names the client listed in `Connection` (RFC 9110 §7.6.1: removed before forwarding). */
function connectionNamed(h: http.IncomingHttpHeaders): Set<string> | undefined {
  const c = h.connection;
  if (c === undefined) return undefined;
  const names = new Set<string>();
  for (const n of String(c).split(',')) {
    const t = n.trim().toLowerCase();
    if (t) names.add(t);
  }
  return names;
}

/** The client's headers as forwarded: no pseudo-headers, hop-by-hop ones or ones named in Connection. */
export function forwardableHeaders(h: http.IncomingHttpHeaders): Headers {
  const named = connectionNamed(h);
  const out: Headers = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k.startsWith(':') || HOP_BY_HOP.has(k) || k === 'host' || named?.has(k)) continue;
    out[k] = v;
  }
  // gRPC needs `te: trailers` end to end: the only TE value HTTP/2 allows (RFC 9113 §8.2.2), and the only
  // one Envoy keeps.
  if (h.te !== undefined && /(?:^|,)\s*trailers\s*(?:;|,|$)/i.test(String(h.te))) out.te = 'trailers';
  return out;
}

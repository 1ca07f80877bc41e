// One request to the upstream, with the route's retry and timeout policy (Envoy router semantics, as
// Istio's waypoint configures them from HTTPRoute `retry` and `timeouts`):
//  - `timeouts.backendRequest` bounds each try, `timeouts.request` the whole exchange incl. retries;
//    either expiring before the response headers → 504 `upstream request timeout` (flag UT).
//  - a try answered with a status in `retry.codes`, or failing to connect, is retried up to
//    `retry.attempts` times on a freshly picked endpoint, after `backoff` (doubling, with jitter, capped
//    at 10× as Envoy does). Without a retry block only connect failures are retried (twice): that is always
//    safe since the request never reached the app. The request body is buffered so a retry can resend it.
import type * as http2 from 'node:http2';
import type { Readable } from 'node:stream';
import { WaypointError, asWaypointError } from './errors.js';
import type { RouteRule } from './routes.js';
import type { Upstream, UpstreamEndpoint } from './upstream.js';

export type Headers = Record<string, string | string[]>;

export interface ForwardRequest {
  /** The downstream protocol; the upstream one follows the service port's declaration (upstreamProtocol). */
  protocol: 'http1' | 'http2';
  grpc: boolean;
  method: string;
  path: string;
  authority: string;
  headers: Headers;
  body: Buffer;
}

export interface ForwardResponse {
  status: number;
  headers: Headers;
  body: Readable;
  /** Resolves when the body ended, with the trailers if any. */
  trailers: Promise<Headers | undefined>;
  endpoint: UpstreamEndpoint;
  /** Tries made (1 = no retry). */
  tries: number;
}

const DEFAULT_CONNECT_RETRIES = 2;

/**
 * Istio's upstream protocol choice: gRPC always rides HTTP/2; a port declared HTTP/1.1 (appProtocol http or
 * a port named http-*) gets HTTP/1.1, one declared http2/grpc gets HTTP/2, and an undeclared port uses the
 * client's protocol (Envoy use_downstream_protocol for sniffed traffic).
 */
export function upstreamProtocol(req: ForwardRequest, ep: UpstreamEndpoint): 'http1' | 'http2' {
  if (req.grpc) return 'http2';
  switch (ep.appProtocol) {
    case 'HTTP11':
      return 'http1';
    case 'HTTP2':
    case 'GRPC':
      return 'http2';
    default:
      return req.protocol;
  }
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

async function tryHttp1(
  upstream: Upstream,
  ep: UpstreamEndpoint,
  req: ForwardRequest,
  signal: AbortSignal,
): Promise<Omit<ForwardResponse, 'endpoint' | 'tries'>> {
  const r = await upstream.http1(ep).request({
    method: req.method as 'GET',
    path: req.path,
    // An HTTP/2 client's request carries :authority, not Host; HTTP/1.1 needs Host.
    headers: req.headers.host === undefined ? { ...req.headers, host: req.authority } : req.headers,
    body: req.body.length > 0 ? req.body : null,
    signal,
    // Timeouts are the route's, enforced by the signal; undici's own defaults (300 s) stay as a backstop.
  });
  const trailers = new Promise<Headers | undefined>((resolve) => {
    r.body.once('end', () => resolve(r.trailers as Headers));
    r.body.once('error', () => resolve(undefined));
    r.body.once('close', () => resolve(r.trailers as Headers));
  });
  return { status: r.statusCode, headers: r.headers as Headers, body: r.body, trailers };
}

async function tryHttp2(
  upstream: Upstream,
  ep: UpstreamEndpoint,
  req: ForwardRequest,
  signal: AbortSignal,
): Promise<Omit<ForwardResponse, 'endpoint' | 'tries'>> {
  const session = await upstream.http2(ep);
  const stream = session.request(
    {
      ...req.headers,
      ':method': req.method,
      ':path': req.path,
      ':authority': req.authority,
      ':scheme': 'http',
    },
    { endStream: req.body.length === 0, signal },
  );
  if (req.body.length > 0) stream.end(req.body);
  const trailers = new Promise<Headers | undefined>((resolve) => {
    let t: Headers | undefined;
    stream.once('trailers', (h: http2.IncomingHttpHeaders) => {
      t = h as Headers;
    });
    stream.once('close', () => resolve(t));
  });
  const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
    let settled = false;
    stream.once('response', (h) => {
      settled = true;
      resolve(h);
    });
    stream.once('error', (err) => {
      settled = true;
      reject(err);
    });
    // Every stream closes; only one that closed before its response is a reset (and an Error is costly).
    stream.once('close', () => {
      if (!settled)
        reject(
          new WaypointError('WAYPOINT_UPSTREAM_RESET', `upstream reset the stream (code ${stream.rstCode})`),
        );
    });
  });
  const { ':status': status, ...rest } = headers;
  return { status: Number(status), headers: rest as Headers, body: stream as unknown as Readable, trailers };
}

/**
 * Sends `req` to endpoints chosen by `pick` under `rule`'s retry and timeouts. `ctl` is the request's one
 * AbortController: the client going away or the request timeout aborts it (a per-try controller exists only
 * when the route sets backendRequest — AbortControllers are a measurable share of a request's CPU).
 * Resolves with the response whose body the caller must consume.
 */
export async function forward(
  upstream: Upstream,
  pick: () => UpstreamEndpoint,
  req: ForwardRequest,
  rule: RouteRule | undefined,
  ctl: AbortController,
): Promise<ForwardResponse> {
  let timedOut = false;
  const overallTimer =
    rule?.timeoutMs !== undefined
      ? setTimeout(() => {
          timedOut = true;
          ctl.abort(new WaypointError('WAYPOINT_REQUEST_TIMEOUT', `request timeout ${rule.timeoutMs} ms`));
        }, rule.timeoutMs)
      : undefined;
  const done = (): void => {
    if (overallTimer) clearTimeout(overallTimer);
  };
  const retries = rule?.retry?.attempts ?? DEFAULT_CONNECT_RETRIES;
  const codes = rule?.retry?.codes;
  const baseBackoff = rule?.retry?.backoffMs ?? 25;
  let lastError: WaypointError | undefined;
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) {
      // Envoy: fully jittered exponential backoff, base × 2^(n-1), capped at 10 × base.
      const cap = Math.min(baseBackoff * 2 ** (attempt - 1), baseBackoff * 10);
      await sleep(Math.max(1, Math.round(cap / 2 + (Math.random() * cap) / 2)), ctl.signal);
    }
    if (ctl.signal.aborted) break;
    let tryCtl = ctl;
    let perTry: NodeJS.Timeout | undefined;
    let perTryTimedOut = false;
    let unlink: (() => void) | undefined;
    if (rule?.backendTimeoutMs !== undefined) {
      const c = new AbortController();
      tryCtl = c;
      const onAbort = (): void => c.abort(ctl.signal.reason);
      ctl.signal.addEventListener('abort', onAbort, { once: true });
      unlink = () => ctl.signal.removeEventListener('abort', onAbort);
      perTry = setTimeout(() => {
        perTryTimedOut = true;
        c.abort(
          new WaypointError(
            'WAYPOINT_REQUEST_TIMEOUT',
            `backend request timeout ${rule.backendTimeoutMs} ms`,
          ),
        );
      }, rule.backendTimeoutMs);
    }
    const endTry = (): void => {
      if (perTry) clearTimeout(perTry);
      unlink?.();
    };
    let ep: UpstreamEndpoint;
    try {
      ep = pick();
    } catch (err) {
      endTry();
      done();
      throw err;
    }
    try {
      const r =
        upstreamProtocol(req, ep) === 'http2'
          ? await tryHttp2(upstream, ep, req, tryCtl.signal)
          : await tryHttp1(upstream, ep, req, tryCtl.signal);
      if (codes?.has(r.status) && attempt < retries) {
        r.body.resume();
        r.body.destroy();
        endTry();
        lastError = new WaypointError('WAYPOINT_UPSTREAM_RESET', `upstream answered ${r.status}`);
        continue;
      }
      // The timers keep running until the body ends: a body that stalls past the timeout is cut.
      void r.trailers.finally(() => {
        endTry();
        done();
      });
      return { ...r, endpoint: ep, tries: attempt + 1 };
    } catch (err) {
      endTry();
      if (timedOut) break;
      if (perTryTimedOut) {
        lastError = new WaypointError(
          'WAYPOINT_REQUEST_TIMEOUT',
          `backend request timeout ${rule?.backendTimeoutMs} ms`,
        );
        // Envoy retries per-try timeouts only when a retry policy is set.
        if (!rule?.retry) break;
        continue;
      }
      if (ctl.signal.aborted) {
        done();
        throw new WaypointError('WAYPOINT_UPSTREAM_RESET', 'client went away');
      }
      lastError = asWaypointError(err);
      // Only failures before the request reached the app are retried by default.
      if (!rule?.retry && lastError.code !== 'WAYPOINT_UPSTREAM_CONNECT_FAILED') break;
    }
  }
  done();
  if (timedOut) throw new WaypointError('WAYPOINT_REQUEST_TIMEOUT', `request timeout ${rule?.timeoutMs} ms`);
  throw lastError ?? new WaypointError('WAYPOINT_UPSTREAM_CONNECT_FAILED', 'no try was made');
}

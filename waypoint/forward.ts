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
  protocol: 'http1' | 'http2';
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
    headers: req.headers,
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
    stream.once('response', resolve);
    stream.once('error', reject);
    stream.once('close', () =>
      reject(
        new WaypointError('WAYPOINT_UPSTREAM_RESET', `upstream reset the stream (code ${stream.rstCode})`),
      ),
    );
  });
  const { ':status': status, ...rest } = headers;
  return { status: Number(status), headers: rest as Headers, body: stream as unknown as Readable, trailers };
}

/**
 * Sends `req` to endpoints chosen by `pick` under `rule`'s retry and timeouts. `signal` aborts everything
 * (the client went away). Resolves with the response whose body the caller must consume.
 */
export async function forward(
  upstream: Upstream,
  pick: () => UpstreamEndpoint,
  req: ForwardRequest,
  rule: RouteRule | undefined,
  signal: AbortSignal,
): Promise<ForwardResponse> {
  const overall = new AbortController();
  const onClientAbort = (): void => overall.abort(new Error('client went away'));
  signal.addEventListener('abort', onClientAbort, { once: true });
  let timedOut = false;
  const overallTimer =
    rule?.timeoutMs !== undefined
      ? setTimeout(() => {
          timedOut = true;
          overall.abort(
            new WaypointError('WAYPOINT_REQUEST_TIMEOUT', `request timeout ${rule.timeoutMs} ms`),
          );
        }, rule.timeoutMs)
      : undefined;
  const retries = rule?.retry?.attempts ?? DEFAULT_CONNECT_RETRIES;
  const codes = rule?.retry?.codes;
  const baseBackoff = rule?.retry?.backoffMs ?? 25;
  const clearTimers = (): void => {
    if (overallTimer) clearTimeout(overallTimer);
    signal.removeEventListener('abort', onClientAbort);
  };
  let lastError: WaypointError | undefined;
  try {
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) {
        // Envoy: fully jittered exponential backoff, base × 2^(n-1), capped at 10 × base.
        const cap = Math.min(baseBackoff * 2 ** (attempt - 1), baseBackoff * 10);
        await sleep(Math.max(1, Math.round(cap / 2 + (Math.random() * cap) / 2)), overall.signal);
      }
      if (overall.signal.aborted) break;
      const tryCtl = new AbortController();
      const onOverall = (): void => tryCtl.abort(overall.signal.reason);
      overall.signal.addEventListener('abort', onOverall, { once: true });
      let perTryTimedOut = false;
      const perTry =
        rule?.backendTimeoutMs !== undefined
          ? setTimeout(() => {
              perTryTimedOut = true;
              tryCtl.abort(
                new WaypointError(
                  'WAYPOINT_REQUEST_TIMEOUT',
                  `backend request timeout ${rule.backendTimeoutMs} ms`,
                ),
              );
            }, rule.backendTimeoutMs)
          : undefined;
      let ep: UpstreamEndpoint;
      try {
        ep = pick();
      } catch (err) {
        overall.signal.removeEventListener('abort', onOverall);
        if (perTry) clearTimeout(perTry);
        throw err;
      }
      try {
        const r =
          req.protocol === 'http2'
            ? await tryHttp2(upstream, ep, req, tryCtl.signal)
            : await tryHttp1(upstream, ep, req, tryCtl.signal);
        if (codes?.has(r.status) && attempt < retries) {
          r.body.resume();
          r.body.destroy();
          lastError = new WaypointError('WAYPOINT_UPSTREAM_RESET', `upstream answered ${r.status}`);
          overall.signal.removeEventListener('abort', onOverall);
          if (perTry) clearTimeout(perTry);
          continue;
        }
        // The timers keep running until the body ends: a body that stalls past the timeout is cut.
        void r.trailers.finally(() => {
          if (perTry) clearTimeout(perTry);
          overall.signal.removeEventListener('abort', onOverall);
          clearTimers();
        });
        return { ...r, endpoint: ep, tries: attempt + 1 };
      } catch (err) {
        overall.signal.removeEventListener('abort', onOverall);
        if (perTry) clearTimeout(perTry);
        if (timedOut) break;
        if (perTryTimedOut) {
          lastError = new WaypointError(
            'WAYPOINT_REQUEST_TIMEOUT',
            `backend request timeout ${rule?.backendTimeoutMs} ms`,
          );
          // Envoy retries per-try timeouts only when asked to (retry_on reset); with codes-only retry we stop.
          if (!rule?.retry) break;
          continue;
        }
        if (signal.aborted) throw new WaypointError('WAYPOINT_UPSTREAM_RESET', 'client went away');
        lastError = asWaypointError(err);
        // Only failures before the request reached the app are retried by default.
        if (!rule?.retry && lastError.code !== 'WAYPOINT_UPSTREAM_CONNECT_FAILED') break;
      }
    }
  } catch (err) {
    clearTimers();
    throw err;
  }
  clearTimers();
  if (timedOut) throw new WaypointError('WAYPOINT_REQUEST_TIMEOUT', `request timeout ${rule?.timeoutMs} ms`);
  throw lastError ?? new WaypointError('WAYPOINT_UPSTREAM_CONNECT_FAILED', 'no try was made');
}

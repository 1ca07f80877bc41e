// HTTPRoute / GRPCRoute at the waypoint (Gateway API v1, as Istio's waypoint applies them: istio/istio
// pilot/pkg/config/kube/gateway/conversion.go). A route attaches with `parentRefs` to a Service (group ""
// / core, optional port) — the usual waypoint case — or to the waypoint's own Gateway (every destination
// it serves). Supported: path (Exact, PathPrefix, RegularExpression), header, query and method matches,
// gRPC service/method matches, weighted backendRefs, RequestHeaderModifier / ResponseHeaderModifier,
// `timeouts.request` / `timeouts.backendRequest`, `retry` (attempts, codes, backoff).
//
// A destination with no attached route goes to itself (Istio's default route); a destination with routes
// where no rule matches gets 404 (Gateway API: "no matching route").
import type { Logger } from 'pino';
import type { HttpRoute, Service, Waypoint } from '../core/state/model.js';
import type { MeshState } from '../core/state/state.js';
import { WaypointError } from './errors.js';

export interface HeaderModifier {
  set: [string, string][];
  add: [string, string][];
  remove: string[];
}

export interface RetryPolicy {
  /** Retries after the first try (Gateway API `retry.attempts`). */
  attempts: number;
  codes: Set<number>;
  backoffMs: number;
}

export interface BackendRef {
  name: string;
  namespace: string;
  /** Service port; undefined → the port the client used. */
  port?: number;
  weight: number;
}

export interface RouteRule {
  /** `Kind/ns/name#rule` for logs. */
  id: string;
  backends: BackendRef[];
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
  timeoutMs?: number;
  backendTimeoutMs?: number;
  retry?: RetryPolicy;
}

/** What a route match reads from a request. */
export interface RouteRequest {
  method: string;
  /** Path with query. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

interface Matcher {
  test(r: RouteRequest, pathOnly: string, query: URLSearchParams): boolean;
  /** Gateway API precedence: exact path > longer prefix > method > more headers > more query params. */
  rank: number[];
}

interface CompiledRule {
  rule: RouteRule;
  matchers: Matcher[];
}

export class RouteError extends Error {
  readonly code = 'WAYPOINT_ROUTE_INVALID';
  constructor(route: string, field: string, problem: string) {
    super(`${route}: ${field}: ${problem}`);
    this.name = 'RouteError';
  }
}

/** Gateway API Duration: `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, e.g. `100ms`, `1m30s`. */
export function parseDuration(text: unknown, where: string, field: string): number {
  if (typeof text !== 'string' || !/^([0-9]{1,5}(h|ms|m|s)){1,4}$/.test(text)) {
    throw new RouteError(where, field, `${JSON.stringify(text)} is not a duration like 100ms, 2s or 1m`);
  }
  let ms = 0;
  for (const m of text.matchAll(/([0-9]{1,5})(h|ms|m|s)/g)) {
    const n = Number(m[1]);
    ms += n * ({ h: 3_600_000, m: 60_000, s: 1000, ms: 1 } as Record<string, number>)[m[2] ?? 'ms']!;
  }
  return ms;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const arr = (v: unknown, where: string, field: string): unknown[] => {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new RouteError(where, field, 'must be a list');
  return v;
};
const str = (v: unknown, where: string, field: string): string => {
  if (typeof v !== 'string' || v === '') throw new RouteError(where, field, 'must be a non-empty string');
  return v;
};

function headerModifier(v: unknown, where: string, field: string): HeaderModifier {
  if (!isObj(v)) throw new RouteError(where, field, 'must be an object');
  const pairs = (k: string) =>
    arr(v[k], where, `${field}.${k}`).map((e, i): [string, string] => {
      if (!isObj(e)) throw new RouteError(where, `${field}.${k}[${i}]`, 'must be {name, value}');
      return [str(e.name, where, `${field}.${k}[${i}].name`).toLowerCase(), String(e.value ?? '')];
    });
  return {
    set: pairs('set'),
    add: pairs('add'),
    remove: arr(v.remove, where, `${field}.remove`).map((n, i) =>
      str(n, where, `${field}.remove[${i}]`).toLowerCase(),
    ),
  };
}

function regex(v: unknown, where: string, field: string): RegExp {
  const s = str(v, where, field);
  try {
    return new RegExp(`^(?:${s})$`);
  } catch (err) {
    throw new RouteError(where, field, `invalid regular expression: ${(err as Error).message}`);
  }
}

function headerValue(h: RouteRequest['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function headerMatchers(list: unknown[], where: string, field: string) {
  return list.map((h, i) => {
    const f = `${field}[${i}]`;
    if (!isObj(h)) throw new RouteError(where, f, 'must be an object');
    const name = str(h.name, where, `${f}.name`).toLowerCase();
    if (h.type === 'RegularExpression') {
      const re = regex(h.value, where, `${f}.value`);
      return (r: RouteRequest) => {
        const v = headerValue(r.headers, name);
        return v !== undefined && re.test(v);
      };
    }
    if (h.type !== undefined && h.type !== 'Exact') {
      throw new RouteError(
        where,
        `${f}.type`,
        `unsupported ${JSON.stringify(h.type)} (Exact | RegularExpression)`,
      );
    }
    const value = String(h.value ?? '');
    return (r: RouteRequest) => headerValue(r.headers, name) === value;
  });
}

function httpMatch(m: unknown, where: string, field: string): Matcher {
  if (!isObj(m)) throw new RouteError(where, field, 'must be an object');
  const tests: ((r: RouteRequest, path: string, q: URLSearchParams) => boolean)[] = [];
  // Gateway API default: PathPrefix "/".
  let pathRank = [1, 1];
  if (m.path !== undefined) {
    if (!isObj(m.path)) throw new RouteError(where, `${field}.path`, 'must be {type, value}');
    const type = m.path.type ?? 'PathPrefix';
    const value = m.path.value ?? '/';
    if (type === 'Exact') {
      const v = str(value, where, `${field}.path.value`);
      tests.push((_r, p) => p === v);
      pathRank = [3, v.length];
    } else if (type === 'PathPrefix') {
      const v = str(value, where, `${field}.path.value`).replace(/\/+$/, '');
      // Gateway API: prefix matches whole path elements ("/api" matches "/api" and "/api/x", not "/apix").
      tests.push((_r, p) => v === '' || p === v || p.startsWith(`${v}/`));
      pathRank = [1, v.length + 1];
    } else if (type === 'RegularExpression') {
      const re = regex(value, where, `${field}.path.value`);
      tests.push((_r, p) => re.test(p));
      pathRank = [2, String(value).length];
    } else {
      throw new RouteError(where, `${field}.path.type`, `unsupported ${JSON.stringify(type)}`);
    }
  }
  if (m.method !== undefined) {
    const method = str(m.method, where, `${field}.method`).toUpperCase();
    tests.push((r) => r.method === method);
  }
  const headers = headerMatchers(arr(m.headers, where, `${field}.headers`), where, `${field}.headers`);
  for (const h of headers) tests.push((r) => h(r));
  const query = arr(m.queryParams, where, `${field}.queryParams`).map((q, i) => {
    const f = `${field}.queryParams[${i}]`;
    if (!isObj(q)) throw new RouteError(where, f, 'must be an object');
    const name = str(q.name, where, `${f}.name`);
    if (q.type === 'RegularExpression') {
      const re = regex(q.value, where, `${f}.value`);
      return (qs: URLSearchParams) => {
        const v = qs.get(name);
        return v !== null && re.test(v);
      };
    }
    const value = String(q.value ?? '');
    return (qs: URLSearchParams) => qs.get(name) === value;
  });
  for (const q of query) tests.push((_r, _p, qs) => q(qs));
  return {
    test: (r, p, q) => tests.every((t) => t(r, p, q)),
    rank: [...pathRank, m.method !== undefined ? 1 : 0, headers.length, query.length],
  };
}

/** GRPCRoute match: `method: {type, service, method}` over the path `/<service>/<method>`. */
function grpcMatch(m: unknown, where: string, field: string): Matcher {
  if (!isObj(m)) throw new RouteError(where, field, 'must be an object');
  const tests: ((r: RouteRequest, path: string) => boolean)[] = [];
  let rank = [0, 0];
  if (m.method !== undefined) {
    if (!isObj(m.method)) throw new RouteError(where, `${field}.method`, 'must be {type, service, method}');
    const { service, method } = m.method;
    if (m.method.type === 'RegularExpression') {
      const s = service === undefined ? /^.*$/ : regex(service, where, `${field}.method.service`);
      const me = method === undefined ? /^.*$/ : regex(method, where, `${field}.method.method`);
      tests.push((_r, p) => {
        const [, svc = '', mth = ''] = p.split('/');
        return s.test(svc) && me.test(mth);
      });
      rank = [2, 0];
    } else {
      const s = service === undefined ? undefined : str(service, where, `${field}.method.service`);
      const me = method === undefined ? undefined : str(method, where, `${field}.method.method`);
      tests.push((_r, p) => {
        const [, svc = '', mth = ''] = p.split('/');
        return (s === undefined || svc === s) && (me === undefined || mth === me);
      });
      rank = [3, (s === undefined ? 0 : 1) + (me === undefined ? 0 : 1)];
    }
  }
  const headers = headerMatchers(arr(m.headers, where, `${field}.headers`), where, `${field}.headers`);
  for (const h of headers) tests.push((r) => h(r));
  return { test: (r, p) => tests.every((t) => t(r, p)), rank: [...rank, 0, headers.length, 0] };
}

export function compileRule(route: HttpRoute, rule: unknown, index: number): CompiledRule {
  const where = `${route.kind} ${route.namespace}/${route.name}`;
  const f = `spec.rules[${index}]`;
  if (!isObj(rule)) throw new RouteError(where, f, 'must be an object');
  const matchList = arr(rule.matches, where, `${f}.matches`);
  const make = route.kind === 'GRPCRoute' ? grpcMatch : httpMatch;
  const matchers =
    matchList.length === 0
      ? [make({}, where, `${f}.matches[0]`)]
      : matchList.map((m, i) => make(m, where, `${f}.matches[${i}]`));
  const backends = arr(rule.backendRefs, where, `${f}.backendRefs`).map((b, i): BackendRef => {
    const bf = `${f}.backendRefs[${i}]`;
    if (!isObj(b)) throw new RouteError(where, bf, 'must be an object');
    if (b.kind !== undefined && b.kind !== 'Service') {
      throw new RouteError(where, `${bf}.kind`, `unsupported ${JSON.stringify(b.kind)} (Service)`);
    }
    const weight = b.weight === undefined ? 1 : Number(b.weight);
    if (!Number.isInteger(weight) || weight < 0 || weight > 1_000_000) {
      throw new RouteError(where, `${bf}.weight`, 'must be an integer 0..1000000');
    }
    const port = b.port === undefined ? undefined : Number(b.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
      throw new RouteError(where, `${bf}.port`, 'must be a port 1..65535');
    }
    return {
      name: str(b.name, where, `${bf}.name`),
      namespace: typeof b.namespace === 'string' ? b.namespace : route.namespace,
      ...(port !== undefined ? { port } : {}),
      weight,
    };
  });
  const out: RouteRule = { id: `${where}#${index}`, backends };
  for (const [i, filter] of arr(rule.filters, where, `${f}.filters`).entries()) {
    const ff = `${f}.filters[${i}]`;
    if (!isObj(filter)) throw new RouteError(where, ff, 'must be an object');
    if (filter.type === 'RequestHeaderModifier') {
      out.requestHeaders = headerModifier(filter.requestHeaderModifier, where, `${ff}.requestHeaderModifier`);
    } else if (filter.type === 'ResponseHeaderModifier') {
      out.responseHeaders = headerModifier(
        filter.responseHeaderModifier,
        where,
        `${ff}.responseHeaderModifier`,
      );
    } else {
      throw new RouteError(where, `${ff}.type`, `unsupported filter ${JSON.stringify(filter.type)}`);
    }
  }
  if (rule.timeouts !== undefined) {
    if (!isObj(rule.timeouts)) throw new RouteError(where, `${f}.timeouts`, 'must be an object');
    // "0s" disables a timeout (Gateway API).
    if (rule.timeouts.request !== undefined) {
      const ms = parseDuration(rule.timeouts.request, where, `${f}.timeouts.request`);
      if (ms > 0) out.timeoutMs = ms;
    }
    if (rule.timeouts.backendRequest !== undefined) {
      const ms = parseDuration(rule.timeouts.backendRequest, where, `${f}.timeouts.backendRequest`);
      if (ms > 0) out.backendTimeoutMs = ms;
    }
  }
  if (rule.retry !== undefined) {
    if (!isObj(rule.retry)) throw new RouteError(where, `${f}.retry`, 'must be an object');
    // Istio: attempts default 2 when a retry block is given without it.
    const attempts = rule.retry.attempts === undefined ? 2 : Number(rule.retry.attempts);
    if (!Number.isInteger(attempts) || attempts < 0 || attempts > 100) {
      throw new RouteError(where, `${f}.retry.attempts`, 'must be an integer 0..100');
    }
    const codes = arr(rule.retry.codes, where, `${f}.retry.codes`).map((c, i) => {
      const n = Number(c);
      if (!Number.isInteger(n) || n < 400 || n > 599) {
        throw new RouteError(where, `${f}.retry.codes[${i}]`, 'must be an HTTP status 400..599');
      }
      return n;
    });
    out.retry = {
      attempts,
      codes: new Set(codes.length > 0 ? codes : [503]),
      // Envoy's default base interval is 25 ms.
      backoffMs:
        rule.retry.backoff === undefined
          ? 25
          : parseDuration(rule.retry.backoff, where, `${f}.retry.backoff`),
    };
  }
  return { rule: out, matchers };
}

/** Does route `r` attach to (service, port) or to waypoint `wp`? 0 = no, 1 = via the Gateway, 2 = via the Service. */
export function attachment(r: HttpRoute, service: Service | undefined, port: number, wp: Waypoint): number {
  let best = 0;
  for (const p of r.parentRefs) {
    const ns = p.namespace ?? r.namespace;
    const kind = p.kind ?? 'Gateway';
    if (kind === 'Service' && (p.group === undefined || p.group === '' || p.group === 'core')) {
      if (
        service &&
        p.name === service.name &&
        ns === service.namespace &&
        (p.port === undefined || p.port === port)
      ) {
        best = 2;
      }
    } else if (kind === 'Gateway' && p.name === wp.name && ns === wp.namespace) {
      best = Math.max(best, 1);
    }
  }
  return best;
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (b[i] ?? 0) - (a[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

interface RouteTable {
  /** Matchers in precedence order; empty = no route attached (default route to the destination). */
  entries: { matcher: Matcher; rule: RouteRule }[];
}

export class Router {
  private readonly tables = new Map<string, RouteTable>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly state: MeshState,
    private readonly waypoint: () => Waypoint,
    private readonly log: Logger,
  ) {
    this.unsubscribe = state.onChange((changes) => {
      if (changes.some((c) => c.kind === 'route' || c.kind === 'waypoint' || c.kind === 'service')) {
        this.tables.clear();
      }
    });
  }

  close(): void {
    this.unsubscribe();
  }

  private table(service: Service | undefined, port: number, grpc: boolean): RouteTable {
    const key = `${service ? `${service.namespace}/${service.hostname}` : ''}:${port}:${grpc}`;
    let t = this.tables.get(key);
    if (t) return t;
    const wp = this.waypoint();
    const attached = this.state
      .routes()
      .map((r) => ({ r, how: attachment(r, service, port, wp) }))
      .filter((x) => x.how > 0);
    // Service-attached routes beat Gateway-attached ones; GRPCRoutes serve gRPC requests first.
    const best = Math.max(0, ...attached.map((x) => x.how));
    let routes = attached.filter((x) => x.how === best).map((x) => x.r);
    if (grpc && routes.some((r) => r.kind === 'GRPCRoute'))
      routes = routes.filter((r) => r.kind === 'GRPCRoute');
    else routes = routes.filter((r) => r.kind === 'HTTPRoute');
    routes.sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
    const entries: RouteTable['entries'] = [];
    for (const r of routes) {
      try {
        const compiled = r.rules.map((rule, i) => compileRule(r, rule, i));
        for (const c of compiled) for (const matcher of c.matchers) entries.push({ matcher, rule: c.rule });
      } catch (err) {
        // A bad route is left out (logged with route and field); the others keep serving.
        this.log.warn({ err: (err as Error).message }, 'route ignored');
      }
    }
    entries.sort((a, b) => compare(a.matcher.rank, b.matcher.rank));
    t = { entries };
    this.tables.set(key, t);
    return t;
  }

  /**
   * The rule for a request, or undefined when no route is attached (default: the destination itself).
   * Throws WaypointError NO_ROUTE (404) when routes are attached and none matches.
   */
  route(service: Service | undefined, port: number, grpc: boolean, req: RouteRequest): RouteRule | undefined {
    const t = this.table(service, port, grpc);
    if (t.entries.length === 0) return undefined;
    const q = req.path.indexOf('?');
    const pathOnly = q >= 0 ? req.path.slice(0, q) : req.path;
    const query = new URLSearchParams(q >= 0 ? req.path.slice(q + 1) : '');
    for (const e of t.entries) if (e.matcher.test(req, pathOnly, query)) return e.rule;
    throw new WaypointError('WAYPOINT_NO_ROUTE', `no route matches ${req.method} ${pathOnly}`);
  }
}

/** Weighted choice among backendRefs (weight 0 never chosen); `random` in [0,1). */
export function pickBackend(
  backends: BackendRef[],
  random: () => number = Math.random,
): BackendRef | undefined {
  const total = backends.reduce((s, b) => s + b.weight, 0);
  if (total <= 0) return undefined;
  let x = random() * total;
  for (const b of backends) {
    if (b.weight === 0) continue;
    if (x < b.weight) return b;
    x -= b.weight;
  }
  return backends.filter((b) => b.weight > 0).at(-1);
}

// TEST DOUBLE — an in-repo HTTP(S) server speaking the real Kubernetes REST and watch protocol for the
// resources Ambit uses, so @kubernetes/client-node runs UNMODIFIED against it through a real
// KubeConfig pointing at http(s)://127.0.0.1:<port>. It stands in for the one edge we cannot run on
// this machine (a Kubernetes API server); it is not a product component and never ships.
//
// Served: discovery (/api, /apis, /api/v1, /apis/<g>/<v>, /version); per resource list (with
// resourceVersion, labelSelector, fieldSelector), get, create (generateName), update (optimistic
// concurrency on metadata.resourceVersion), patch (merge, strategic-as-merge, json-patch, apply),
// delete (namespace contents and owner-reference garbage collection cascade), /status subresources;
// watch (`?watch=1`): chunked JSON lines ADDED/MODIFIED/DELETED, BOOKMARK when allowWatchBookmarks,
// `timeoutSeconds`, and for a compacted resourceVersion an ERROR event carrying a 410 Status (what the
// real apiserver sends on a 200 watch stream), or HTTP 410 on a list with resourceVersionMatch=Exact.
// TokenReview (authentication.k8s.io/v1) answers from tokens registered through the control API.
//
// pods/<name>/portforward over WebSocket (portforward.ts).
//
// Control API for tests (in-process methods, and HTTP under /__control/): drop all watches, compact
// history (forces 410 on resume), register tokens, send a bookmark now.
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import YAML from 'yaml';
import { ApiError } from './errors.js';
import { jsonPatch, mergePatch } from './patch.js';
import { handlePortForwardUpgrades, type PortForwardResolver } from './portforward.js';
import { apiVersionOf, findResource, groupList, type ResourceType, resourceList } from './resources.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import { type EventType, type Obj, ObjectStore } from './store.js';

export interface TestTokenSpec {
  token: string;
  namespace: string;
  serviceAccount: string;
  /** Audiences the token was minted for (projected token `audience`). Default ['istio-ca']. */
  audiences?: string[];
  /** Bound pod (what kubelet's projected tokens carry). */
  pod?: { name: string; uid?: string };
  /** `authentication.kubernetes.io/node-name` extra (Kubernetes 1.30+ bound tokens). */
  node?: string;
}

export interface TestApiServerOptions {
  /** PEM key/cert to serve HTTPS; plain HTTP otherwise. */
  tls?: { key: string; cert: string };
  /** BOOKMARK period for watches that allow bookmarks. Default 1000 ms (the real one is ~1 min). */
  bookmarkIntervalMs?: number;
  /** Events kept for watch resume before older resourceVersions become 410. Default 10,000. */
  historyLimit?: number;
  /** Serve an existing store (an API server restart: same cluster state, new listener). */
  store?: ObjectStore;
  /** Where `pods/<name>/portforward` connects (pod IPs are not routable here); default status.podIP. */
  portForward?: PortForwardResolver;
}

/** The objects of one chunked list, kept from its first page to its last. */
interface ListSnapshot {
  id: string;
  tkey: string;
  rv: string;
  items: Obj[];
}

interface Route {
  type: ResourceType;
  namespace?: string;
  name?: string;
  subresource?: string;
}

export class TestKubernetesApiServer {
  readonly store: ObjectStore;
  readonly #server: Server;
  readonly #tokens = new Map<string, TestTokenSpec>();
  readonly #bookmarkTimer: NodeJS.Timeout;
  readonly #tls: boolean;
  /** Requests seen, `VERB path?query` (tests assert what clients asked for, e.g. a fieldSelector). */
  readonly requests: string[] = [];
  #port = 0;
  readonly #snapshots = new Map<string, ListSnapshot>();
  #snapshotSeq = 0;
  /** Chunked lists in flight at once; a continue token of an older one gets 410. */
  snapshotLimit = 32;
  readonly #sockets = new Set<Socket>();
  /** Where port-forwards go (tests set it after starting the pods' servers). */
  portForward: PortForwardResolver | undefined;
  #closedBytes = 0;

  constructor(opts: TestApiServerOptions = {}) {
    this.store = opts.store ?? new ObjectStore(opts.historyLimit);
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((err: unknown) => this.#fail(res, err));
    };
    this.#tls = opts.tls !== undefined;
    this.#server = opts.tls
      ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, handler)
      : createServer(handler);
    // Bytes written to clients (what the API server's egress costs the cluster, per watcher).
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => {
        this.#sockets.delete(socket);
        this.#closedBytes += socket.bytesWritten;
      });
    });
    handlePortForwardUpgrades(this.#server, this.store, () => this.portForward);
    this.portForward = opts.portForward;
    this.#bookmarkTimer = setInterval(() => this.store.bookmark(), opts.bookmarkIntervalMs ?? 1000);
    this.#bookmarkTimer.unref();
  }

  async listen(port = 0, host = '127.0.0.1'): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve());
    });
    this.#port = (this.#server.address() as AddressInfo).port;
    return this.url;
  }

  /** Bytes written to every client connection so far (TLS records included when serving HTTPS). */
  bytesSent(): number {
    let n = this.#closedBytes;
    for (const s of this.#sockets) n += s.bytesWritten;
    return n;
  }

  get url(): string {
    return `${this.#tls ? 'https' : 'http'}://127.0.0.1:${this.#port}`;
  }

  /** A kubeconfig (YAML) pointing at this server, for KubeConfig.loadFromString or a file. */
  kubeconfig(token = 'test-admin-token'): string {
    return YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      // client-node 1.x refuses http:// unless skip-tls-verify is set; with https the cert is self-signed.
      clusters: [{ name: 'test', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'test', user: { token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }],
      'current-context': 'test',
    });
  }

  async close(): Promise<void> {
    clearInterval(this.#bookmarkTimer);
    this.store.dropWatches();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // --- control API -------------------------------------------------------------------------------

  /** Forgets every chunked list in flight: their next continue token gets 410 Expired. */
  expireContinueTokens(): void {
    this.#snapshots.clear();
  }

  dropWatches(): number {
    return this.store.dropWatches();
  }

  compact(): void {
    this.store.compact();
  }

  addToken(spec: TestTokenSpec): void {
    this.#tokens.set(spec.token, spec);
  }

  removeToken(token: string): void {
    this.#tokens.delete(token);
  }

  // --- HTTP ----------------------------------------------------------------------------------------

  #fail(res: ServerResponse, err: unknown): void {
    const e = err instanceof ApiError ? err : new ApiError(500, 'InternalError', (err as Error).message);
    if (res.headersSent) {
      res.end();
      return;
    }
    res.writeHead(e.code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(e.status()));
  }

  #json(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  async #body(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > 3 * 1024 * 1024) throw new ApiError(413, 'RequestEntityTooLarge', 'request body too large');
      chunks.push(c as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return {};
    const ct = req.headers['content-type'] ?? '';
    try {
      return ct.includes('yaml') ? YAML.parse(text) : JSON.parse(text);
    } catch (err) {
      throw new ApiError(
        400,
        'BadRequest',
        `request body is not valid ${ct.includes('yaml') ? 'YAML' : 'JSON'}: ${(err as Error).message}`,
      );
    }
  }

  #route(path: string): Route | undefined {
    const parts = path.split('/').filter(Boolean);
    let group: string;
    let version: string;
    let rest: string[];
    if (parts[0] === 'api') {
      group = '';
      version = parts[1] ?? '';
      rest = parts.slice(2);
    } else if (parts[0] === 'apis') {
      group = parts[1] ?? '';
      version = parts[2] ?? '';
      rest = parts.slice(3);
    } else return undefined;
    let namespace: string | undefined;
    // /namespaces/<ns>/<resource>... ; but /namespaces and /namespaces/<name>[/status] are the
    // Namespace resource itself.
    if (rest[0] === 'namespaces' && rest.length >= 3 && findResource(group, version, rest[2]!)) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    const type = findResource(group, version, rest[0] ?? '');
    if (!type) return undefined;
    if (namespace !== undefined && !type.namespaced) return undefined;
    return { type, namespace, name: rest[1], subresource: rest[2] };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname.replace(/\/+$/, '');
    const method = req.method ?? 'GET';
    this.requests.push(`${method} ${url.pathname}${url.search}`);
    if (this.requests.length > 10_000) this.requests.splice(0, 5_000);

    if (path.startsWith('/__control/')) return this.#control(path.slice('/__control/'.length), req, res);
    if (method === 'GET') {
      if (path === '/version')
        return this.#json(res, 200, {
          major: '1',
          minor: '31',
          gitVersion: 'v1.31.0-ambit-test-double',
          platform: 'linux/amd64',
        });
      if (path === '/api') return this.#json(res, 200, { kind: 'APIVersions', versions: ['v1'] });
      if (path === '/apis') return this.#json(res, 200, groupList());
      const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path);
      if (m) {
        const list = m[1] ? resourceList('', 'v1') : resourceList(m[2]!, m[3]!);
        if (list) return this.#json(res, 200, list);
      }
    }
    const route = this.#route(path);
    if (!route)
      throw new ApiError(
        404,
        'NotFound',
        `the server could not find the requested resource (${method} ${path})`,
      );
    const { type: t, namespace, name, subresource } = route;
    if (subresource !== undefined && !(subresource === 'status' && t.status))
      throw new ApiError(
        404,
        'NotFound',
        `the server could not find the requested resource (${t.resource}/${subresource})`,
      );
    if (t.createOnly) {
      if (method !== 'POST' || name !== undefined)
        throw new ApiError(405, 'MethodNotAllowed', `${t.resource} only supports create`);
      return this.#json(res, 201, this.#tokenReview((await this.#body(req)) as Obj));
    }
    const q = url.searchParams;
    switch (method) {
      case 'GET': {
        if (name !== undefined) return this.#json(res, 200, this.store.get(t, namespace, name));
        const label = parseLabelSelector(q.get('labelSelector'));
        const field = parseFieldSelector(q.get('fieldSelector'));
        const watch = q.get('watch');
        if (watch === 'true' || watch === '1') return this.#watch(t, namespace, q, label, field, req, res);
        const rv = q.get('resourceVersion');
        if (rv && q.get('resourceVersionMatch') === 'Exact' && rv !== this.store.resourceVersion)
          throw new ApiError(
            410,
            'Expired',
            `too old resource version: ${rv} (${this.store.resourceVersion})`,
          );
        const limit = Number(q.get('limit') ?? 0);
        const cont = q.get('continue');
        if ((Number.isInteger(limit) && limit > 0) || cont)
          return this.#page(res, t, namespace, label, field, limit, cont);
        const items = this.store.list(t, namespace, label, field).map((o) => this.#listItem(t, o));
        return this.#json(res, 200, {
          kind: `${t.kind}List`,
          apiVersion: apiVersionOf(t),
          metadata: { resourceVersion: this.store.resourceVersion },
          items,
        });
      }
      case 'POST': {
        if (name !== undefined) throw new ApiError(405, 'MethodNotAllowed', 'POST to a named object');
        const body = (await this.#body(req)) as Obj;
        this.#checkKind(t, body);
        if (q.get('dryRun') === 'All') return this.#json(res, 201, body);
        return this.#json(res, 201, this.store.create(t, namespace, body));
      }
      case 'PUT': {
        if (name === undefined) throw new ApiError(405, 'MethodNotAllowed', 'PUT needs an object name');
        const body = (await this.#body(req)) as Obj;
        this.#checkKind(t, body);
        return this.#json(res, 200, this.store.update(t, namespace, name, body, subresource));
      }
      case 'PATCH': {
        if (name === undefined) throw new ApiError(405, 'MethodNotAllowed', 'PATCH needs an object name');
        const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
        const patch = await this.#body(req);
        const cur = this.store.tryGet(t, namespace, name);
        if (ct === 'application/apply-patch+yaml') {
          if (!cur) return this.#json(res, 201, this.store.create(t, namespace, patch as Obj));
        }
        if (!cur) this.store.get(t, namespace, name); // throws the 404
        let next: unknown;
        if (ct === 'application/json-patch+json') next = jsonPatch(cur, patch);
        else if (
          ct === 'application/merge-patch+json' ||
          ct === 'application/strategic-merge-patch+json' ||
          ct === 'application/apply-patch+yaml'
        )
          next = mergePatch(cur, patch);
        else
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got "${ct}")`,
          );
        // A patch carries a resourceVersion precondition only if it set one itself.
        const patchRv = (patch as { metadata?: { resourceVersion?: string } } | null)?.metadata
          ?.resourceVersion;
        const obj = next as Obj;
        obj.metadata = { ...obj.metadata, resourceVersion: patchRv ?? cur!.metadata.resourceVersion };
        return this.#json(res, 200, this.store.update(t, namespace, name, obj, subresource));
      }
      case 'DELETE': {
        if (name === undefined) {
          // deletecollection
          const label = parseLabelSelector(q.get('labelSelector'));
          const field = parseFieldSelector(q.get('fieldSelector'));
          for (const o of this.store.list(t, namespace, label, field))
            this.store.delete(t, o.metadata.namespace, o.metadata.name);
          return this.#json(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success' });
        }
        return this.#json(res, 200, this.store.delete(t, namespace, name));
      }
      default:
        throw new ApiError(405, 'MethodNotAllowed', `method ${method} not allowed`);
    }
  }

  #checkKind(t: ResourceType, body: Obj): void {
    if (body === null || typeof body !== 'object' || Array.isArray(body))
      throw new ApiError(400, 'BadRequest', 'request body must be an object');
    if (body.kind !== undefined && body.kind !== t.kind)
      throw new ApiError(
        400,
        'BadRequest',
        `kind ${String(body.kind)} does not match the URL's resource ${t.resource} (${t.kind})`,
      );
    if (body.apiVersion !== undefined && body.apiVersion !== apiVersionOf(t))
      throw new ApiError(
        400,
        'BadRequest',
        `apiVersion ${String(body.apiVersion)} does not match ${apiVersionOf(t)}`,
      );
  }

  /**
   * One page of a chunked list (`limit` / `continue`, Kubernetes API concepts "Retrieving large
   * results sets in chunks"): every page of one list is served from the snapshot taken by its first
   * page, at the resourceVersion that page reported, so the pages add up to one consistent list;
   * `metadata.continue` names the next page, `remainingItemCount` what is left. A continue token
   * whose snapshot is gone answers 410 Expired, as the apiserver does once etcd compacted that
   * revision; the client then starts a new list.
   */
  #page(
    res: ServerResponse,
    t: ResourceType,
    namespace: string | undefined,
    label: ReturnType<typeof parseLabelSelector>,
    field: ReturnType<typeof parseFieldSelector>,
    limit: number,
    cont: string | null,
  ): void {
    let snap: ListSnapshot | undefined;
    let start = 0;
    if (cont) {
      let token: { rv?: string; snap?: string; start?: number };
      try {
        token = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as typeof token;
      } catch {
        throw new ApiError(400, 'BadRequest', 'continue key is not valid: illegal base64 data');
      }
      snap = token.snap === undefined ? undefined : this.#snapshots.get(token.snap);
      if (!snap || snap.tkey !== `${t.group}/${t.resource}`)
        throw new ApiError(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      start = token.start ?? 0;
    } else {
      snap = {
        id: String(++this.#snapshotSeq),
        tkey: `${t.group}/${t.resource}`,
        rv: this.store.resourceVersion,
        items: this.store.listRefs(t, namespace, label, field),
      };
      this.#snapshots.set(snap.id, snap);
      // A bounded number of lists in flight; the oldest snapshot goes first (its client gets 410).
      for (const id of this.#snapshots.keys()) {
        if (this.#snapshots.size <= this.snapshotLimit) break;
        this.#snapshots.delete(id);
      }
    }
    const size = limit > 0 ? limit : snap.items.length;
    const end = Math.min(snap.items.length, start + size);
    // Serialized as they are (the response is the copy): cloning 500 full Pods per page made this
    // test double, not the client under test, the slow side of a large list.
    const items = snap.items.slice(start, end).map((o) => this.#listItem(t, o));
    const metadata: Record<string, unknown> = { resourceVersion: snap.rv };
    if (end < snap.items.length) {
      metadata.continue = Buffer.from(JSON.stringify({ rv: snap.rv, snap: snap.id, start: end })).toString(
        'base64url',
      );
      metadata.remainingItemCount = snap.items.length - end;
    } else this.#snapshots.delete(snap.id);
    this.#json(res, 200, { kind: `${t.kind}List`, apiVersion: apiVersionOf(t), metadata, items });
  }

  /** Built-in types list their items without kind/apiVersion; custom resources include them. */
  #listItem(t: ResourceType, o: Obj): Obj {
    const isCrd = t.group.endsWith('istio.io') || t.group === 'gateway.networking.k8s.io';
    if (isCrd) return o;
    const { kind: _k, apiVersion: _a, ...rest } = o;
    return rest as Obj;
  }

  #watch(
    t: ResourceType,
    namespace: string | undefined,
    q: URLSearchParams,
    label: ReturnType<typeof parseLabelSelector>,
    field: ReturnType<typeof parseFieldSelector>,
    req: IncomingMessage,
    res: ServerResponse,
  ): void {
    const bookmarks = q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1';
    let closed = false;
    let stop = () => {};
    let timer: NodeJS.Timeout | undefined;
    const close = () => {
      if (closed) return;
      closed = true;
      stop();
      if (timer) clearTimeout(timer);
      res.end();
    };
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // Headers go out now, as the apiserver's do: a client waits for them before it reads events.
    res.flushHeaders();
    const sink = {
      tkey: `${t.group}/${t.resource}`,
      namespace,
      label,
      field,
      send: (type: EventType | 'BOOKMARK' | 'ERROR', object: Record<string, unknown>) => {
        if (closed || (type === 'BOOKMARK' && !bookmarks)) return;
        res.write(`${JSON.stringify({ type, object })}\n`);
      },
      close,
    };
    try {
      stop = this.store.watch(t, sink, q.get('resourceVersion') ?? undefined);
    } catch (err) {
      // The apiserver answers a watch from a compacted resourceVersion with 200 and one ERROR event
      // holding the 410 Status, then ends the stream.
      const e = err instanceof ApiError ? err : new ApiError(500, 'InternalError', String(err));
      res.write(`${JSON.stringify({ type: 'ERROR', object: e.status() })}\n`);
      close();
      return;
    }
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    if (timeout > 0) timer = setTimeout(close, timeout * 1000);
    req.on('close', close);
    res.on('close', close);
  }

  #tokenReview(body: Obj): Obj {
    const spec = (body.spec ?? {}) as { token?: string; audiences?: string[] };
    const tok = spec.token ? this.#tokens.get(spec.token) : undefined;
    const tokenAud = tok?.audiences ?? ['istio-ca'];
    const wanted = spec.audiences ?? [];
    const audiences = wanted.length === 0 ? tokenAud : wanted.filter((a) => tokenAud.includes(a));
    const base = {
      kind: 'TokenReview',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { creationTimestamp: null },
      spec,
    };
    if (!tok)
      return { ...base, status: { authenticated: false, error: 'invalid bearer token' } } as unknown as Obj;
    if (audiences.length === 0)
      return {
        ...base,
        status: { authenticated: false, error: 'token audiences do not match the requested audiences' },
      } as unknown as Obj;
    const extra: Record<string, string[]> = {};
    if (tok.pod) {
      extra['authentication.kubernetes.io/pod-name'] = [tok.pod.name];
      if (tok.pod.uid) extra['authentication.kubernetes.io/pod-uid'] = [tok.pod.uid];
    }
    if (tok.node) extra['authentication.kubernetes.io/node-name'] = [tok.node];
    return {
      ...base,
      status: {
        authenticated: true,
        user: {
          username: `system:serviceaccount:${tok.namespace}:${tok.serviceAccount}`,
          uid: `uid-${tok.namespace}-${tok.serviceAccount}`,
          groups: [
            'system:serviceaccounts',
            `system:serviceaccounts:${tok.namespace}`,
            'system:authenticated',
          ],
          ...(Object.keys(extra).length > 0 ? { extra } : {}),
        },
        audiences,
      },
    } as unknown as Obj;
  }

  async #control(what: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'POST') throw new ApiError(405, 'MethodNotAllowed', 'control API: POST only');
    switch (what) {
      case 'drop-watches':
        return this.#json(res, 200, { dropped: this.dropWatches() });
      case 'compact':
        this.compact();
        return this.#json(res, 200, { compactedTo: this.store.resourceVersion });
      case 'bookmark':
        this.store.bookmark();
        return this.#json(res, 200, {});
      case 'tokens': {
        const spec = (await this.#body(req)) as TestTokenSpec;
        if (!spec.token || !spec.namespace || !spec.serviceAccount)
          throw new ApiError(
            400,
            'BadRequest',
            'control API tokens: token, namespace and serviceAccount are required',
          );
        this.addToken(spec);
        return this.#json(res, 200, {});
      }
      default:
        throw new ApiError(404, 'NotFound', `control API: unknown action "${what}"`);
    }
  }
}

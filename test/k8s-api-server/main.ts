// TEST DOUBLE — the test Kubernetes API server as a child process, so it can run inside a network
// namespace the components can reach (the integration test puts it in a node netns). The parent drives
// it over the IPC channel: object writes go through the same store (and so the same watch events) as
// HTTP writes, plus the control API (drop watches, compact, tokens).
//   node main.js HOST:PORT   → IPC {ready: port}; then requests {id, op, ...} → {id, ok, result|error}
import { ApiError } from './errors.js';
import { findKind, type ResourceType } from './resources.js';
import { TestKubernetesApiServer, type TestTokenSpec } from './server.js';
import type { Obj } from './store.js';

const [listen] = process.argv.slice(2);
if (!listen) {
  console.error('usage: k8s-api-server HOST:PORT');
  process.exit(2);
}
const host = listen.slice(0, listen.lastIndexOf(':'));
const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
const server = new TestKubernetesApiServer({ bookmarkIntervalMs: 500 });
await server.listen(port, host);

export type ApiRequest =
  | { op: 'create'; apiVersion: string; kind: string; namespace?: string; body: Record<string, unknown> }
  | {
      op: 'updateStatus';
      apiVersion: string;
      kind: string;
      namespace?: string;
      name: string;
      status: unknown;
    }
  | {
      op: 'patch';
      apiVersion: string;
      kind: string;
      namespace?: string;
      name: string;
      patch: Record<string, unknown>;
    }
  | { op: 'delete'; apiVersion: string; kind: string; namespace?: string; name: string }
  | { op: 'get'; apiVersion: string; kind: string; namespace?: string; name: string }
  | { op: 'list'; apiVersion: string; kind: string; namespace?: string }
  | { op: 'dropWatches' }
  | { op: 'compact' }
  | { op: 'addToken'; token: TestTokenSpec }
  | { op: 'requests' };

function typeOf(r: { apiVersion: string; kind: string }): ResourceType {
  const t = findKind(r.apiVersion, r.kind);
  if (!t) throw new ApiError(404, 'NotFound', `no resource for ${r.apiVersion} ${r.kind}`);
  return t;
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target && typeof target === 'object' && !Array.isArray(target)
      ? { ...(target as Record<string, unknown>) }
      : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function handle(req: ApiRequest): unknown {
  const store = server.store;
  switch (req.op) {
    case 'create':
      return store.create(typeOf(req), req.namespace, req.body as Obj);
    case 'updateStatus': {
      const t = typeOf(req);
      return store.update(
        t,
        req.namespace,
        req.name,
        { metadata: { name: req.name }, status: req.status } as Obj,
        'status',
      );
    }
    case 'patch': {
      const t = typeOf(req);
      const cur = store.get(t, req.namespace, req.name);
      return store.update(t, req.namespace, req.name, mergePatch(cur, req.patch) as Obj);
    }
    case 'delete':
      return store.delete(typeOf(req), req.namespace, req.name);
    case 'get':
      return store.tryGet(typeOf(req), req.namespace, req.name) ?? null;
    case 'list':
      return store.list(
        typeOf(req),
        req.namespace,
        () => true,
        () => true,
      );
    case 'dropWatches':
      return server.dropWatches();
    case 'compact':
      server.compact();
      return store.resourceVersion;
    case 'addToken':
      server.addToken(req.token);
      return null;
    case 'requests':
      return server.requests.slice(-2000);
  }
}

process.on('message', (msg: ApiRequest & { id: number }) => {
  try {
    process.send?.({ id: msg.id, ok: true, result: handle(msg) });
  } catch (err) {
    process.send?.({ id: msg.id, ok: false, error: (err as Error).message });
  }
});
process.send?.({ ready: port });
const stop = async (): Promise<void> => {
  await server.close();
  process.exit(0);
};
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());

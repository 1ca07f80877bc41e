// TEST DOUBLE — the PATCH flavours the API server accepts, by Content-Type:
// - application/merge-patch+json (RFC 7386): objects merge, null deletes, lists replace;
// - application/strategic-merge-patch+json: treated as a merge patch (the real one merges some lists
//   by key; the clients in this repo only patch maps, so the difference is not exercised);
// - application/json-patch+json (RFC 6902): add / remove / replace / test / copy / move;
// - application/apply-patch+yaml (server-side apply): a merge patch that may create the object
//   (field ownership is not tracked).
import { ApiError } from './errors.js';

type Json = unknown;

const isObject = (v: Json): v is Record<string, Json> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, Json> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const unescapeToken = (s: string) => s.replace(/~1/g, '/').replace(/~0/g, '~');

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new ApiError(422, 'Invalid', `json patch: bad path "${path}"`);
  return path.slice(1).split('/').map(unescapeToken);
}

function parentOf(doc: Json, segs: string[], path: string): { parent: Json; key: string } {
  let cur = doc;
  for (const s of segs.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(s)];
    else if (isObject(cur)) cur = cur[s];
    else cur = undefined;
    if (cur === undefined) throw new ApiError(422, 'Invalid', `json patch: path "${path}" does not exist`);
  }
  return { parent: cur, key: segs[segs.length - 1] ?? '' };
}

function getAt(doc: Json, path: string): Json {
  let cur = doc;
  for (const s of pointer(path)) {
    if (Array.isArray(cur)) cur = cur[Number(s)];
    else if (isObject(cur)) cur = cur[s];
    else return undefined;
  }
  return cur;
}

export function jsonPatch(doc: Json, ops: Json): Json {
  if (!Array.isArray(ops))
    throw new ApiError(400, 'BadRequest', 'json patch: body must be a list of operations');
  let out = structuredClone(doc);
  for (const [i, raw] of ops.entries()) {
    if (!isObject(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string')
      throw new ApiError(400, 'BadRequest', `json patch: operation ${i} needs op and path`);
    const { op, path } = raw as { op: string; path: string };
    const segs = pointer(path);
    const put = (value: Json, insert: boolean) => {
      if (segs.length === 0) {
        out = structuredClone(value);
        return;
      }
      const { parent, key } = parentOf(out, segs, path);
      if (Array.isArray(parent)) {
        const idx = key === '-' ? parent.length : Number(key);
        if (insert) parent.splice(idx, 0, structuredClone(value));
        else parent[idx] = structuredClone(value);
      } else if (isObject(parent)) {
        if (!insert && !(key in parent))
          throw new ApiError(422, 'Invalid', `json patch: replace of missing path "${path}"`);
        parent[key] = structuredClone(value);
      } else throw new ApiError(422, 'Invalid', `json patch: path "${path}" does not exist`);
    };
    const remove = (p: string) => {
      const s = pointer(p);
      const { parent, key } = parentOf(out, s, p);
      if (Array.isArray(parent)) parent.splice(Number(key), 1);
      else if (isObject(parent) && key in parent) delete parent[key];
      else throw new ApiError(422, 'Invalid', `json patch: remove of missing path "${p}"`);
    };
    switch (op) {
      case 'add':
        put(raw.value, true);
        break;
      case 'replace':
        put(raw.value, false);
        break;
      case 'remove':
        remove(path);
        break;
      case 'test':
        if (JSON.stringify(getAt(out, path)) !== JSON.stringify(raw.value))
          throw new ApiError(422, 'Invalid', `json patch: test failed at "${path}"`);
        break;
      case 'copy':
      case 'move': {
        const from = String(raw.from ?? '');
        const v = getAt(out, from);
        if (v === undefined) throw new ApiError(422, 'Invalid', `json patch: from "${from}" does not exist`);
        if (op === 'move') remove(from);
        put(v, true);
        break;
      }
      default:
        throw new ApiError(400, 'BadRequest', `json patch: unknown op "${op}"`);
    }
  }
  return out;
}

// TEST DOUBLE — label and field selectors as the real API server parses them
// (k8s.io/apimachinery/pkg/labels and pkg/fields): `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
// `a notin (x)`, `a`, `!a` for labels; `path=value`, `path==value`, `path!=value` for fields.
import { ApiError } from './errors.js';

type LabelReq =
  | { op: 'eq' | 'ne'; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'exists' | 'notexists'; key: string };

export type Selector = (obj: Record<string, unknown>) => boolean;

/** Splits on commas that are not inside parentheses. */
function splitTerms(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of text) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur.trim() !== '') out.push(cur);
  return out.map((s) => s.trim()).filter(Boolean);
}

export function parseLabelSelector(text: string | null): Selector {
  if (!text) return () => true;
  const reqs: LabelReq[] = [];
  for (const term of splitTerms(text)) {
    const set = /^(\S+?)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    const cmp = /^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/.exec(term);
    const not = /^!\s*(\S+)$/.exec(term);
    if (set)
      reqs.push({
        op: set[2] as 'in' | 'notin',
        key: set[1]!,
        values: set[3]!
          .split(',')
          .map((v) => v.trim())
          .filter(Boolean),
      });
    else if (cmp) reqs.push({ op: cmp[2] === '!=' ? 'ne' : 'eq', key: cmp[1]!, value: cmp[3]! });
    else if (not) reqs.push({ op: 'notexists', key: not[1]! });
    else if (/^[A-Za-z0-9./_-]+$/.test(term)) reqs.push({ op: 'exists', key: term });
    else throw new ApiError(400, 'BadRequest', `unable to parse requirement: "${term}"`);
  }
  return (obj) => {
    const labels = ((obj.metadata as Record<string, unknown> | undefined)?.labels ?? {}) as Record<
      string,
      string
    >;
    return reqs.every((r) => {
      const v = Object.hasOwn(labels, r.key) ? labels[r.key] : undefined;
      switch (r.op) {
        case 'eq':
          return v === r.value;
        case 'ne':
          return v !== r.value;
        case 'in':
          return v !== undefined && r.values.includes(v);
        case 'notin':
          return v === undefined || !r.values.includes(v);
        case 'exists':
          return v !== undefined;
        default:
          return v === undefined; // notexists
      }
    });
  };
}

function fieldValue(obj: Record<string, unknown>, path: string): string {
  let v: unknown = obj;
  for (const seg of path.split('.')) {
    if (v === null || typeof v !== 'object') return '';
    v = (v as Record<string, unknown>)[seg];
  }
  if (v === undefined || v === null) return '';
  return typeof v === 'string' ? v : String(v);
}

export function parseFieldSelector(text: string | null): Selector {
  if (!text) return () => true;
  const reqs: { path: string; ne: boolean; value: string }[] = [];
  for (const term of splitTerms(text)) {
    const m = /^([A-Za-z0-9._]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw new ApiError(400, 'BadRequest', `invalid field selector: "${term}"`);
    reqs.push({ path: m[1]!, ne: m[2] === '!=', value: m[3]!.trim() });
  }
  return (obj) => reqs.every((r) => (fieldValue(obj, r.path) === r.value) !== r.ne);
}

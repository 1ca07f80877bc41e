// The request target as policy, routes and the upstream app all see it: Istio's path normalization
// (meshConfig.pathNormalization.normalization; https://istio.io/latest/docs/reference/config/security/normalization/)
// with Envoy's HttpConnectionManager semantics, so that what an AuthorizationPolicy matched is exactly
// what is forwarded (Envoy forwards the normalized path; Istio: "The normalized request will be used for
// both the evaluation of authorization policies and the request that is ultimately sent to the backend").
//
//   NONE                      nothing changes (still refused: NUL / %00, fragments, invalid characters)
//   BASE (default)            Envoy normalize_path: RFC 3986 §6.2.2.2 decoding of percent-encoded
//                             unreserved characters (ALPHA DIGIT - . _ ~), backslash → slash, and
//                             §5.2.4 dot-segment removal (`%2e` counts as a dot: it was decoded first)
//   MERGE_SLASHES             BASE, then Envoy merge_slashes (`//` → `/`)
//   DECODE_AND_MERGE_SLASHES  Envoy path_with_escaped_slashes_action UNESCAPE_AND_FORWARD first (`%2F`
//                             → `/`, `%5C` → `\`), then BASE, then merge_slashes
//
// Decoding happens once (no double decoding: `%252e` stays). The query is never normalized (Istio:
// policies compare the path without the query; the app still gets the query as sent).
// Always 400, whatever the setting: a fragment (Envoy since 1.16.5 rejects `#` in the :path, RFC 3986
// §3.5, RFC 9113 §8.3.1), NUL or `%00` (Istio's normalization table: "always rejected with 400"), a
// byte that is not visible ASCII (RFC 3986 §2; Envoy's codecs refuse them), a `%` not followed by two
// hex digits (RFC 3986 §2.1), and a path that does not start with `/`.

export const PATH_NORMALIZATIONS = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const;
export type PathNormalization = (typeof PATH_NORMALIZATIONS)[number];
/** Istio's default (meshConfig.pathNormalization unset → BASE). */
export const DEFAULT_PATH_NORMALIZATION: PathNormalization = 'BASE';

export type RequestTargetProblem =
  | 'FRAGMENT'
  | 'NUL'
  | 'INVALID_CHARACTER'
  | 'INVALID_PERCENT_ENCODING'
  | 'NOT_ORIGIN_FORM'
  | 'BAD_ABSOLUTE_FORM';

export class RequestTargetError extends Error {
  readonly code = 'BAD_REQUEST_TARGET';
  constructor(
    readonly problem: RequestTargetProblem,
    message: string,
  ) {
    super(message);
    this.name = 'RequestTargetError';
  }
}

export function isPathNormalization(v: string): v is PathNormalization {
  return (PATH_NORMALIZATIONS as readonly string[]).includes(v);
}

const hexValue = (c: number): number =>
  c >= 0x30 && c <= 0x39
    ? c - 0x30
    : c >= 0x41 && c <= 0x46
      ? c - 0x37
      : c >= 0x61 && c <= 0x66
        ? c - 0x57
        : -1;

/** RFC 3986 §2.3 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
const isUnreserved = (c: number): boolean =>
  (c >= 0x41 && c <= 0x5a) ||
  (c >= 0x61 && c <= 0x7a) ||
  (c >= 0x30 && c <= 0x39) ||
  c === 0x2d ||
  c === 0x2e ||
  c === 0x5f ||
  c === 0x7e;

/** Refuses what no setting lets through (see the top of this file); `part` names it in the error. */
function checkCharacters(s: string, part: 'path' | 'query'): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x23) throw new RequestTargetError('FRAGMENT', `${part} has a fragment ('#')`);
    if (c === 0) throw new RequestTargetError('NUL', `${part} has a NUL byte`);
    if (c < 0x21 || c > 0x7e)
      throw new RequestTargetError('INVALID_CHARACTER', `${part} has an invalid character (code ${c})`);
    if (c === 0x25) {
      const hi = hexValue(s.charCodeAt(i + 1));
      const lo = hexValue(s.charCodeAt(i + 2));
      if (hi < 0 || lo < 0)
        throw new RequestTargetError('INVALID_PERCENT_ENCODING', `${part} has '%' without two hex digits`);
      if (part === 'path' && hi === 0 && lo === 0)
        throw new RequestTargetError('NUL', 'path has a percent-encoded NUL (%00)');
      i += 2;
    }
  }
}

// The common case, a path with nothing to normalize: no '%', no '\', no dot segment, no '//'.
const PLAIN_PATH = /^(?:\/(?![/.])|[^/%\\.]|\.(?!\.?(?:\/|$)))*$/;
const DOT_FREE = /^(?:[^/]|\/(?!\.))*$/;

/** Decodes `%HH` once: unreserved characters always, `/` and `\` too when `slashes` is set. */
function decodePercent(path: string, slashes: boolean): string {
  if (!path.includes('%')) return path;
  let out = '';
  let from = 0;
  for (let i = path.indexOf('%'); i >= 0; i = path.indexOf('%', i + 1)) {
    const v = hexValue(path.charCodeAt(i + 1)) * 16 + hexValue(path.charCodeAt(i + 2));
    if (isUnreserved(v) || (slashes && (v === 0x2f || v === 0x5c))) {
      out += path.slice(from, i) + String.fromCharCode(v);
      from = i + 3;
    }
    i += 2;
  }
  return out + path.slice(from);
}

/** RFC 3986 §5.2.4 remove_dot_segments, over whole segments of an absolute path. */
export function removeDotSegments(path: string): string {
  if (DOT_FREE.test(path)) return path;
  const segments = path.split('/');
  const out: string[] = [];
  // segments[0] is '' (the path starts with '/'); the last one decides whether a trailing '/' remains.
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else out.push(s);
  }
  return `/${out.join('/')}`;
}

/** Normalizes an origin-form path (no query) under `mode`; throws RequestTargetError for a 400. */
export function normalizePath(path: string, mode: PathNormalization): string {
  checkCharacters(path, 'path');
  if (path.charCodeAt(0) !== 0x2f && !(mode !== 'NONE' && path.charCodeAt(0) === 0x5c))
    throw new RequestTargetError('NOT_ORIGIN_FORM', 'path does not start with "/"');
  if (mode === 'NONE' || PLAIN_PATH.test(path)) return path;
  let p = decodePercent(path, mode === 'DECODE_AND_MERGE_SLASHES');
  if (p.includes('\\')) p = p.replaceAll('\\', '/');
  p = removeDotSegments(p);
  if (mode !== 'BASE' && p.includes('//')) p = p.replace(/\/{2,}/g, '/');
  return p;
}

export interface RequestTarget {
  /** The normalized path with the query as sent: what policy and routes match and the app receives. */
  path: string;
  /** The authority of an absolute-form target (RFC 9112 §3.2.2: it replaces Host). */
  authority?: string;
}

const ABSOLUTE_FORM = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;

/**
 * A request target (HTTP/1.1 request-target or HTTP/2 :path) → what is matched and forwarded.
 * Absolute-form (`http://host/p`, RFC 9112 §3.2.2) yields its authority, which replaces Host as Envoy
 * does; asterisk-form (`*`) is only for OPTIONS (RFC 9112 §3.2.4).
 */
export function parseRequestTarget(target: string, mode: PathNormalization, method: string): RequestTarget {
  if (target === '*' && method === 'OPTIONS') return { path: '*' };
  let authority: string | undefined;
  let rest = target;
  if (target.charCodeAt(0) !== 0x2f) {
    const m = ABSOLUTE_FORM.exec(target);
    if (!m)
      throw new RequestTargetError('NOT_ORIGIN_FORM', 'request target is neither origin- nor absolute-form');
    const scheme = m[1]!.toLowerCase();
    authority = m[2]!;
    if ((scheme !== 'http' && scheme !== 'https') || authority === '' || authority.includes('@'))
      throw new RequestTargetError(
        'BAD_ABSOLUTE_FORM',
        'absolute-form target needs an http(s) scheme and an authority without userinfo',
      );
    rest = m[3]! === '' || m[3]!.startsWith('?') ? `/${m[3]!}` : m[3]!;
  }
  const q = rest.indexOf('?');
  const pathOnly = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q);
  if (query) checkCharacters(query.slice(1), 'query');
  const path = normalizePath(pathOnly, mode) + query;
  return authority === undefined ? { path } : { path, authority };
}

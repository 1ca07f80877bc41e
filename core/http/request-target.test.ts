// The path normalizer against Istio's published normalization table
// (https://istio.io/latest/docs/reference/config/security/normalization/) and, as properties (fast-check):
// it is idempotent, dot-segment removal agrees with the WHATWG URL parser, and no encoding of a denied
// path comes out as anything but the denied path.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  PATH_NORMALIZATIONS,
  type PathNormalization,
  RequestTargetError,
  normalizePath,
  parseRequestTarget,
  removeDotSegments,
} from './request-target.js';

const n = (p: string, m: PathNormalization = 'BASE') => normalizePath(p, m);
const problem = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (err) {
    return err instanceof RequestTargetError ? err.problem : String(err);
  }
};

describe('normalizePath: Istio normalization table', () => {
  it('BASE decodes %HH of unreserved characters once (%2d %2e %30-%39 %41-%5a %5f %61-%7a %7e)', () => {
    expect(n('/%61%62%63/%41%5A%30%39%2d%5f%7E')).toBe('/abc/AZ09-_~');
    expect(n('/a/%2e%2E/b')).toBe('/b');
    // no double decoding: %25 is not unreserved, so %252e stays
    expect(n('/a/%252e%252e/b')).toBe('/a/%252e%252e/b');
    // reserved characters stay encoded under BASE
    expect(n('/some%2fdata/%61%62%63')).toBe('/some%2fdata/abc');
  });

  it('BASE turns backslashes into slashes and resolves dot segments (RFC 3986 §5.2.4)', () => {
    expect(n('/some\\data')).toBe('/some/data');
    expect(n('\\da')).toBe('/da');
    expect(n('/public/./data/abc/../xyz')).toBe('/public/data/xyz');
    expect(n('/a/../b')).toBe('/b');
    expect(n('/../../etc')).toBe('/etc');
    expect(n('/a/b/.')).toBe('/a/b/');
    // BASE keeps double slashes
    expect(n('/some//data')).toBe('/some//data');
  });

  it('MERGE_SLASHES merges slashes after BASE', () => {
    expect(n('/some//data///abc', 'MERGE_SLASHES')).toBe('/some/data/abc');
    expect(n('/a//../b', 'MERGE_SLASHES')).toBe('/a/b');
    expect(n('/some%2fdata', 'MERGE_SLASHES')).toBe('/some%2fdata');
  });

  it('DECODE_AND_MERGE_SLASHES decodes %2F and %5C first', () => {
    expect(n('/some%2fdata/%61%62%63', 'DECODE_AND_MERGE_SLASHES')).toBe('/some/data/abc');
    expect(n('/a%2F%2Fb', 'DECODE_AND_MERGE_SLASHES')).toBe('/a/b');
    expect(n('/admin%5c..%5Cx', 'DECODE_AND_MERGE_SLASHES')).toBe('/x');
  });

  it('NONE leaves the path as sent', () => {
    expect(n('/a/../b//%61', 'NONE')).toBe('/a/../b//%61');
  });

  it('every setting refuses %00, NUL, fragments, controls, non-ASCII and broken escapes (400)', () => {
    for (const m of PATH_NORMALIZATIONS) {
      expect(problem(() => n('/a%00b', m))).toBe('NUL');
      expect(problem(() => n('/a\0b', m))).toBe('NUL');
      expect(problem(() => n('/a#frag', m))).toBe('FRAGMENT');
      expect(problem(() => n('/a b', m))).toBe('INVALID_CHARACTER');
      expect(problem(() => n('/a\tb', m))).toBe('INVALID_CHARACTER');
      expect(problem(() => n('/é', m))).toBe('INVALID_CHARACTER');
      expect(problem(() => n('/a%zz', m))).toBe('INVALID_PERCENT_ENCODING');
      expect(problem(() => n('/a%4', m))).toBe('INVALID_PERCENT_ENCODING');
      expect(problem(() => n('a/b', m))).toBe('NOT_ORIGIN_FORM');
    }
  });
});

describe('parseRequestTarget', () => {
  it('keeps the query as sent and normalizes only the path', () => {
    expect(parseRequestTarget('/a/./%62?x=/../%61', 'BASE', 'GET')).toEqual({ path: '/a/b?x=/../%61' });
    expect(problem(() => parseRequestTarget('/a?x#y', 'BASE', 'GET'))).toBe('FRAGMENT');
  });

  it('absolute-form: the authority comes from the URI (RFC 9112 §3.2.2)', () => {
    expect(parseRequestTarget('http://users.demo:80/admin/../x?q', 'BASE', 'GET')).toEqual({
      path: '/x?q',
      authority: 'users.demo:80',
    });
    expect(parseRequestTarget('HTTP://h', 'BASE', 'GET')).toEqual({ path: '/', authority: 'h' });
    expect(problem(() => parseRequestTarget('http://u@h/', 'BASE', 'GET'))).toBe('BAD_ABSOLUTE_FORM');
    expect(problem(() => parseRequestTarget('ftp://h/', 'BASE', 'GET'))).toBe('BAD_ABSOLUTE_FORM');
    expect(problem(() => parseRequestTarget('http:///x', 'BASE', 'GET'))).toBe('BAD_ABSOLUTE_FORM');
  });

  it('asterisk-form only for OPTIONS', () => {
    expect(parseRequestTarget('*', 'BASE', 'OPTIONS')).toEqual({ path: '*' });
    expect(problem(() => parseRequestTarget('*', 'BASE', 'GET'))).toBe('NOT_ORIGIN_FORM');
  });
});

// Paths made of characters that matter to normalization, escapes included.
const pathChar = fc.constantFrom(
  'a',
  'b',
  'Z',
  '0',
  '-',
  '_',
  '~',
  '.',
  '/',
  '\\',
  '%2e',
  '%2E',
  '%2f',
  '%2F',
  '%5c',
  '%5C',
  '%61',
  '%41',
  '%25',
  '%3f',
  ';',
  ':',
  '@',
);
const rawPath = fc.array(pathChar, { maxLength: 24 }).map((cs) => `/${cs.join('')}`);

describe('normalizer properties (fast-check)', () => {
  it('is idempotent under every setting', () => {
    fc.assert(
      fc.property(rawPath, fc.constantFrom(...PATH_NORMALIZATIONS), (p, m) => {
        const once = normalizePath(p, m);
        expect(normalizePath(once, m)).toBe(once);
      }),
      { numRuns: 3000 },
    );
  });

  it('dot-segment removal agrees with the WHATWG URL parser on plain segments', () => {
    const plain = fc
      .array(fc.constantFrom('a', 'b', '.', '..', ''), { maxLength: 10 })
      .map((s) => `/${s.join('/')}`);
    fc.assert(
      fc.property(plain, (p) => {
        expect(removeDotSegments(p)).toBe(new URL(`http://h${p}`).pathname);
      }),
      { numRuns: 2000 },
    );
  });

  // One way to write each character of a path: itself, its %HH (either case), and for '/' a backslash
  // (BASE on) or %2F/%5C (decode setting); plus detours: `x/../`, `./`, doubled slashes.
  const encodingOf = (denied: string, m: PathNormalization) => {
    const char = (c: string) => {
      const hex = c.charCodeAt(0).toString(16).padStart(2, '0');
      const forms = [c];
      if (c === '/') {
        forms.push('\\');
        if (m === 'DECODE_AND_MERGE_SLASHES') forms.push('%2F', '%2f', '%5C', '%5c');
        if (m !== 'BASE') forms.push('//');
        forms.push('/./', '/zz/../');
      } else forms.push(`%${hex.toUpperCase()}`, `%${hex}`);
      return fc.constantFrom(...forms);
    };
    return fc.tuple(...[...denied].map(char)).map((parts) => parts.join(''));
  };

  it('no encoding of a denied path normalizes to anything else: it is the denied path, or refused (400)', () => {
    const denied = ['/admin', '/admin/secret', '/api/v1/users/delete'];
    for (const m of ['BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const) {
      for (const d of denied) {
        fc.assert(
          fc.property(encodingOf(d, m), (encoded) => {
            // A leading %2F is not origin-form: refused, so it is not forwarded either.
            const r = problem(() => expect(normalizePath(encoded, m)).toBe(d));
            expect([undefined, 'NOT_ORIGIN_FORM']).toContain(r);
            if (r) expect(encoded[0]).toBe('%');
          }),
          { numRuns: 500 },
        );
      }
    }
  });
});

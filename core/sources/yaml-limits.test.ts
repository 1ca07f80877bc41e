// The YAML/JSON limits (CVE-2019-11253 alias bombs, file and document size) as the manifest reader
// applies them: the bad document or file is named with its reason, the rest still parses.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { aliasBomb } from '../../test/adversarial-client.js';
import { parseManifestText } from './manifests.js';
import {
  MAX_FILE_BYTES,
  YamlLimitError,
  mayUseAliases,
  readLimitedFile,
  readLimitedFileSync,
} from './yaml-limits.js';

const policy = (name: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: demo }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin"] } }] }]
`;

describe('YAML limits', () => {
  it('an alias bomb is refused with its file, document and reason; the other documents still apply', () => {
    const text = `${policy('first')}---\n${aliasBomb()}---\n${policy('third')}`;
    expect(text.length).toBeLessThan(1000);
    const started = performance.now();
    const r = parseManifestText('/m/bomb.yaml', text);
    expect(performance.now() - started).toBeLessThan(5000); // bounded, not a latency target
    expect([...r.good.keys()].sort()).toEqual([
      'AuthorizationPolicy/demo/first',
      'AuthorizationPolicy/demo/third',
    ]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]?.message).toMatch(/^\/m\/bomb\.yaml: document 2: .*alias/);
  });

  it('an alias bomb next to a syntax error (the precise parser) is an error, not an exception that stops the reader', () => {
    const r = parseManifestText('/m/both.yaml', `${aliasBomb()}---\nkey: [unclosed\n---\n${policy('ok')}`);
    expect(r.errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/^\/m\/both\.yaml: document 1: .*alias/),
      expect.stringMatching(/^\/m\/both\.yaml: document 2: line \d+, column \d+: invalid YAML/),
    ]);
    expect([...r.good.keys()]).toEqual(['AuthorizationPolicy/demo/ok']);
  });

  it('a few legitimate aliases still work', () => {
    const text = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: with-alias, namespace: demo }
spec:
  action: DENY
  rules:
    - to: &admin [{ operation: { paths: ["/admin"] } }]
    - to: *admin
`;
    expect(mayUseAliases(text)).toBe(true);
    const r = parseManifestText('/m/ok.yaml', text);
    expect(r.errors).toEqual([]);
    expect(r.good.size).toBe(1);
  });

  it('anchor detection: plain manifests keep the fast parser', () => {
    expect(mayUseAliases(policy('x'))).toBe(false);
    expect(mayUseAliases('a: "R&D"\n')).toBe(false);
    // a false positive only costs the slower parser
    expect(mayUseAliases('a: "x && y"\n')).toBe(true);
    expect(mayUseAliases('a: &x 1\nb: *x\n')).toBe(true);
    expect(mayUseAliases('[&x 1, *x]')).toBe(true);
  });

  it('a file over the limit is not read, and the error names it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-yaml-limit-'));
    try {
      const big = join(dir, 'big.yaml');
      writeFileSync(big, Buffer.alloc(MAX_FILE_BYTES + 1, 0x23)); // '#' comments
      await expect(readLimitedFile(big)).rejects.toBeInstanceOf(YamlLimitError);
      await expect(readLimitedFile(big)).rejects.toThrow(
        /big\.yaml: file is 8 MiB, over the 8 MiB limit; not read/,
      );
      expect(() => readLimitedFileSync(big)).toThrow(YamlLimitError);
      writeFileSync(join(dir, 'small.yaml'), 'a: 1\n');
      expect(await readLimitedFile(join(dir, 'small.yaml'))).toBe('a: 1\n');
      expect(readLimitedFileSync(join(dir, 'small.yaml'))).toBe('a: 1\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

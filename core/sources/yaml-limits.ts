// Limits every YAML/JSON reader in the project applies, so a hostile or broken file costs a bounded amount
// of memory and time and is named in the error, while everything else keeps being read:
//  - files over MAX_FILE_BYTES are not read at all (a 50 MB file costs one stat);
//  - documents over MAX_DOCUMENT_BYTES are refused (kube-apiserver's request body limit is 3 MiB);
//  - YAML aliases are expanded at most MAX_ALIASES times per document (`yaml`'s maxAliasCount), the
//    protection kube-apiserver added for the "billion laughs" alias bomb (CVE-2019-11253).
import { open } from 'node:fs/promises';
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';

export const MAX_FILE_BYTES = 8 * 1024 * 1024;
export const MAX_DOCUMENT_BYTES = 3 * 1024 * 1024;
export const MAX_ALIASES = 100;

export class YamlLimitError extends Error {
  readonly code = 'YAML_LIMIT';
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
    this.name = 'YamlLimitError';
  }
}

const mib = (n: number): string => `${Math.round((n / 1024 / 1024) * 10) / 10} MiB`;
const overFile = (file: string, size: number): YamlLimitError =>
  new YamlLimitError(file, `file is ${mib(size)}, over the ${mib(MAX_FILE_BYTES)} limit; not read`);

/** Reads a text file of at most `limit` bytes (never more than limit + 1 bytes are read). */
export async function readLimitedFile(path: string, display = path, limit = MAX_FILE_BYTES): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    if (size > limit) throw overFile(display, size);
    const buf = Buffer.alloc(Math.min(size, limit) + 1);
    let n = 0;
    for (;;) {
      const r = await fh.read(buf, n, buf.length - n, n);
      if (r.bytesRead === 0) break;
      n += r.bytesRead;
      // Grew while we read: refuse rather than read an unbounded amount.
      if (n > limit) throw overFile(display, n);
      if (n === buf.length) break;
    }
    return buf.toString('utf8', 0, n);
  } finally {
    await fh.close();
  }
}

/** readLimitedFile for the synchronous callers (the CLI). */
export function readLimitedFileSync(path: string, display = path, limit = MAX_FILE_BYTES): string {
  const fd = openSync(path, 'r');
  try {
    const { size } = fstatSync(fd);
    if (size > limit) throw overFile(display, size);
    const buf = Buffer.alloc(size + 1);
    let n = 0;
    for (
      let r = readSync(fd, buf, n, buf.length - n, n);
      r > 0;
      r = readSync(fd, buf, n, buf.length - n, n)
    ) {
      n += r;
      if (n > limit) throw overFile(display, n);
      if (n === buf.length) break;
    }
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

// An anchor (`&name`) can only start a node: after a line start, whitespace or a flow indicator. Text with
// none cannot alias anything, so the fast parser may take it; anything else (false positives included,
// e.g. `&` inside a quoted string) goes to `yaml`, which counts alias expansion.
const ANCHOR = /(?:^|[\s[\]{},])&[^\s[\]{},]/m;

/** Whether `text` may use YAML anchors/aliases. */
export const mayUseAliases = (text: string): boolean => text.includes('&') && ANCHOR.test(text);

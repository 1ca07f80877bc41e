// The manifest-directory source (the embedded default and the demo): every *.yaml / *.yml under a
// directory, multi-document, validated and handed to the one Translator; watched and applied per file.
//
// Last-good rule (docs/architecture.md §2): a bad document never takes down what it replaces.
// - A document that fails validation but still says which object it is (kind + name) keeps that
//   object's last good version serving; the error is listed.
// - A document that cannot even be identified (YAML syntax error) keeps every object the file had
//   before that the new version does not define validly, since we cannot tell which one it was.
// - Good documents in the same file apply either way. An object dropped from a file whose documents
//   all parsed, or a deleted file, removes its objects.
// - The same object defined in two files: the first file loaded owns it, the other gets an error.
// - Limits (yaml-limits.ts): a file over the size limit is not read, a document over its limit or with
//   more alias expansion than allowed is refused; either is an error naming the file (and document), the
//   file's last good objects keep serving, and every other file still applies.
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import jsyaml from 'js-yaml';
import type * as Yaml from 'yaml';
import type { MeshState } from '../state/state.js';
import type { StateSource } from './source.js';
import {
  formatLocation,
  InvalidObjectError,
  type MeshKind,
  type MeshObject,
  type ObjectLocation,
  validateObject,
} from './schema.js';
import { type TranslationNote, Translator, type TranslatorOptions } from './translate.js';
import {
  MAX_ALIASES,
  MAX_DOCUMENT_BYTES,
  YamlLimitError,
  mayUseAliases,
  readLimitedFile,
} from './yaml-limits.js';

export type { StateSource } from './source.js';

export interface ManifestSourceOptions {
  /** Share a translator (and so a MeshState) with others; else one is made from `translator`. */
  translator?: Translator;
  translatorOptions?: TranslatorOptions;
  /** Watch for changes after start(). Default true. */
  watch?: boolean;
  /** Quiet period after the last file event before re-reading. Default 100 ms. */
  debounceMs?: number;
  /** Longest a burst of events can postpone a re-read. Default 1000 ms. */
  maxWaitMs?: number;
  logger?: Logger;
}

export class ManifestDirectoryError extends Error {
  readonly code = 'MANIFEST_DIRECTORY';
  constructor(
    readonly dir: string,
    reason: string,
  ) {
    super(`manifest directory ${JSON.stringify(dir)}: ${reason}`);
    this.name = 'ManifestDirectoryError';
  }
}

interface GoodObject {
  object: MeshObject;
  json: string;
  document: number;
}

interface FileState {
  fingerprint: string;
  hash: string;
  good: Map<string, GoodObject>;
  errors: InvalidObjectError[];
  warnings: string[];
}

const YAML_EXT = /\.ya?ml$/i;
const MAX_FILES = 100_000;

const keyOf = (o: MeshObject): string => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const splitKey = (k: string): { kind: MeshKind; namespace: string; name: string } => {
  const [kind, namespace = '', ...rest] = k.split('/');
  return { kind: kind as MeshKind, namespace, name: rest.join('/') };
};

export class ManifestSource implements StateSource {
  readonly translator: Translator;
  readonly dir: string;
  readonly #files = new Map<string, FileState>();
  readonly #owner = new Map<string, string>();
  readonly #log: Logger;
  readonly #watch: boolean;
  readonly #debounceMs: number;
  readonly #maxWaitMs: number;
  readonly #watchers = new Map<string, FSWatcher>();
  readonly #changedNames = new Set<string>();
  readonly #emptyOnce = new Set<string>();
  readonly #syncListeners = new Set<(files: string[]) => void>();
  #timer: NodeJS.Timeout | undefined;
  #firstEventAt = 0;
  #running: Promise<void> | undefined;
  #rerun = false;
  #stopped = false;

  constructor(dir: string, opts: ManifestSourceOptions = {}) {
    this.dir = dir;
    this.translator = opts.translator ?? new Translator(opts.translatorOptions);
    this.#log = opts.logger ?? pino({ name: 'ambit-manifests' }, pino.destination(2));
    this.#watch = opts.watch ?? true;
    this.#debounceMs = opts.debounceMs ?? 100;
    this.#maxWaitMs = opts.maxWaitMs ?? 1000;
  }

  get state(): MeshState {
    return this.translator.state;
  }

  async start(): Promise<void> {
    const st = await stat(this.dir).catch(() => undefined);
    if (!st) throw new ManifestDirectoryError(this.dir, 'does not exist');
    if (!st.isDirectory()) throw new ManifestDirectoryError(this.dir, 'is not a directory');
    this.#stopped = false;
    await this.sync();
    if (this.#watch) await this.#watchDirs();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#watchers.values()) w.close();
    this.#watchers.clear();
    await this.#running;
  }

  errors(): InvalidObjectError[] {
    return [...this.#files.keys()].sort().flatMap((f) => this.#files.get(f)!.errors);
  }

  warnings(): string[] {
    const fromFiles = [...this.#files.keys()].sort().flatMap((f) => this.#files.get(f)!.warnings);
    // The policy compiler also flags spiffe:// principals; the file-level warning already says it with
    // the file and document, so the compiler's copy is not repeated.
    const saidWithFile = (n: TranslationNote) =>
      n.message.includes('"spiffe://') &&
      fromFiles.some((w) => w.includes(` ${n.object.split('/').slice(1).join('/')}: `));
    return [
      ...fromFiles,
      ...this.translator
        .notes()
        .filter((n) => !saidWithFile(n))
        .map((n) => `${n.object}: ${n.message}`),
    ];
  }

  /** Called after every re-read with the files that changed (tests and status use it). */
  onSync(listener: (files: string[]) => void): () => void {
    this.#syncListeners.add(listener);
    return () => this.#syncListeners.delete(listener);
  }

  /** Re-reads the directory now (files whose stat or name says they changed), applying what changed. */
  sync(): Promise<void> {
    if (this.#running) {
      this.#rerun = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#rerun = false;
          await this.#syncOnce();
        } while (this.#rerun && !this.#stopped);
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  async #syncOnce(): Promise<void> {
    const named = new Set(this.#changedNames);
    this.#changedNames.clear();
    const found = await this.#listFiles();
    const updates: {
      file: string;
      text: string | undefined;
      fingerprint: string;
      refused?: InvalidObjectError;
    }[] = [];
    for (const [file, fingerprint] of found) {
      const prev = this.#files.get(file);
      if (prev && prev.fingerprint === fingerprint && !named.has(file)) continue;
      const display = join(this.dir, file);
      let refused: InvalidObjectError | undefined;
      const text = await readLimitedFile(display).catch((err: unknown) => {
        if (err instanceof YamlLimitError)
          refused = new InvalidObjectError(
            { file: display },
            '',
            `${err.reason} (the last good version keeps serving)`,
          );
        return undefined;
      });
      if (refused) {
        updates.push({ file, text: '', fingerprint, refused });
        continue;
      }
      if (text === undefined) continue; // vanished between listing and reading: the next event says so
      // A writer that truncates then writes (no atomic rename) can be caught in between. A file that
      // suddenly reads empty is re-read once after the quiet period before its objects are removed.
      if (this.#watch && text.trim() === '' && (prev?.good.size ?? 0) > 0 && !this.#emptyOnce.has(file)) {
        this.#emptyOnce.add(file);
        this.#schedule();
        continue;
      }
      this.#emptyOnce.delete(file);
      updates.push({ file, text, fingerprint });
    }
    for (const file of this.#files.keys())
      if (!found.has(file)) updates.push({ file, text: undefined, fingerprint: '' });
    const changed: string[] = [];
    this.translator.batch(() => {
      for (const u of updates)
        if (this.#applyFile(u.file, u.text, u.fingerprint, u.refused)) changed.push(u.file);
    });
    if (changed.length > 0) {
      this.#log.info({ dir: this.dir, files: changed, objects: this.#owner.size }, 'manifests applied');
      for (const l of this.#syncListeners) l(changed);
    }
  }

  async #listFiles(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const walk = async (rel: string): Promise<void> => {
      const entries = await readdir(join(this.dir, rel), { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        // Dot entries: editor swap files and the ..data symlinks of ConfigMap volumes.
        if (e.name.startsWith('.') || out.size >= MAX_FILES) continue;
        const relPath = rel ? join(rel, e.name) : e.name;
        const st = await stat(join(this.dir, relPath)).catch(() => undefined);
        if (!st) continue;
        if (st.isDirectory()) await walk(relPath);
        else if (st.isFile() && YAML_EXT.test(e.name)) out.set(relPath, `${st.ino}:${st.size}:${st.mtimeMs}`);
      }
    };
    await walk('');
    return out;
  }

  /** Applies one file's new content (undefined = deleted). Returns whether anything about it changed. */
  #applyFile(
    file: string,
    text: string | undefined,
    fingerprint: string,
    refused?: InvalidObjectError,
  ): boolean {
    const prev = this.#files.get(file);
    const hash = refused
      ? `refused:${fingerprint}`
      : text === undefined
        ? ''
        : createHash('sha256').update(text).digest('hex');
    if (prev && text !== undefined && prev.hash === hash) {
      prev.fingerprint = fingerprint;
      return false;
    }
    const display = join(this.dir, file);
    const parsed = refused
      ? { ...emptyParse(), errors: [refused], unidentified: true }
      : text === undefined
        ? emptyParse()
        : parseManifestText(display, text);
    const oldGood = prev?.good ?? new Map<string, GoodObject>();
    const good = new Map(parsed.good);
    const errors = [...parsed.errors];
    // Last-good rule (see the top of this file).
    for (const [k, v] of oldGood) {
      if (good.has(k)) continue;
      if (parsed.badKeys.has(k) || parsed.unidentified) good.set(k, v);
    }
    for (let i = 0; i < errors.length; i++) {
      const e = errors[i]!;
      const k =
        e.location.kind && e.location.name
          ? `${e.location.kind}/${e.location.namespace ?? ''}/${e.location.name}`
          : undefined;
      if (k && oldGood.has(k))
        errors[i] = new InvalidObjectError(
          e.location,
          e.field,
          `${e.problem} (the last good version keeps serving)`,
        );
    }
    // Apply adds/changes this file owns.
    for (const [k, v] of good) {
      const owner = this.#owner.get(k);
      if (owner !== undefined && owner !== file) {
        errors.push(
          new InvalidObjectError(
            {
              file: display,
              document: v.document,
              kind: v.object.kind,
              namespace: v.object.metadata.namespace,
              name: v.object.metadata.name,
            },
            'metadata.name',
            `already defined in ${owner}; ignored`,
          ),
        );
        continue;
      }
      if (owner === undefined || oldGood.get(k)?.json !== v.json) {
        this.#owner.set(k, file);
        this.translator.apply(v.object);
      }
    }
    // Removals: objects this file owned and no longer defines; another file's copy takes over.
    for (const k of oldGood.keys()) {
      if (good.has(k) || this.#owner.get(k) !== file) continue;
      this.#owner.delete(k);
      const heir = [...this.#files.entries()].find(([f, s]) => f !== file && s.good.has(k));
      if (heir) {
        this.#owner.set(k, heir[0]);
        this.translator.apply(heir[1].good.get(k)!.object);
        heir[1].errors = heir[1].errors.filter(
          (e) => !(e.field === 'metadata.name' && e.problem.startsWith('already defined')),
        );
      } else {
        const { kind, namespace, name } = splitKey(k);
        this.translator.remove(kind, namespace, name);
      }
    }
    for (const e of errors) this.#log.error({ file: display, field: e.field }, e.message);
    if (text === undefined) this.#files.delete(file);
    else this.#files.set(file, { fingerprint, hash, good, errors, warnings: parsed.warnings });
    return true;
  }

  async #watchDirs(): Promise<void> {
    const dirs = [''];
    for (let i = 0; i < dirs.length && i < 10_000; i++) {
      const entries = await readdir(join(this.dir, dirs[i]!), { withFileTypes: true }).catch(() => []);
      for (const e of entries)
        if (e.isDirectory() && !e.name.startsWith('.')) dirs.push(join(dirs[i]!, e.name));
    }
    for (const rel of dirs) {
      if (this.#watchers.has(rel)) continue;
      try {
        const w = watch(join(this.dir, rel), { persistent: false }, (_event, name) => {
          if (name) this.#changedNames.add(rel ? join(rel, name.toString()) : name.toString());
          this.#schedule();
        });
        w.on('error', (err) => this.#log.warn({ dir: rel, err }, 'manifest watch error'));
        this.#watchers.set(rel, w);
      } catch (err) {
        this.#log.warn({ dir: rel, err }, 'cannot watch manifest directory');
      }
    }
  }

  /** Debounced, with a ceiling: a steady stream of events still re-reads at least every maxWaitMs. */
  #schedule(): void {
    if (this.#stopped) return;
    const now = Date.now();
    if (!this.#timer) this.#firstEventAt = now;
    if (this.#timer) clearTimeout(this.#timer);
    const wait = Math.max(0, Math.min(this.#debounceMs, this.#firstEventAt + this.#maxWaitMs - now));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#stopped) return;
      this.sync()
        .then(() => this.#watchDirs())
        .catch((err: unknown) => this.#log.error({ err }, 'manifest sync failed'));
    }, wait);
    this.#timer.unref();
  }
}

export interface ParsedManifests {
  good: Map<string, GoodObject>;
  errors: InvalidObjectError[];
  warnings: string[];
  /** Keys of objects whose document was identified but invalid. */
  badKeys: Set<string>;
  /** Some document could not be identified (syntax error, no kind/name). */
  unidentified: boolean;
}

function emptyParse(): ParsedManifests {
  return { good: new Map(), errors: [], warnings: [], badKeys: new Set(), unidentified: false };
}

/**
 * `yaml`, loaded on the first syntax error only: a ztunnel whose manifests parse never needs it, and
 * loading it costs ~2 MiB of idle RSS (73 modules). Loaded synchronously (its CommonJS build) so that
 * parsing stays synchronous for its callers.
 */
let yaml: typeof Yaml | undefined;
function yamlParser(): typeof Yaml {
  yaml ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yaml;
}

/**
 * Splits a file into documents. Fast path: js-yaml (about 10x faster than `yaml` on 10,000 documents,
 * which the load budget needs), with the YAML 1.2 core schema like `yaml`'s default (no timestamps, no
 * merge keys). If the file has a syntax error anywhere, `yaml` re-parses it per document so that the
 * good documents still apply and the bad one is reported with its line and column.
 */
function splitDocuments(
  file: string,
  text: string,
): { docs: unknown[]; errors: Map<number, InvalidObjectError> } {
  const errors = new Map<number, InvalidObjectError>();
  // js-yaml has no alias limit: text that may use aliases goes to `yaml`, which counts them.
  if (!mayUseAliases(text)) {
    try {
      return {
        docs: jsyaml.loadAll(text, undefined, { schema: jsyaml.CORE_SCHEMA, filename: file }),
        errors,
      };
    } catch {
      // fall through to the slow, precise parser
    }
  }
  const docs: unknown[] = [];
  for (const doc of yamlParser().parseAllDocuments(text)) {
    const document = docs.length + 1;
    const size = (doc.range?.[2] ?? 0) - (doc.range?.[0] ?? 0);
    if (size > MAX_DOCUMENT_BYTES) {
      errors.set(
        document,
        new InvalidObjectError(
          { file, document },
          '',
          `document is ${size} bytes, over the ${MAX_DOCUMENT_BYTES} limit`,
        ),
      );
      docs.push(undefined);
      continue;
    }
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const pos = e.linePos?.[0];
      const where = pos ? `line ${pos.line}, column ${pos.col}` : 'YAML';
      const what = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      errors.set(document, new InvalidObjectError({ file, document }, where, `invalid YAML: ${what}`));
      docs.push(undefined);
      continue;
    }
    try {
      docs.push(doc.toJS({ maxAliasCount: MAX_ALIASES }));
    } catch (err) {
      // `yaml`: "Excessive alias count indicates a resource exhaustion attack"
      errors.set(
        document,
        new InvalidObjectError(
          { file, document },
          '',
          `refused: ${(err as Error).message} (more than ${MAX_ALIASES} alias expansions)`,
        ),
      );
      docs.push(undefined);
    }
  }
  return { docs, errors };
}

/** Parses and validates one file's text; `file` is how errors name it. */
export function parseManifestText(file: string, text: string): ParsedManifests {
  const out = emptyParse();
  const { docs, errors } = splitDocuments(file, text);
  for (let i = 0; i < docs.length; i++) {
    const document = i + 1;
    const syntax = errors.get(document);
    if (syntax) {
      out.errors.push(syntax);
      out.unidentified = true;
      continue;
    }
    const raw = docs[i];
    if (raw === null || raw === undefined) continue; // empty document (a trailing `---`)
    // `kubectl get ... -o yaml` writes one `kind: List` document holding the objects in `items`.
    const list = raw as { kind?: unknown; items?: unknown };
    if (list.kind === 'List' && Array.isArray(list.items)) {
      for (const [index, item] of list.items.entries()) addObject(out, item, { file, document, item: index });
    } else addObject(out, raw, { file, document });
  }
  return out;
}

function addObject(out: ParsedManifests, raw: unknown, where: ObjectLocation): void {
  const v = validateObject(raw, where);
  if (v.ok) {
    const k = keyOf(v.object);
    const dup = out.good.get(k);
    const loc: ObjectLocation = {
      ...where,
      kind: v.object.kind,
      namespace: v.object.metadata.namespace,
      name: v.object.metadata.name,
    };
    if (dup) {
      out.errors.push(
        new InvalidObjectError(loc, 'metadata.name', `duplicate of document ${dup.document}; ignored`),
      );
      return;
    }
    const json = JSON.stringify(v.object);
    if (json.length > MAX_DOCUMENT_BYTES) {
      out.errors.push(
        new InvalidObjectError(
          loc,
          '',
          `object is ${json.length} bytes, over the ${MAX_DOCUMENT_BYTES} limit`,
        ),
      );
      out.badKeys.add(k);
      return;
    }
    out.good.set(k, { object: v.object, json, document: where.document ?? 0 });
    for (const w of v.warnings) out.warnings.push(`${formatLocation(loc, '', '').replace(/: $/, '')}: ${w}`);
  } else if (!v.ignored) {
    out.errors.push(v.error);
    const loc = v.error.location;
    if (loc.kind && loc.name) out.badKeys.add(`${loc.kind}/${loc.namespace ?? ''}/${loc.name}`);
    else out.unidentified = true;
  }
}

export interface LoadedManifests {
  state: MeshState;
  translator: Translator;
  errors: InvalidObjectError[];
  warnings: string[];
}

/** One-shot load for the CLI: read, validate, translate; no watching. Throws ManifestDirectoryError only for a missing/unreadable directory. */
export async function loadManifestDirectory(
  dir: string,
  opts: Omit<ManifestSourceOptions, 'watch'> = {},
): Promise<LoadedManifests> {
  const source = new ManifestSource(dir, {
    ...opts,
    watch: false,
    logger: opts.logger ?? pino({ level: 'silent' }),
  });
  await source.start();
  await source.stop();
  return {
    state: source.state,
    translator: source.translator,
    errors: source.errors(),
    warnings: source.warnings(),
  };
}

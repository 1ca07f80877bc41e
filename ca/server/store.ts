// Where the CA keeps its key material. Local mode: a directory with Istio's `istio-ca-secret` file
// layout (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem). The Kubernetes Secret/ConfigMap
// store (istio-ca-secret / istio-ca-root-cert) plugs in behind the same CaStore interface.
import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { CaError } from '../errors.js';
import { certificatesOf } from '../pem.js';
import type { CaKeyMaterial } from './root.js';

export interface CaStore {
  /** The stored material, or undefined when nothing is stored yet (first start). */
  load(): Promise<CaKeyMaterial | undefined>;
  /** Persists the material (crash-safe per file). */
  save(ca: CaKeyMaterial): Promise<void>;
  /** For logs: where the material lives. */
  readonly location: string;
}

export const CA_FILES = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  chain: 'cert-chain.pem',
  roots: 'root-cert.pem',
} as const;

/**
 * Writes a file so that a crash never leaves it torn: temp file in the same directory (same
 * filesystem), fsync, rename over the target, fsync the directory so the rename is durable.
 */
export async function writeFileAtomic(path: string, data: string, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await fh.writeFile(data);
    await fh.chmod(mode); // umask may have narrowed or widened nothing, but be explicit
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  const dh = await fs.open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Reads a cacerts-style directory; undefined if it holds no signing cert+key at all. */
export async function readCaDirectory(dir: string): Promise<CaKeyMaterial | undefined> {
  const [certPem, keyPem, chainPem, rootsPem] = await Promise.all([
    readOptional(join(dir, CA_FILES.cert)),
    readOptional(join(dir, CA_FILES.key)),
    readOptional(join(dir, CA_FILES.chain)),
    readOptional(join(dir, CA_FILES.roots)),
  ]);
  if (certPem === undefined && keyPem === undefined) return readTlsLayout(dir);
  if (certPem === undefined)
    throw new CaError('INVALID_CA_MATERIAL', `${join(dir, CA_FILES.cert)} is missing`);
  if (keyPem === undefined) throw new CaError('INVALID_CA_MATERIAL', `${join(dir, CA_FILES.key)} is missing`);
  if (rootsPem === undefined)
    throw new CaError('INVALID_CA_MATERIAL', `${join(dir, CA_FILES.roots)} is missing`);
  return {
    certPem,
    keyPem,
    certChainPem: certificatesOf(chainPem ?? ''),
    rootsPem: certificatesOf(rootsPem),
  };
}

/**
 * Istio's alternative cacerts layout (a `kubernetes.io/tls` Secret): tls.crt (signing cert, maybe
 * followed by its chain), tls.key, ca.crt (roots).
 */
async function readTlsLayout(dir: string): Promise<CaKeyMaterial | undefined> {
  const [crt, key, ca] = await Promise.all([
    readOptional(join(dir, 'tls.crt')),
    readOptional(join(dir, 'tls.key')),
    readOptional(join(dir, 'ca.crt')),
  ]);
  if (crt === undefined && key === undefined) return undefined;
  if (crt === undefined) throw new CaError('INVALID_CA_MATERIAL', `${join(dir, 'tls.crt')} is missing`);
  if (key === undefined) throw new CaError('INVALID_CA_MATERIAL', `${join(dir, 'tls.key')} is missing`);
  if (ca === undefined) throw new CaError('INVALID_CA_MATERIAL', `${join(dir, 'ca.crt')} is missing`);
  const certs = certificatesOf(crt);
  if (certs.length === 0)
    throw new CaError('INVALID_CA_MATERIAL', `${join(dir, 'tls.crt')} holds no certificate`);
  return { certPem: certs[0]!, keyPem: key, certChainPem: certs, rootsPem: certificatesOf(ca) };
}

/** Local-mode store: a directory, key file 0600, every file written atomically. */
export class LocalDirCaStore implements CaStore {
  constructor(readonly dir: string) {}

  get location(): string {
    return this.dir;
  }

  load(): Promise<CaKeyMaterial | undefined> {
    return readCaDirectory(this.dir);
  }

  async save(ca: CaKeyMaterial): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    // Key first, certificate last: a crash in between leaves the old certificate with a new key,
    // which load() → Signer refuses with "CA key does not match", never a silently wrong CA.
    // Same-key root renewal rewrites only certificates, so it can never strand the key.
    await writeFileAtomic(join(this.dir, CA_FILES.key), ca.keyPem, 0o600);
    await writeFileAtomic(join(this.dir, CA_FILES.chain), ca.certChainPem.join(''));
    await writeFileAtomic(join(this.dir, CA_FILES.roots), ca.rootsPem.join(''));
    await writeFileAtomic(join(this.dir, CA_FILES.cert), ca.certPem);
  }
}

/** In-memory store: for tests and for a CA that must not persist anything. */
export class MemoryCaStore implements CaStore {
  readonly location = 'memory';
  constructor(private material?: CaKeyMaterial) {}
  async load(): Promise<CaKeyMaterial | undefined> {
    return this.material;
  }
  async save(ca: CaKeyMaterial): Promise<void> {
    this.material = ca;
  }
}

// The CA's signing state over time: which key material signs right now, where it came from, and
// how it changes without a restart.
// - Plugged-in `cacerts` (istio pilot/pkg/bootstrap/istio_ca.go): used when ca-cert.pem+ca-key.pem
//   exist; the directory is watched and a change is loaded after a debounce. A broken or partial
//   update is refused with a logged reason and the last good CA keeps signing.
// - Self-signed (istio security/pkg/pki/ca/ca.go): loaded from the store or made on first start;
//   every check interval, if less than 20% of its life is left, the root is re-issued with the
//   SAME key and subject, so leaves signed before keep verifying; the old root stays in the bundle.
import { EventEmitter } from 'node:events';
import { type FSWatcher, existsSync, watch } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { InvalidCaMaterial } from '../errors.js';
import { certificatesOf } from '../pem.js';
import { type CaKeyMaterial, createSelfSignedRoot, renewSelfSignedRoot } from './root.js';
import { Signer, type SignerOptions } from './signer.js';
import { type CaStore, readCaDirectory } from './store.js';

export type CaMode = 'self-signed' | 'cacerts';

export interface AuthorityOptions extends SignerOptions {
  trustDomain: string;
  store: CaStore;
  /** Istio ROOT_CA_DIR (`./etc/cacerts`): plugged-in CA files, watched for changes. */
  cacertsDir?: string | undefined;
  /** Self-signed root lifetime. Default 3650 days (CITADEL_SELF_SIGNED_CA_CERT_TTL). */
  rootTtlDays?: number;
  /** Renew when less than this % of the root's life is left. Default 20 (…ROOT_CERT_GRACE_PERIOD_PERCENTILE). */
  rootGracePercent?: number;
  /** How often to check. Default 1 h (CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL). */
  rootCheckIntervalMs?: number;
  /** Quiet time after the last cacerts file event before reloading. Default 500 ms. */
  reloadDebounceMs?: number;
  logger: Logger;
}

export interface CertificateAuthorityEvents {
  /** A new signer is active (cacerts reload, root renewal). */
  changed: [{ mode: CaMode; reason: string }];
  /** A cacerts update was refused; the previous signer stays. */
  reloadError: [Error];
}

/** Checks material is usable: parseable, key matches, CA:TRUE, not expired, chains to a root. */
export function validateCaMaterial(ca: CaKeyMaterial, opts: SignerOptions, where: string): Signer {
  let signer: Signer;
  try {
    signer = new Signer(ca, opts);
  } catch (err) {
    throw new InvalidCaMaterial(`${where}: ${(err as Error).message}`);
  }
  const now = Date.now();
  const caCert = signer.caCert;
  if (new Date(caCert.validTo).getTime() <= now)
    throw new InvalidCaMaterial(`${where}: ca-cert.pem has expired`);
  const roots = certificatesOf(ca.rootsPem).map((p) => new X509Certificate(p));
  const chain = certificatesOf(ca.certChainPem).map((p) => new X509Certificate(p));
  // Walk from the signing cert up through the chain until a root issued it (bounded by chain length).
  let current = caCert;
  for (let hops = 0; hops <= chain.length; hops++) {
    const root = roots.find((r) => current.checkIssued(r) && current.verify(r.publicKey));
    if (root) return signer;
    const next = chain.find(
      (c) =>
        c.fingerprint256 !== current.fingerprint256 && current.checkIssued(c) && current.verify(c.publicKey),
    );
    if (!next) break;
    current = next;
  }
  throw new InvalidCaMaterial(
    `${where}: ca-cert.pem does not chain to any certificate in root-cert.pem (via cert-chain.pem)`,
  );
}

export class CertificateAuthority extends EventEmitter<CertificateAuthorityEvents> {
  private current: Signer;
  private currentMode: CaMode;
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private rootTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<boolean> | undefined;
  private closed = false;

  private constructor(
    private readonly opts: AuthorityOptions,
    signer: Signer,
    mode: CaMode,
  ) {
    super();
    this.current = signer;
    this.currentMode = mode;
  }

  private get log(): Logger {
    return this.opts.logger;
  }

  private signerOptions(): SignerOptions {
    const o: SignerOptions = { trustDomain: this.opts.trustDomain };
    if (this.opts.defaultTtlSeconds !== undefined) o.defaultTtlSeconds = this.opts.defaultTtlSeconds;
    if (this.opts.maxTtlSeconds !== undefined) o.maxTtlSeconds = this.opts.maxTtlSeconds;
    return o;
  }

  /** Loads cacerts or the stored root, or makes a root; then starts watching/renewal. */
  static async start(opts: AuthorityOptions): Promise<CertificateAuthority> {
    const signerOpts: SignerOptions = { ...opts, trustDomain: opts.trustDomain };
    let signer: Signer | undefined;
    let mode: CaMode = 'self-signed';
    if (opts.cacertsDir) {
      const plugged = await readCaDirectory(opts.cacertsDir);
      if (plugged) {
        signer = validateCaMaterial(plugged, signerOpts, opts.cacertsDir);
        mode = 'cacerts';
        opts.logger.info({ dir: opts.cacertsDir }, 'ca: using plugged-in CA from cacerts');
      }
    }
    if (!signer) {
      const stored = await opts.store.load();
      if (stored) {
        signer = validateCaMaterial(stored, signerOpts, opts.store.location);
        opts.logger.info({ store: opts.store.location }, 'ca: loaded self-signed root');
      } else {
        const root = await createSelfSignedRoot({
          trustDomain: opts.trustDomain,
          ttlDays: opts.rootTtlDays ?? 3650,
        });
        await opts.store.save(root);
        signer = validateCaMaterial(root, signerOpts, 'new root');
        opts.logger.info({ store: opts.store.location }, 'ca: generated self-signed root');
      }
    }
    const ca = new CertificateAuthority(opts, signer, mode);
    if (opts.cacertsDir) ca.watchCacerts(opts.cacertsDir);
    if (mode === 'self-signed') await ca.checkRootRenewal();
    ca.scheduleRootCheck();
    return ca;
  }

  get signer(): Signer {
    return this.current;
  }

  get mode(): CaMode {
    return this.currentMode;
  }

  private watchCacerts(dir: string): void {
    if (!existsSync(dir)) {
      this.log.warn({ dir }, 'ca: cacerts directory does not exist; not watching it');
      return;
    }
    // Watch the directory, not the files: Kubernetes Secret volumes and `mv` swaps replace files.
    this.watcher = watch(dir, () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.reloadCacerts(), this.opts.reloadDebounceMs ?? 500);
    });
    this.watcher.on('error', (err) => this.log.error({ err, dir }, 'ca: cacerts watch failed'));
  }

  /** Re-reads cacerts; true when a new signer became active. Refused updates keep the last good CA. */
  reloadCacerts(): Promise<boolean> {
    if (this.reloading) return this.reloading.then(() => this.reloadCacerts());
    this.reloading = this.doReloadCacerts().finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async doReloadCacerts(): Promise<boolean> {
    const dir = this.opts.cacertsDir;
    if (!dir || this.closed) return false;
    try {
      const plugged = await readCaDirectory(dir);
      if (!plugged) throw new InvalidCaMaterial(`${dir}: ca-cert.pem and ca-key.pem are gone`);
      if (
        plugged.certPem === this.current.ca.certPem &&
        plugged.keyPem === this.current.ca.keyPem &&
        plugged.rootsPem.join('') === this.current.ca.rootsPem.join('') &&
        plugged.certChainPem.join('') === this.current.ca.certChainPem.join('')
      ) {
        return false;
      }
      const signer = validateCaMaterial(plugged, this.signerOptions(), dir);
      this.current = signer;
      this.currentMode = 'cacerts';
      this.log.info({ dir, serial: signer.caCert.serialNumber }, 'ca: reloaded plugged-in CA from cacerts');
      this.emit('changed', { mode: 'cacerts', reason: 'cacerts reloaded' });
      return true;
    } catch (err) {
      this.log.error(
        { err: (err as Error).message, dir },
        'ca: refused cacerts update; the previous CA keeps signing',
      );
      this.emit('reloadError', err as Error);
      return false;
    }
  }

  private scheduleRootCheck(): void {
    if (this.closed) return;
    this.rootTimer = setTimeout(async () => {
      try {
        await this.checkRootRenewal();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'ca: root renewal failed; will retry');
      }
      this.scheduleRootCheck();
    }, this.opts.rootCheckIntervalMs ?? 3_600_000);
    this.rootTimer.unref();
  }

  /** Renews a self-signed root with the same key when < grace% of its life is left. True if renewed. */
  async checkRootRenewal(): Promise<boolean> {
    if (this.currentMode !== 'self-signed' || this.closed) return false;
    const cert = this.current.caCert;
    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    const left = to - Date.now();
    if (left > ((this.opts.rootGracePercent ?? 20) / 100) * (to - from)) return false;
    const renewed = await renewSelfSignedRoot(this.current.ca, { ttlDays: this.opts.rootTtlDays ?? 3650 });
    const signer = validateCaMaterial(renewed, this.signerOptions(), 'renewed root');
    // Persist first: if saving fails the old root keeps signing and the next check retries (istio rolls back).
    await this.opts.store.save(renewed);
    this.current = signer;
    this.log.info(
      { serial: signer.caCert.serialNumber, notAfter: signer.caCert.validTo },
      'ca: renewed self-signed root (same key)',
    );
    this.emit('changed', { mode: 'self-signed', reason: 'root renewed' });
    return true;
  }

  close(): void {
    this.closed = true;
    this.watcher?.close();
    clearTimeout(this.debounce);
    clearTimeout(this.rootTimer);
  }
}

// The certificate client used by ztunnel and waypoints (istio/ztunnel src/identity/manager.rs):
// one certificate per identity (service account), a fresh ECDSA P-256 key + CSR per request,
// ImpersonatedIdentity in metadata, the returned leaf's SAN checked against the request, every root
// of the returned bundle trusted, refresh at 50% of life, per-identity exponential backoff capped at
// 150 s while the CA fails, and the old certificate served until it truly expires.
import { EventEmitter } from 'node:events';
import type { SecureContext, SecureContextOptions } from 'node:tls';
import { createSecureContext } from 'node:tls';
import { type Logger, pino } from 'pino';
import { type SpiffeId, formatSpiffeId } from '../../core/identity/spiffe.js';
import { CertificateUnavailable } from '../errors.js';
import type { CertificateSource } from './ca-client.js';
import { createKeyAndCsr } from './csr.js';
import { type WorkloadCertificate, parseWorkloadCertificate } from './workload-certificate.js';

export type { WorkloadCertificate } from './workload-certificate.js';

export interface CertificateManagerOptions {
  /** Where certificates come from (CaClient over gRPC, or anything implementing the same call). */
  source: CertificateSource;
  /** Requested TTL in seconds (istio/ztunnel SECRET_TTL). Default 86400. */
  ttlSeconds?: number;
  /** Fraction of life after which to refresh (istio/ztunnel refresh_at: halfway). Default 0.5. */
  refreshAt?: number;
  /** First retry delay after a failure. Default 500 ms. */
  initialBackoffMs?: number;
  /** Backoff cap (istio/ztunnel: 150 s). */
  maxBackoffMs?: number;
  /**
   * Send ImpersonatedIdentity (node proxy asking for a workload). Default true, as ztunnel does;
   * false for a client that asks for its own identity (e.g. a waypoint with its own token).
   */
  impersonate?: boolean;
  logger?: Logger;
}

export type CertificateState = 'Initializing' | 'Available' | 'Unavailable';

export interface CertificateDescription {
  identity: string;
  /** Istio config_dump wording: Initializing (first fetch), Available, Unavailable (none valid). */
  state: CertificateState;
  serial?: string;
  notBefore?: string;
  notAfter?: string;
  /** When the next refresh/retry is due. */
  nextAttempt?: string;
  lastError?: string;
}

export interface CertificateManagerEvents {
  /** A new certificate is in place for an identity (first issue and every rotation). */
  rotated: [WorkloadCertificate, WorkloadCertificate | undefined];
  /** A fetch for an identity failed; a retry is scheduled after `retryInMs`. */
  fetchFailed: [SpiffeId, Error, number];
}

interface Entry {
  identity: SpiffeId;
  key: string;
  cert?: WorkloadCertificate;
  inflight?: Promise<WorkloadCertificate>;
  timer?: NodeJS.Timeout;
  nextAttemptAt?: number;
  backoffMs: number;
  lastError?: Error;
  /** Callers waiting for a certificate while none is valid and a retry is scheduled. */
  waiters: Array<{ resolve: (c: WorkloadCertificate) => void; reject: (e: Error) => void }>;
  contexts: Map<string, SecureContext>;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

function isValid(c: WorkloadCertificate | undefined, now = Date.now()): c is WorkloadCertificate {
  return !!c && c.notAfter.getTime() > now && c.notBefore.getTime() <= now + 5 * 60_000;
}

export class CertificateManager extends EventEmitter<CertificateManagerEvents> {
  private readonly entries = new Map<string, Entry>();
  private readonly log: Logger;
  private closed = false;

  constructor(private readonly opts: CertificateManagerOptions) {
    super();
    this.log = opts.logger ?? pino({ name: 'ambit-cert-manager' });
  }

  private entry(identity: SpiffeId): Entry {
    const key = formatSpiffeId(identity);
    let e = this.entries.get(key);
    if (!e) {
      e = { identity, key, backoffMs: 0, waiters: [], contexts: new Map() };
      this.entries.set(key, e);
    }
    return e;
  }

  /**
   * A valid certificate for `identity`, requesting one if there is none. Concurrent calls share one
   * request. Once fetched, the identity is kept fresh in the background until forget()/close().
   */
  fetch(identity: SpiffeId): Promise<WorkloadCertificate> {
    if (this.closed) return Promise.reject(new CertificateUnavailable('certificate manager is closed'));
    const e = this.entry(identity);
    if (isValid(e.cert)) return Promise.resolve(e.cert);
    if (e.inflight) return e.inflight;
    if (e.timer && e.nextAttemptAt !== undefined && e.lastError) {
      // In backoff with nothing valid: wait for the scheduled retry rather than hammer the CA.
      return new Promise((resolve, reject) => e.waiters.push({ resolve, reject }));
    }
    return this.attempt(e);
  }

  /** The certificate for `identity` if one is valid right now (never triggers a request). */
  current(identity: SpiffeId): WorkloadCertificate | undefined {
    const c = this.entries.get(formatSpiffeId(identity))?.cert;
    return isValid(c) ? c : undefined;
  }

  /** Stops refreshing an identity no longer used on this node (istio/ztunnel forgets them too). */
  forget(identity: SpiffeId): void {
    const e = this.entries.get(formatSpiffeId(identity));
    if (!e) return;
    clearTimeout(e.timer);
    this.entries.delete(e.key);
    for (const w of e.waiters.splice(0)) w.reject(new CertificateUnavailable(`${e.key} was forgotten`));
  }

  /** For config dumps: one row per identity. */
  describe(): CertificateDescription[] {
    const now = Date.now();
    return [...this.entries.values()].map((e) => {
      const d: CertificateDescription = {
        identity: e.key,
        state: isValid(e.cert, now) ? 'Available' : e.cert || e.lastError ? 'Unavailable' : 'Initializing',
      };
      if (e.cert) {
        d.serial = e.cert.serial;
        d.notBefore = e.cert.notBefore.toISOString();
        d.notAfter = e.cert.notAfter.toISOString();
      }
      if (e.nextAttemptAt !== undefined) d.nextAttempt = new Date(e.nextAttemptAt).toISOString();
      if (e.lastError) d.lastError = e.lastError.message;
      return d;
    });
  }

  /** TLS options for an identity's current certificate: key, chain (leaf first), every root as CA. */
  tlsOptions(identity: SpiffeId): SecureContextOptions | undefined {
    const c = this.current(identity);
    return c ? secureContextOptionsOf(c) : undefined;
  }

  /**
   * A tls.SecureContext for the identity's current certificate, cached per certificate serial and
   * per `extra` options key. For servers that pick the certificate per connection (HBONE: by
   * destination pod, no SNI) from an SNICallback/ALPNCallback, or for `tls.connect({ secureContext })`.
   */
  secureContextFor(
    identity: SpiffeId,
    extra: Omit<SecureContextOptions, 'key' | 'cert' | 'ca'> = {},
  ): SecureContext | undefined {
    const e = this.entries.get(formatSpiffeId(identity));
    if (!e || !isValid(e.cert)) return undefined;
    const cacheKey = `${e.cert.serial}|${JSON.stringify(extra)}`;
    let ctx = e.contexts.get(cacheKey);
    if (!ctx) {
      e.contexts.clear(); // old serials are useless once rotated
      ctx = createSecureContext({ ...extra, ...secureContextOptionsOf(e.cert) });
      e.contexts.set(cacheKey, ctx);
    }
    return ctx;
  }

  private attempt(e: Entry): Promise<WorkloadCertificate> {
    clearTimeout(e.timer);
    e.timer = undefined;
    e.nextAttemptAt = undefined;
    const p = this.request(e).finally(() => {
      if (e.inflight === p) e.inflight = undefined;
    });
    e.inflight = p;
    p.then(
      (c) => {
        for (const w of e.waiters.splice(0)) w.resolve(c);
      },
      (err: Error) => {
        // Waiters only fail when nothing valid is left to give them.
        const c = e.cert;
        for (const w of e.waiters.splice(0)) isValid(c) ? w.resolve(c) : w.reject(err);
      },
    );
    return p;
  }

  private async request(e: Entry): Promise<WorkloadCertificate> {
    const uri = e.key;
    try {
      const { keyPem, csrPem } = await createKeyAndCsr(e.identity);
      const chain = await this.opts.source.createCertificate(
        csrPem,
        this.opts.ttlSeconds ?? 86400,
        this.opts.impersonate === false ? undefined : uri,
      );
      // istio/ztunnel caclient.rs: refuse a leaf whose first URI SAN is not the identity asked for.
      const cert = parseWorkloadCertificate(e.identity, keyPem, chain);
      if (this.closed || this.entries.get(uri) !== e) return cert; // forgotten meanwhile: do not schedule
      const previous = e.cert;
      e.cert = cert;
      e.backoffMs = 0;
      e.lastError = undefined;
      e.contexts.clear();
      const life = cert.notAfter.getTime() - cert.notBefore.getTime();
      const refreshAt = cert.notBefore.getTime() + life * (this.opts.refreshAt ?? 0.5);
      this.schedule(e, refreshAt - Date.now());
      this.log.info(
        { identity: uri, serial: cert.serial, notAfter: cert.notAfter.toISOString() },
        'cert-manager: certificate issued',
      );
      this.emit('rotated', cert, previous);
      return cert;
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      if (this.closed || this.entries.get(uri) !== e) throw error;
      e.lastError = error;
      e.backoffMs = Math.min(
        e.backoffMs === 0 ? (this.opts.initialBackoffMs ?? 500) : e.backoffMs * 2,
        this.opts.maxBackoffMs ?? 150_000,
      );
      // Jitter ±10% so many identities do not retry in lockstep.
      const delay = Math.round(e.backoffMs * (0.9 + Math.random() * 0.2));
      this.schedule(e, delay);
      this.log.warn(
        {
          identity: uri,
          err: error.message,
          retryInMs: delay,
          keepsServing: isValid(e.cert) ? e.cert.serial : null,
        },
        'cert-manager: certificate request failed; backing off',
      );
      this.emit('fetchFailed', e.identity, error, delay);
      throw error;
    }
  }

  private schedule(e: Entry, delayMs: number): void {
    if (this.closed) return;
    clearTimeout(e.timer);
    const delay = Math.max(0, Math.min(delayMs, MAX_TIMER_MS));
    e.nextAttemptAt = Date.now() + delay;
    e.timer = setTimeout(() => {
      this.attempt(e).catch(() => {
        /* logged and rescheduled in request() */
      });
    }, delay);
    e.timer.unref();
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      clearTimeout(e.timer);
      for (const w of e.waiters.splice(0))
        w.reject(new CertificateUnavailable('certificate manager is closed'));
    }
    this.entries.clear();
  }
}

export function secureContextOptionsOf(c: WorkloadCertificate): SecureContextOptions {
  return { key: c.keyPem, cert: c.certChainPem.join(''), ca: c.rootsPem };
}

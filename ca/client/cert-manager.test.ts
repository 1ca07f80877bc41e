import { afterEach, describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import { type SpiffeId, parseSpiffeId } from '../../core/identity/spiffe.js';
import { createSelfSignedRoot } from '../server/root.js';
import { Signer } from '../server/signer.js';
import type { CertificateSource } from './ca-client.js';
import { CertificateManager } from './cert-manager.js';

const logger = pino({ level: 'silent' });
const sleep = parseSpiffeId('spiffe://cluster.local/ns/default/sa/sleep');

/** A real signer in-process, counting calls; `sanFor` lets a test make it answer for someone else. */
async function signerSource(
  sanFor?: (asked: SpiffeId) => SpiffeId,
): Promise<CertificateSource & { calls: number }> {
  const signer = new Signer(await createSelfSignedRoot({ trustDomain: 'cluster.local' }));
  const src = {
    calls: 0,
    async createCertificate(csrPem: string, ttl: number, impersonated?: string): Promise<string[]> {
      src.calls++;
      const asked = parseSpiffeId(impersonated ?? 'spiffe://cluster.local/ns/x/sa/y');
      return signer.signSpki((await import('../server/csr-check.js')).validateCsr(csrPem).spkiDer, {
        identity: sanFor ? sanFor(asked) : asked,
        ttlSeconds: ttl,
      });
    },
  };
  return src;
}

let manager: CertificateManager | undefined;
afterEach(() => {
  manager?.close();
  manager = undefined;
  vi.useRealTimers();
});

describe('CertificateManager', () => {
  it('dedupes concurrent fetches and describes the certificate', async () => {
    const source = await signerSource();
    manager = new CertificateManager({ source, logger });
    const [a, b, c] = await Promise.all([manager.fetch(sleep), manager.fetch(sleep), manager.fetch(sleep)]);
    expect(source.calls).toBe(1);
    expect(a.serial).toBe(b.serial);
    expect(c.serial).toBe(a.serial);
    expect(manager.current(sleep)?.serial).toBe(a.serial);
    expect(manager.describe()).toEqual([
      expect.objectContaining({
        identity: 'spiffe://cluster.local/ns/default/sa/sleep',
        state: 'Available',
        serial: a.serial,
      }),
    ]);
    expect(manager.secureContextFor(sleep)).toBeDefined();
    manager.forget(sleep);
    expect(manager.current(sleep)).toBeUndefined();
    expect(manager.describe()).toEqual([]);
  });

  it('rejects a certificate whose SAN is not the requested identity', async () => {
    const source = await signerSource(() => parseSpiffeId('spiffe://cluster.local/ns/default/sa/intruder'));
    manager = new CertificateManager({ source, logger });
    await expect(manager.fetch(sleep)).rejects.toThrow(
      /certificate for spiffe:\/\/cluster.local\/ns\/default\/sa\/intruder, requested .*sleep/,
    );
    expect(manager.current(sleep)).toBeUndefined();
    expect(manager.describe()[0]?.state).toBe('Unavailable');
  });

  it('serves the old certificate while refreshes fail, and nothing once it has truly expired', async () => {
    const real = await signerSource();
    let up = true;
    const flaky: CertificateSource = {
      createCertificate: (csr, ttl, imp) =>
        up ? real.createCertificate(csr, ttl, imp) : Promise.reject(new Error('CA down')),
    };
    // 2 s TTL: the midpoint (NotBefore is 2 min back) is already past, so a refresh is attempted at once.
    manager = new CertificateManager({
      source: flaky,
      ttlSeconds: 2,
      initialBackoffMs: 100,
      maxBackoffMs: 300,
      logger,
    });
    const failures: Error[] = [];
    manager.on('fetchFailed', (_id, err) => failures.push(err));
    up = true;
    const first = await manager.fetch(sleep);
    up = false;
    const deadline = Date.now() + 10_000;
    while (failures.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(failures.length).toBeGreaterThanOrEqual(2);
    if (Date.now() < first.notAfter.getTime() - 200)
      expect(manager.current(sleep)?.serial).toBe(first.serial);
    while (Date.now() <= first.notAfter.getTime() + 50 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(manager.current(sleep)).toBeUndefined();
    expect(manager.describe()[0]).toMatchObject({
      state: 'Unavailable',
      serial: first.serial,
      lastError: 'CA down',
    });
    await expect(manager.fetch(sleep)).rejects.toThrow(/CA down/);
    up = true;
    const back = await manager.fetch(sleep);
    expect(back.serial).not.toBe(first.serial);
  });

  it('backs off exponentially and caps the delay at 150 s', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const failing: CertificateSource = {
      async createCertificate() {
        throw new Error('connect ECONNREFUSED');
      },
    };
    manager = new CertificateManager({ source: failing, logger });
    const delays: number[] = [];
    manager.on('fetchFailed', (_id, _err, retryIn) => delays.push(retryIn));
    await manager.fetch(sleep).catch(() => undefined);
    for (let i = 0; i < 14; i++) {
      const seen = delays.length;
      await vi.advanceTimersByTimeAsync(delays.at(-1)! + 1);
      // The retry makes a key on the libuv pool (real time): wait for its failure, bounded.
      const until = Date.now() + 5000;
      while (delays.length === seen && Date.now() < until) await new Promise((r) => setImmediate(r));
    }
    expect(delays.length).toBeGreaterThanOrEqual(12);
    expect(delays[0]).toBeLessThan(1000);
    for (let i = 1; i < 8; i++) expect(delays[i]!).toBeGreaterThan(delays[i - 1]!); // growing
    const tail = delays.slice(-3);
    for (const d of tail) {
      expect(d).toBeGreaterThanOrEqual(135_000);
      expect(d).toBeLessThanOrEqual(165_000); // 150 s ± 10% jitter
    }
  });
});

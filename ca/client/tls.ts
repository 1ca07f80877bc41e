// Helpers for TLS consumers of the certificate manager: serve an identity's certificate from a
// tls.Server and follow rotations without restarting the listener or touching open connections
// (server.setSecureContext only affects handshakes that start after the call).
import type { Server as TlsServer, SecureContextOptions } from 'node:tls';
import type { SpiffeId } from '../../core/identity/spiffe.js';
import { formatSpiffeId } from '../../core/identity/spiffe.js';
import { type CertificateManager, type WorkloadCertificate, secureContextOptionsOf } from './cert-manager.js';

/**
 * Keeps `server` presenting `identity`'s current certificate: sets it now (if fetched) and on every
 * rotation. Returns a function that stops following. `extra` is merged into each context (e.g.
 * minVersion, ciphers, ALPN-independent options).
 */
export function followRotations(
  server: TlsServer,
  manager: CertificateManager,
  identity: SpiffeId,
  extra: Omit<SecureContextOptions, 'key' | 'cert' | 'ca'> = {},
): () => void {
  const want = formatSpiffeId(identity);
  const apply = (c: WorkloadCertificate): void =>
    server.setSecureContext({ ...extra, ...secureContextOptionsOf(c) });
  const now = manager.current(identity);
  if (now) apply(now);
  const onRotated = (c: WorkloadCertificate): void => {
    if (formatSpiffeId(c.identity) === want) apply(c);
  };
  manager.on('rotated', onRotated);
  return () => manager.off('rotated', onRotated);
}

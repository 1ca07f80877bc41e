// TLS pieces shared by the HBONE client and server: secure contexts built from a workload
// certificate (TLS 1.3 only, AES-GCM, mesh roots as the only trust anchors) and SPIFFE identity
// extraction from a peer certificate (istio/ztunnel src/tls/*.rs: the first URI SAN that parses as
// spiffe://<td>/ns/<ns>/sa/<sa> is the identity; DNS names are never looked at).
import type { PeerCertificate } from 'node:tls';
import * as tls from 'node:tls';
import { type SpiffeId, formatSpiffeId, tryParseSpiffeId, uriSansOfText } from '../identity/spiffe.js';
import { TLS_CIPHERS, TLS_ECDH_CURVES, TLS_MAX_VERSION, TLS_MIN_VERSION } from './settings.js';

/**
 * A workload's key and certificate as HBONE needs them. Structurally the CA client's
 * `WorkloadCertificate` (ca/client/workload-certificate.ts); declared here because core/ imports no
 * component.
 */
export interface HboneCertificate {
  identity: SpiffeId;
  keyPem: string;
  /** Leaf first, then intermediates. */
  certChainPem: string[];
  /** Every trusted root (several during a root rotation). */
  rootsPem: string[];
  serial: string;
  notAfter?: Date;
}

// One SecureContext per certificate object: building one parses keys (~1 ms), and a rotated
// certificate is a new object, so new connections pick it up while live ones keep the old context.
const contexts = new WeakMap<HboneCertificate, tls.SecureContext>();

/** HBONE's TLS settings (docs/architecture.md §4: TLS 1.3 only, AES-GCM) with one identity's key, chain and trust roots. */
export function hboneTlsOptions(cert: HboneCertificate): tls.SecureContextOptions {
  return {
    key: cert.keyPem,
    cert: cert.certChainPem.join('\n'),
    ca: cert.rootsPem,
    minVersion: TLS_MIN_VERSION,
    maxVersion: TLS_MAX_VERSION,
    ciphers: TLS_CIPHERS,
    ecdhCurve: TLS_ECDH_CURVES,
  };
}

export function secureContextFor(cert: HboneCertificate): tls.SecureContext {
  let ctx = contexts.get(cert);
  if (!ctx) {
    ctx = tls.createSecureContext(hboneTlsOptions(cert));
    contexts.set(cert, ctx);
  }
  return ctx;
}

/** URI SANs of a peer certificate, in order (Node's `subjectaltname` is "URI:a, DNS:b, ..."). */
export function uriSansOf(cert: PeerCertificate | undefined): string[] {
  return uriSansOfText(cert?.subjectaltname);
}

/** The peer's SPIFFE identity: the first URI SAN of Istio's workload shape. */
export function spiffeIdOf(cert: PeerCertificate | undefined): SpiffeId | undefined {
  for (const uri of uriSansOf(cert)) {
    const id = tryParseSpiffeId(uri);
    if (id) return id;
  }
  return undefined;
}

/** The expected identity the server presented (istio: any URI SAN equal to any expected ID). */
export function matchExpectedIdentity(
  cert: PeerCertificate | undefined,
  expected: readonly SpiffeId[],
): SpiffeId | undefined {
  const want = new Map(expected.map((id) => [formatSpiffeId(id), id]));
  for (const uri of uriSansOf(cert)) {
    const hit = want.get(uri);
    if (hit) return hit;
  }
  return undefined;
}

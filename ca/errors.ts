// Typed errors of the CA and its client. Each carries a stable `code`; the gRPC service maps
// them to status codes in one place (server/grpc-service.ts).

export type CaErrorCode =
  | 'INVALID_CSR'
  | 'INVALID_TTL'
  | 'WRONG_TRUST_DOMAIN'
  | 'INVALID_IDENTITY'
  | 'CA_EXPIRED'
  | 'INVALID_CA_MATERIAL'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'CERTIFICATE_UNAVAILABLE'
  | 'CERTIFICATE_MISMATCH'
  | 'STORE_ERROR';

export class CaError extends Error {
  constructor(
    readonly code: CaErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CaError';
  }
}

/** A CSR the CA refuses: unparseable, bad signature, weak key. Maps to gRPC INVALID_ARGUMENT. */
export class InvalidCsr extends CaError {
  constructor(message: string) {
    super('INVALID_CSR', message);
    this.name = 'InvalidCsr';
  }
}

/** Requested TTL out of range (istio/istio ca.go: above MAX_WORKLOAD_CERT_TTL is an error, not a clamp). */
export class InvalidTtl extends CaError {
  constructor(message: string) {
    super('INVALID_TTL', message);
    this.name = 'InvalidTtl';
  }
}

/** The identity to sign is outside the CA's trust domain. */
export class WrongTrustDomain extends CaError {
  constructor(message: string) {
    super('WRONG_TRUST_DOMAIN', message);
    this.name = 'WrongTrustDomain';
  }
}

/** cacerts / stored CA files that cannot be used (missing, mismatched key, not a CA, expired). */
export class InvalidCaMaterial extends CaError {
  constructor(message: string) {
    super('INVALID_CA_MATERIAL', message);
    this.name = 'InvalidCaMaterial';
  }
}

export class Unauthenticated extends CaError {
  constructor(message: string) {
    super('UNAUTHENTICATED', message);
    this.name = 'Unauthenticated';
  }
}

export class PermissionDenied extends CaError {
  constructor(message: string) {
    super('PERMISSION_DENIED', message);
    this.name = 'PermissionDenied';
  }
}

/** The client has no valid certificate for an identity (never fetched, or expired while the CA was down). */
export class CertificateUnavailable extends CaError {
  constructor(message: string) {
    super('CERTIFICATE_UNAVAILABLE', message);
    this.name = 'CertificateUnavailable';
  }
}

/** The CA answered with a leaf whose SAN is not the identity asked for (istio/ztunnel caclient.rs rejects it). */
export class CertificateMismatch extends CaError {
  constructor(message: string) {
    super('CERTIFICATE_MISMATCH', message);
    this.name = 'CertificateMismatch';
  }
}

// istio.v1.auth.IstioCertificateService/CreateCertificate (istio/istio security/pkg/server/ca/server.go):
// authenticate the bearer token, decide the identity (own, or ImpersonatedIdentity for trusted node
// accounts), validate the CSR and TTL, sign, answer [leaf, intermediates..., roots bundle].
// Every refusal is a gRPC status with a message naming what was wrong; nothing is signed on doubt.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { type SpiffeId, formatSpiffeId, parseSpiffeId } from '../../core/identity/spiffe.js';
import { CaError, InvalidCsr, PermissionDenied } from '../errors.js';
import type { IstioCertificateRequest, IstioCertificateResponse } from '../proto.js';
import { type AuthorizationContext, type Authenticator, authorizeIdentity, bearerToken } from './auth.js';
import { validateCsr } from './csr-check.js';
import type { Signer } from './signer.js';

export interface CaServiceDeps extends AuthorizationContext {
  authenticator: Authenticator;
  /** The signer to use for this request (changes on cacerts reload / root renewal). */
  signer: () => Signer;
  logger: Logger;
}

/** One place mapping CA errors to gRPC status codes. */
export function grpcStatusOf(err: unknown): grpc.status {
  if (err instanceof CaError) {
    switch (err.code) {
      case 'UNAUTHENTICATED':
        return grpc.status.UNAUTHENTICATED;
      case 'PERMISSION_DENIED':
        return grpc.status.PERMISSION_DENIED;
      case 'INVALID_CSR':
      case 'INVALID_TTL':
      case 'WRONG_TRUST_DOMAIN':
      case 'INVALID_IDENTITY':
        return grpc.status.INVALID_ARGUMENT;
      case 'CA_EXPIRED':
        return grpc.status.FAILED_PRECONDITION;
      default:
        return grpc.status.INTERNAL;
    }
  }
  return grpc.status.INTERNAL;
}

function impersonatedIdentityOf(req: IstioCertificateRequest): string | undefined {
  const v = req.metadata?.fields?.ImpersonatedIdentity;
  if (!v) return undefined;
  if (typeof v.stringValue !== 'string')
    throw new CaError('INVALID_IDENTITY', 'metadata.ImpersonatedIdentity must be a string');
  return v.stringValue;
}

export async function createCertificate(
  req: IstioCertificateRequest,
  authorization: string | undefined,
  deps: CaServiceDeps,
): Promise<{ chain: string[]; identity: SpiffeId }> {
  const caller = await deps.authenticator.authenticate(bearerToken(authorization));
  const signer = deps.signer();
  let impersonated: SpiffeId | undefined;
  const impersonatedRaw = impersonatedIdentityOf(req);
  if (impersonatedRaw !== undefined) {
    try {
      impersonated = parseSpiffeId(impersonatedRaw);
    } catch (err) {
      throw new CaError('INVALID_IDENTITY', `metadata.ImpersonatedIdentity: ${(err as Error).message}`);
    }
    if (impersonated.trustDomain !== signer.trustDomain) {
      throw new CaError(
        'WRONG_TRUST_DOMAIN',
        `metadata.ImpersonatedIdentity ${impersonatedRaw} is in trust domain "${impersonated.trustDomain}", this CA signs for "${signer.trustDomain}"`,
      );
    }
  }
  const identity = authorizeIdentity(caller, impersonated, deps);
  const csr = validateCsr(req.csr);
  const ttl = Number(req.validity_duration ?? 0);
  signer.resolveTtl(ttl); // refuse an out-of-range TTL with its own message before looking at SANs
  // istiod overwrites CSR SANs; we additionally refuse a CSR that asks for someone else, so a
  // confused client learns it at once instead of getting a certificate it did not expect.
  for (const uri of csr.uriSans) {
    let asked: SpiffeId;
    try {
      asked = parseSpiffeId(uri);
    } catch (err) {
      throw new InvalidCsr(`CSR SAN ${uri}: ${(err as Error).message}`);
    }
    if (asked.trustDomain !== signer.trustDomain) {
      throw new CaError(
        'WRONG_TRUST_DOMAIN',
        `CSR SAN ${uri} is in trust domain "${asked.trustDomain}", this CA signs for "${signer.trustDomain}"`,
      );
    }
    if (uri !== formatSpiffeId(identity)) {
      throw new PermissionDenied(
        `CSR SAN ${uri} is not the identity the caller may get (${formatSpiffeId(identity)})`,
      );
    }
  }
  const chain = signer.signSpki(csr.spkiDer, { identity, ttlSeconds: ttl });
  return { chain, identity };
}

/** grpc-js handlers for the service definition from ca/proto.ts. */
export function caServiceHandlers(deps: CaServiceDeps): grpc.UntypedServiceImplementation {
  return {
    CreateCertificate: (
      call: grpc.ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>,
      callback: grpc.sendUnaryData<IstioCertificateResponse>,
    ) => {
      const auth = call.metadata.get('authorization')[0];
      createCertificate(call.request, typeof auth === 'string' ? auth : auth?.toString(), deps).then(
        ({ chain, identity }) => {
          deps.logger.debug(
            { identity: formatSpiffeId(identity), peer: call.getPeer() },
            'ca: issued certificate',
          );
          callback(null, { cert_chain: chain });
        },
        (err: unknown) => {
          const code = grpcStatusOf(err);
          const message = err instanceof Error ? err.message : String(err);
          if (code === grpc.status.INTERNAL)
            deps.logger.error({ err, peer: call.getPeer() }, 'ca: CreateCertificate failed');
          else
            deps.logger.info(
              { code: grpc.status[code], reason: message, peer: call.getPeer() },
              'ca: request refused',
            );
          callback({ code, details: code === grpc.status.INTERNAL ? 'internal CA error' : message });
        },
      );
    },
  };
}

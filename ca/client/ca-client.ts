// gRPC client for istio.v1.auth.IstioCertificateService, as istio/ztunnel src/identity/caclient.rs
// talks to istiod: TLS to the CA verified against the mesh root (server name istiod.istio-system.svc,
// ALT_CA_HOSTNAME in Istio), `authorization: Bearer <token>` re-read on every request (kubelet
// rotates the projected token), `clusterid` header, ImpersonatedIdentity in metadata.
import * as grpc from '@grpc/grpc-js';
import { CaError } from '../errors.js';
import {
  CREATE_CERTIFICATE_METHOD,
  decodeCertificateResponse,
  encodeCertificateRequest,
} from './ca-messages.js';

export interface CaClientOptions {
  /** host:port of the CA (istiod.istio-system.svc:15012 in Kubernetes). */
  address: string;
  /** PEM roots that signed the CA's serving certificate; re-read per request, channel rebuilt on change. */
  rootsPem: () => string | Promise<string>;
  /** Name to verify in the serving cert. Default istiod.istio-system.svc. */
  serverName?: string;
  /** Bearer token source, called on every request. */
  token: () => string | undefined | Promise<string | undefined>;
  /** `clusterid` header. Default Kubernetes (istio ISTIO_META_CLUSTER_ID). */
  clusterId?: string;
  /** Per-request deadline. Default 10 s. */
  requestTimeoutMs?: number;
}

/** The CA refused or could not be reached; `grpcCode` says which (UNAVAILABLE means retry later). */
export class CaRequestFailed extends CaError {
  constructor(
    readonly grpcCode: grpc.status,
    message: string,
  ) {
    super('CERTIFICATE_UNAVAILABLE', `CA request failed (${grpc.status[grpcCode] ?? grpcCode}): ${message}`);
    this.name = 'CaRequestFailed';
  }
}

/** What the certificate manager needs from a CA: sign this CSR for this identity. */
export interface CertificateSource {
  createCertificate(csrPem: string, ttlSeconds: number, impersonatedIdentity?: string): Promise<string[]>;
}

export class CaClient implements CertificateSource {
  private client: grpc.Client | undefined;
  private clientRoots: string | undefined;

  constructor(private readonly opts: CaClientOptions) {}

  private async channel(): Promise<grpc.Client> {
    const roots = await this.opts.rootsPem();
    if (this.client && roots === this.clientRoots) return this.client;
    this.client?.close();
    const serverName = this.opts.serverName ?? 'istiod.istio-system.svc';
    this.client = new grpc.Client(this.opts.address, grpc.credentials.createSsl(Buffer.from(roots)), {
      'grpc.ssl_target_name_override': serverName,
      'grpc.default_authority': serverName,
    });
    this.clientRoots = roots;
    return this.client;
  }

  async createCertificate(
    csrPem: string,
    ttlSeconds: number,
    impersonatedIdentity?: string,
  ): Promise<string[]> {
    const client = await this.channel();
    const md = new grpc.Metadata();
    const token = await this.opts.token();
    if (token) md.set('authorization', `Bearer ${token}`);
    md.set('clusterid', this.opts.clusterId ?? 'Kubernetes');
    const request = encodeCertificateRequest({
      csrPem,
      validitySeconds: Math.round(ttlSeconds),
      ...(impersonatedIdentity ? { impersonatedIdentity } : {}),
    });
    const deadline = new Date(Date.now() + (this.opts.requestTimeoutMs ?? 10_000));
    // A generic unary call with the hand-coded messages (ca-messages.ts): grpc-js reports a response
    // that fails to decode as INTERNAL, which fails the request like any other CA error.
    return new Promise<string[]>((resolve, reject) => {
      client.makeUnaryRequest(
        CREATE_CERTIFICATE_METHOD,
        (req: Buffer) => req,
        decodeCertificateResponse,
        request,
        md,
        { deadline },
        (err, chain) => {
          if (err) reject(new CaRequestFailed(err.code, err.details || err.message));
          else if (!chain) reject(new CaRequestFailed(grpc.status.INTERNAL, 'empty response'));
          else resolve(chain);
        },
      );
    });
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }
}

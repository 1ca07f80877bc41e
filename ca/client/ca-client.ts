// gRPC client for istio.v1.auth.IstioCertificateService, as istio/ztunnel src/identity/caclient.rs
// talks to istiod: TLS to the CA verified against the mesh root (server name istiod.istio-system.svc,
// ALT_CA_HOSTNAME in Istio), `authorization: Bearer <token>` re-read on every request (kubelet
// rotates the projected token), `clusterid` header, ImpersonatedIdentity in metadata.
import * as grpc from '@grpc/grpc-js';
import { CaError } from '../errors.js';
import {
  type IstioCertificateRequest,
  type IstioCertificateResponse,
  caClientConstructor,
} from '../proto.js';

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

type RawClient = grpc.Client & {
  CreateCertificate(
    req: IstioCertificateRequest,
    md: grpc.Metadata,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: IstioCertificateResponse) => void,
  ): grpc.ClientUnaryCall;
};

export class CaClient implements CertificateSource {
  private client: RawClient | undefined;
  private clientRoots: string | undefined;

  constructor(private readonly opts: CaClientOptions) {}

  private async channel(): Promise<RawClient> {
    const roots = await this.opts.rootsPem();
    if (this.client && roots === this.clientRoots) return this.client;
    this.client?.close();
    const Ctor = caClientConstructor();
    const serverName = this.opts.serverName ?? 'istiod.istio-system.svc';
    this.client = new Ctor(this.opts.address, grpc.credentials.createSsl(Buffer.from(roots)), {
      'grpc.ssl_target_name_override': serverName,
      'grpc.default_authority': serverName,
    }) as unknown as RawClient;
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
    const req: IstioCertificateRequest = { csr: csrPem, validity_duration: String(Math.round(ttlSeconds)) };
    if (impersonatedIdentity)
      req.metadata = { fields: { ImpersonatedIdentity: { stringValue: impersonatedIdentity } } };
    const deadline = new Date(Date.now() + (this.opts.requestTimeoutMs ?? 10_000));
    const res = await new Promise<IstioCertificateResponse>((resolve, reject) => {
      client.CreateCertificate(req, md, { deadline }, (err, r) => {
        if (err) reject(new CaRequestFailed(err.code, err.details || err.message));
        else if (!r) reject(new CaRequestFailed(grpc.status.INTERNAL, 'empty response'));
        else resolve(r);
      });
    });
    return res.cert_chain;
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }
}

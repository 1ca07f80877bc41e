// gRPC client for istio.v1.auth.IstioCertificateService, as istio/ztunnel src/identity/caclient.rs
// talks to istiod: TLS to the CA verified against the mesh root (server name istiod.istio-system.svc,
// ALT_CA_HOSTNAME in Istio), `authorization: Bearer <token>` re-read on every request (kubelet
// rotates the projected token), `clusterid` header, ImpersonatedIdentity in metadata.
//
// One unary call over node:http2 (gRPC over HTTP/2, grpc/doc/PROTOCOL-HTTP2.md) rather than through
// @grpc/grpc-js: the node proxy makes one CSR per identity a day, and grpc-js (~690 KB of modules,
// +1.5 MB heap and +3.5 MB private RSS measured) was the largest part of an idle ztunnel's module
// graph. The CA server keeps grpc-js; test/ca-grpc.test.ts and test/ca-client.test.ts run this client
// against it (status codes, deadlines, a CA that goes away and comes back).
import * as http2 from 'node:http2';
import { CaError } from '../errors.js';
import {
  CREATE_CERTIFICATE_METHOD,
  decodeCertificateResponse,
  encodeCertificateRequest,
} from './ca-messages.js';

/** gRPC status codes (grpc/doc/statuscodes.md), the values of @grpc/grpc-js's `status`. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const STATUS_NAMES = new Map<number, string>(Object.entries(GrpcStatus).map(([name, code]) => [code, name]));

/** grpc/doc/http-grpc-status-mapping.md: a response that is not gRPC, by its HTTP status. */
function statusOfHttp(httpStatus: number): number {
  if (httpStatus === 400) return GrpcStatus.INTERNAL;
  if (httpStatus === 401) return GrpcStatus.UNAUTHENTICATED;
  if (httpStatus === 403) return GrpcStatus.PERMISSION_DENIED;
  if (httpStatus === 404) return GrpcStatus.UNIMPLEMENTED;
  if ([429, 502, 503, 504].includes(httpStatus)) return GrpcStatus.UNAVAILABLE;
  return GrpcStatus.UNKNOWN;
}

/** Largest response accepted (grpc-js's default receive limit). */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

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
  /**
   * Close the HTTP/2 connection after this long without a request. Default 60 s: a node proxy asks
   * about once per identity per 12 h, so holding a TLS session to the CA in between only costs memory.
   */
  idleCloseMs?: number;
}

/** The CA refused or could not be reached; `grpcCode` says which (UNAVAILABLE means retry later). */
export class CaRequestFailed extends CaError {
  constructor(
    /** A gRPC status code (GrpcStatus). */
    readonly grpcCode: number,
    message: string,
  ) {
    super(
      'CERTIFICATE_UNAVAILABLE',
      `CA request failed (${STATUS_NAMES.get(grpcCode) ?? grpcCode}): ${message}`,
    );
    this.name = 'CaRequestFailed';
  }
}

/** What the certificate manager needs from a CA: sign this CSR for this identity. */
export interface CertificateSource {
  createCertificate(csrPem: string, ttlSeconds: number, impersonatedIdentity?: string): Promise<string[]>;
}

/** One gRPC message on the wire: compressed flag 0, 4-byte big-endian length, the message. */
function grpcFrame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** The one message of a unary response body, or why there is not exactly one. */
function unaryMessage(body: Buffer): Buffer {
  if (body.length < 5)
    throw new Error(body.length === 0 ? 'no response message' : 'truncated message header');
  if (body[0] !== 0) throw new Error('compressed response (no grpc-accept-encoding was offered)');
  const length = body.readUInt32BE(1);
  if (length !== body.length - 5)
    throw new Error(`message of ${length} bytes in a body of ${body.length - 5}`);
  return body.subarray(5);
}

function header(headers: http2.IncomingHttpHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  return Array.isArray(v) ? v[0] : v;
}

function grpcMessage(raw: string | undefined): string {
  if (!raw) return '';
  try {
    return decodeURIComponent(raw); // grpc-message is percent-encoded
  } catch {
    return raw;
  }
}

export class CaClient implements CertificateSource {
  private session: http2.ClientHttp2Session | undefined;
  private sessionRoots: string | undefined;
  private inFlight = 0;
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: CaClientOptions) {}

  private get serverName(): string {
    return this.opts.serverName ?? 'istiod.istio-system.svc';
  }

  /** The HTTP/2 connection to the CA; a new one when the roots changed or the last one closed. */
  private async connection(): Promise<http2.ClientHttp2Session> {
    const roots = await this.opts.rootsPem();
    const s = this.session;
    if (s && !s.closed && !s.destroyed && roots === this.sessionRoots) return s;
    this.closeSession();
    // The CA's serving certificate is verified against the roots and against serverName (sent as
    // SNI too), as grpc-js's ssl_target_name_override did; the address may be a bare IP.
    const session = http2.connect(`https://${this.opts.address}`, { ca: roots, servername: this.serverName });
    // Failures reach the caller through its stream; the session only has to stop being reused.
    const forget = () => {
      if (this.session === session) this.session = undefined;
    };
    session.on('error', forget);
    session.on('goaway', forget);
    session.on('close', forget);
    // The request's deadline timer keeps the process alive while a call is in flight, not the socket.
    session.unref();
    this.session = session;
    this.sessionRoots = roots;
    return session;
  }

  private closeSession(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    const s = this.session;
    this.session = undefined;
    if (s && !s.destroyed) s.close();
  }

  async createCertificate(
    csrPem: string,
    ttlSeconds: number,
    impersonatedIdentity?: string,
  ): Promise<string[]> {
    const message = encodeCertificateRequest({
      csrPem,
      validitySeconds: Math.round(ttlSeconds),
      ...(impersonatedIdentity ? { impersonatedIdentity } : {}),
    });
    const token = await this.opts.token();
    const timeoutMs = this.opts.requestTimeoutMs ?? 10_000;
    clearTimeout(this.idleTimer);
    this.inFlight++;
    try {
      const session = await this.connection();
      const body = await this.unary(session, message, token, timeoutMs);
      try {
        return decodeCertificateResponse(unaryMessage(body));
      } catch (err) {
        throw new CaRequestFailed(GrpcStatus.INTERNAL, `bad response: ${(err as Error).message}`);
      }
    } finally {
      if (--this.inFlight === 0 && this.session) {
        this.idleTimer = setTimeout(() => this.closeSession(), this.opts.idleCloseMs ?? 60_000);
        this.idleTimer.unref();
      }
    }
  }

  /** One unary call: the response body on grpc-status 0, CaRequestFailed otherwise. */
  private unary(
    session: http2.ClientHttp2Session,
    message: Buffer,
    token: string | undefined,
    timeoutMs: number,
  ): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const fail = (code: number, why: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new CaRequestFailed(code, why));
      };
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request({
          ':method': 'POST',
          ':path': CREATE_CERTIFICATE_METHOD,
          ':authority': this.serverName,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${timeoutMs}m`,
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          clusterid: this.opts.clusterId ?? 'Kubernetes',
        });
      } catch (err) {
        fail(GrpcStatus.UNAVAILABLE, (err as Error).message);
        return;
      }
      timer = setTimeout(() => {
        fail(GrpcStatus.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`);
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }, timeoutMs);
      let responseHeaders: http2.IncomingHttpHeaders | undefined;
      let trailers: http2.IncomingHttpHeaders | undefined;
      const chunks: Buffer[] = [];
      let received = 0;
      stream.on('response', (h) => {
        responseHeaders = h;
      });
      stream.on('trailers', (t) => {
        trailers = t;
      });
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > MAX_RESPONSE_BYTES) {
          fail(GrpcStatus.RESOURCE_EXHAUSTED, `response larger than ${MAX_RESPONSE_BYTES} bytes`);
          stream.close(http2.constants.NGHTTP2_CANCEL);
          return;
        }
        chunks.push(chunk);
      });
      stream.on('error', (err) => fail(GrpcStatus.UNAVAILABLE, err.message));
      stream.on('close', () => {
        if (settled) return;
        if (!responseHeaders) {
          fail(GrpcStatus.UNAVAILABLE, `stream closed before a response (HTTP/2 code ${stream.rstCode})`);
          return;
        }
        const httpStatus = Number(responseHeaders[':status']);
        // A trailers-only response carries grpc-status in its one HEADERS frame.
        const status = header(trailers, 'grpc-status') ?? header(responseHeaders, 'grpc-status');
        const text = grpcMessage(header(trailers, 'grpc-message') ?? header(responseHeaders, 'grpc-message'));
        if (httpStatus !== 200) {
          fail(statusOfHttp(httpStatus), text || `HTTP status ${httpStatus}`);
        } else if (status === undefined) {
          fail(GrpcStatus.INTERNAL, 'response without grpc-status');
        } else if (status !== '0') {
          const code = Number(status);
          fail(Number.isInteger(code) ? code : GrpcStatus.UNKNOWN, text || `grpc-status ${status}`);
        } else {
          settled = true;
          clearTimeout(timer);
          resolve(Buffer.concat(chunks));
        }
      });
      stream.end(grpcFrame(message));
    });
  }

  close(): void {
    this.closeSession();
  }
}

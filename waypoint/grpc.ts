// gRPC specifics at the waypoint. A gRPC call is an HTTP/2 POST to `/<package>.<Service>/<Method>` with
// content-type application/grpc (grpc/grpc doc/PROTOCOL-HTTP2.md). Local replies (policy denial, no upstream,
// timeout) to a gRPC client are "trailers-only" responses — HTTP 200 with grpc-status in the only HEADERS
// frame — because gRPC clients read the status from there; Envoy maps its HTTP status with
// Grpc::Utility::httpToGrpcStatus (403 → PERMISSION_DENIED 7, 503/504 → UNAVAILABLE 14, ...).
import type { IncomingHttpHeaders } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import { resetStream } from './stream-reset.js';

export const GRPC_STATUS = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

export function isGrpc(headers: IncomingHttpHeaders): boolean {
  const ct = headers['content-type'];
  return typeof ct === 'string' && ct.startsWith('application/grpc');
}

/** Envoy source/common/grpc/status.cc httpToGrpcStatus. */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return GRPC_STATUS.INTERNAL;
    case 401:
      return GRPC_STATUS.UNAUTHENTICATED;
    case 403:
      return GRPC_STATUS.PERMISSION_DENIED;
    case 404:
      return GRPC_STATUS.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC_STATUS.UNAVAILABLE;
    default:
      return GRPC_STATUS.UNKNOWN;
  }
}

/** gRPC PROTOCOL-HTTP2: grpc-message percent-encodes bytes outside 0x20-0x7E, and '%' itself. */
export function grpcMessage(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((b) =>
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('');
}

/** A trailers-only gRPC response: status and message in the one and only HEADERS frame (END_STREAM). */
export function sendGrpcLocalReply(res: Http2ServerResponse, grpcStatus: number, message: string): void {
  const stream = res.stream;
  if (stream.destroyed || stream.headersSent) {
    resetStream(stream, 0x2 /* INTERNAL_ERROR */);
    return;
  }
  stream.respond(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(grpcStatus),
      'grpc-message': grpcMessage(message),
    },
    { endStream: true },
  );
}

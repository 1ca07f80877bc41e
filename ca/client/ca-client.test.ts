// CaClient's gRPC-over-HTTP/2 edges against a real TLS HTTP/2 server on loopback (the happy path and
// the CA's own refusals run against the real CA in test/ca-grpc.test.ts and test/ca-client.test.ts).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caServiceDefinition } from '../proto.js';
import { CaClient, CaRequestFailed, GrpcStatus } from './ca-client.js';

const SERVER_NAME = 'istiod.istio-system.svc';
const method = caServiceDefinition().CreateCertificate!;

let dir: string;
let cert: string;
let key: string;
let server: http2.Http2SecureServer;
let address: string;
let handler: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, body: Buffer) => void;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ca-client-test-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=istiod',
      '-addext',
      `subjectAltName=DNS:${SERVER_NAME}`,
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
  key = readFileSync(join(dir, 'key.pem'), 'utf8');
  server = http2.createSecureServer({ cert, key });
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => handler(stream, headers, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

const client = (extra: Partial<ConstructorParameters<typeof CaClient>[0]> = {}) =>
  new CaClient({ address, rootsPem: () => cert, token: () => 'tok-1', clusterId: 'c1', ...extra });

async function refusal(p: Promise<unknown>): Promise<CaRequestFailed> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CaRequestFailed);
  return err as CaRequestFailed;
}

function answer(stream: http2.ServerHttp2Stream, message: Buffer): void {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.end(Buffer.concat([prefix, message]));
}

describe('CaClient over HTTP/2', () => {
  it('sends a gRPC unary request with the token, cluster id, authority and deadline; returns the chain', async () => {
    let seen: { headers: http2.IncomingHttpHeaders; request: unknown } | undefined;
    handler = (stream, headers, body) => {
      seen = { headers, request: method.requestDeserialize(body.subarray(5)) };
      answer(stream, method.responseSerialize({ cert_chain: ['leaf', 'root'] }));
    };
    const c = client();
    try {
      expect(await c.createCertificate('CSR', 3600, 'spiffe://cluster.local/ns/a/sa/b')).toEqual([
        'leaf',
        'root',
      ]);
    } finally {
      c.close();
    }
    expect(seen?.headers).toMatchObject({
      ':method': 'POST',
      ':path': '/istio.v1.auth.IstioCertificateService/CreateCertificate',
      ':authority': SERVER_NAME,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '10000m',
      authorization: 'Bearer tok-1',
      clusterid: 'c1',
    });
    expect(seen?.request).toMatchObject({ csr: 'CSR', validity_duration: '3600' });
  });

  it('reports the status and percent-decoded message of a trailers-only refusal', async () => {
    handler = (stream) =>
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': '7',
          'grpc-message': 'not%20yours%3A%20b',
        },
        { endStream: true },
      );
    const c = client();
    const err = await refusal(c.createCertificate('CSR', 60));
    c.close();
    expect(err.grpcCode).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(err.message).toBe('CA request failed (PERMISSION_DENIED): not yours: b');
  });

  it('maps a non-gRPC HTTP 503 to UNAVAILABLE and a malformed body to INTERNAL', async () => {
    handler = (stream) => {
      stream.respond({ ':status': 503 });
      stream.end('busy');
    };
    const c = client();
    expect((await refusal(c.createCertificate('CSR', 60))).grpcCode).toBe(GrpcStatus.UNAVAILABLE);
    handler = (stream) => answer(stream, Buffer.from([0x0a, 0x05, 0x61]));
    const bad = await refusal(c.createCertificate('CSR', 60));
    c.close();
    expect(bad.grpcCode).toBe(GrpcStatus.INTERNAL);
    expect(bad.message).toMatch(/bad response: .*truncated/);
  });

  it('gives up with DEADLINE_EXCEEDED when the CA never answers', async () => {
    handler = () => undefined; // the stream stays open, unanswered
    const c = client({ requestTimeoutMs: 300 });
    const err = await refusal(c.createCertificate('CSR', 60));
    c.close();
    expect(err.grpcCode).toBe(GrpcStatus.DEADLINE_EXCEEDED);
  });

  it('refuses a CA whose certificate does not name the expected server (UNAVAILABLE)', async () => {
    handler = (stream) => answer(stream, method.responseSerialize({ cert_chain: ['x'] }));
    const c = client({ serverName: 'evil.example' });
    const err = await refusal(c.createCertificate('CSR', 60));
    c.close();
    expect(err.grpcCode).toBe(GrpcStatus.UNAVAILABLE);
    expect(err.message).toMatch(/evil\.example/);
  });

  it('answers UNAVAILABLE when nothing listens at the address', async () => {
    const probe = http2.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const c = client({ address: `127.0.0.1:${port}` });
    const err = await refusal(c.createCertificate('CSR', 60));
    c.close();
    expect(err.grpcCode).toBe(GrpcStatus.UNAVAILABLE);
  });
});

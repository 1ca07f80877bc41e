// Loads Istio's CA service definition (proto/ca.proto) at run time. The .proto files are not copied
// into dist/, so the path is resolved by walking up from this module to the repository root — it
// works both from sources (ca/proto.ts under vitest) and from the build (dist/ca/proto.js).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const CA_SERVICE_NAME = 'istio.v1.auth.IstioCertificateService';
export const CREATE_CERTIFICATE_PATH = `/${CA_SERVICE_NAME}/CreateCertificate`;

export function caProtoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'proto', 'ca.proto');
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`proto/ca.proto not found above ${fileURLToPath(import.meta.url)}`);
}

/** Wire shapes as @grpc/proto-loader decodes them (keepCase, longs as strings, oneofs). */
export interface ProtoValue {
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  kind?: string;
}
export interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}
export interface IstioCertificateRequest {
  csr: string;
  validity_duration: string | number;
  metadata?: ProtoStruct | null;
}
export interface IstioCertificateResponse {
  cert_chain: string[];
}

let cached: grpc.ServiceDefinition | undefined;

export function caServiceDefinition(): grpc.ServiceDefinition {
  if (cached) return cached;
  const def = protoLoader.loadSync(caProtoPath(), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
  };
  cached = pkg.istio.v1.auth.IstioCertificateService.service;
  return cached;
}

/** A client constructor for IstioCertificateService. */
export function caClientConstructor(): grpc.ServiceClientConstructor {
  return grpc.makeGenericClientConstructor(caServiceDefinition(), 'IstioCertificateService');
}

// The seed's gRPC example service (test/waypoint-product.proto), loaded with @grpc/proto-loader.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The .proto sits in test/ of the repo; from dist/test/ it is two levels further up. */
function protoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    for (const candidate of [
      join(dir, 'waypoint-product.proto'),
      join(dir, 'test', 'waypoint-product.proto'),
    ]) {
      if (existsSync(candidate)) return candidate;
    }
    dir = dirname(dir);
  }
  throw new Error('test/waypoint-product.proto not found');
}

export function loadProductService(): grpc.ServiceClientConstructor {
  const def = protoLoader.loadSync(protoPath(), { keepCase: false, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    shop: { v1: { ProductService: grpc.ServiceClientConstructor } };
  };
  return pkg.shop.v1.ProductService;
}

export type ProductClient = grpc.Client & {
  getProduct(
    req: { id: string },
    cb: (err: grpc.ServiceError | null, res?: { id: string; name: string; servedBy: string }) => void,
  ): void;
  deleteProduct(req: { id: string }, cb: (err: grpc.ServiceError | null, res?: unknown) => void): void;
};

// Sample gRPC app for `ambit demo`: service demo.Catalog with unary List and Get, over real HTTP/2
// gRPC (@grpc/grpc-js). Messages are JSON-encoded (a codec choice of the app; the mesh sees gRPC
// framing and the `/demo.Catalog/List` path either way). `node grpc-server.mjs PORT`.
import grpc from '@grpc/grpc-js';

const port = Number(process.argv[2] ?? 9090);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`grpc-server: port ${JSON.stringify(process.argv[2])} is not 1-65535`);
  process.exit(2);
}
const json = {
  serialize: (v) => Buffer.from(JSON.stringify(v)),
  deserialize: (b) => JSON.parse(b.toString() || '{}'),
};
const method = (name) => ({
  path: `/demo.Catalog/${name}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});
export const CatalogService = { List: method('List'), Get: method('Get') };

const items = [
  { id: 1, name: 'espresso', stock: 12 },
  { id: 2, name: 'flat white', stock: 4 },
];
const server = new grpc.Server();
server.addService(CatalogService, {
  List: (_call, cb) => cb(null, { items }),
  Get: (call, cb) => {
    const item = items.find((i) => i.id === call.request.id);
    if (!item) cb({ code: grpc.status.NOT_FOUND, details: `no item ${call.request.id}` });
    else cb(null, item);
  },
});
server.bindAsync(`0.0.0.0:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error(`grpc-server: ${err.message}`);
    process.exit(1);
  }
  console.log(`grpc-server listening on :${port}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));

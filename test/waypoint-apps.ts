// Child process for the waypoint end-to-end tests: an app inside a pod netns.
//   node waypoint-apps.js http PORT VERSION  → HTTP/1.1 JSON echo; /slow?ms=N waits; /fail-once?key=K answers
//                                              503 the first time a key is seen (an injected failure)
//                                              /__seen lists every request target the app received (and
//                                              ?reset=1 clears it): the adversarial tests check what a
//                                              refused request never became; an Upgrade is answered 404
//                                              (recorded too, with any bytes that follow it)
//   node waypoint-apps.js grpc PORT POD      → shop.v1.ProductService (GetProduct, DeleteProduct)
// Sends IPC {ready} once listening; exits when the parent goes away.
import * as http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { loadProductService } from './waypoint-proto.js';

const [kind, portText, label = 'v1'] = process.argv.slice(2);
const port = Number(portText);
if ((kind !== 'http' && kind !== 'grpc') || !Number.isInteger(port)) {
  console.error('usage: waypoint-apps http|grpc PORT LABEL');
  process.exit(2);
}

if (kind === 'http') {
  const seen = new Set<string>();
  const received: string[] = [];
  const server = http.createServer((req, res) => {
    if (req.url?.startsWith('/__seen')) {
      const list = [...received];
      if (req.url.includes('reset=1')) received.length = 0;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(list));
      return;
    }
    received.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://app');
      const reply = (): void => {
        res.writeHead(200, { 'content-type': 'application/json', 'x-app-version': label });
        res.end(
          JSON.stringify({
            version: label,
            method: req.method,
            path: req.url,
            headers: req.headers,
            peer: req.socket.remoteAddress,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      };
      if (url.pathname === '/fail-once') {
        const key = url.searchParams.get('key') ?? '';
        if (!seen.has(key)) {
          seen.add(key);
          res.writeHead(503, { 'content-type': 'text/plain' });
          res.end('injected failure');
          return;
        }
      }
      if (url.pathname === '/slow') {
        setTimeout(reply, Math.min(Number(url.searchParams.get('ms') ?? '1000'), 30_000));
        return;
      }
      reply();
    });
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: import('node:net').Socket, head: Buffer) => {
    received.push(`UPGRADE ${req.method} ${req.url} ${head.toString('latin1')}`);
    socket.on('data', (c: Buffer) => received.push(`RAW ${c.toString('latin1')}`));
    socket.write('HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 8\r\n\r\nno such\n');
    setTimeout(() => socket.end(), 300);
  });
  server.listen(port, '0.0.0.0', () => process.send?.({ ready: port }));
} else {
  const ProductService = loadProductService();
  const g = new grpc.Server();
  g.addService(ProductService.service, {
    getProduct: (call: grpc.ServerUnaryCall<{ id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { id: call.request.id, name: `product ${call.request.id}`, servedBy: label }),
    deleteProduct: (call: grpc.ServerUnaryCall<{ id: string }, unknown>, cb: grpc.sendUnaryData<unknown>) =>
      cb(null, { id: call.request.id, name: 'deleted', servedBy: label }),
  });
  g.bindAsync(`0.0.0.0:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) {
      console.error(err.message);
      process.exit(1);
    }
    process.send?.({ ready: port });
  });
}
process.on('disconnect', () => process.exit(0));

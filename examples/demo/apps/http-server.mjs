// Sample HTTP app for `ambit demo`, run inside a pod's network namespace: `node http-server.mjs PORT`.
// It knows nothing about the mesh: it answers every request with a small JSON body naming who it saw as
// the client (with ambient capture the TCP peer is still the real client pod IP, Istio's behaviour).
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? 8080);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`http-server: port ${JSON.stringify(process.argv[2])} is not 1-65535`);
  process.exit(2);
}
const server = createServer((req, res) => {
  const body = JSON.stringify({
    app: process.env.POD_NAME ?? 'http-server',
    method: req.method,
    path: req.url,
    peer: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
  });
  res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'application/json' });
  res.end(`${body}\n`);
});
server.listen(port, '0.0.0.0', () => console.log(`http-server listening on :${port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));

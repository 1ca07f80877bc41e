// Child process: a stand-in for ztunnel's capture listeners, so capture tests do not depend on the
// real ztunnel. Runs in a node netns; listens on 15001/15006/15008 (or the ports given) with
// IP_TRANSPARENT (ztunnel/native), so an accepted socket's localAddress:localPort IS the original
// destination and remoteAddress the real client; relays each connection to that original destination
// as plain TCP and reports {accepted: {port, src, dst}} over IPC. The proof a connection went through
// the proxy: the server sees the node as its peer, and the relay reports the pod and the destination.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { setIpTransparent } from '../../ztunnel/native/index.js';

const ports = (process.argv.slice(2).length ? process.argv.slice(2) : ['15001', '15006', '15008']).map((p) =>
  Number.parseInt(p, 10),
);
const servers: Server[] = [];
const sockets = new Set<Socket>();

function track(s: Socket): void {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
}

function relay(port: number, client: Socket): void {
  track(client);
  const dst = `${client.localAddress}:${client.localPort}`;
  const src = `${client.remoteAddress}:${client.remotePort}`;
  process.send?.({ accepted: { port, src, dst } });
  const upstream = connect({ host: client.localAddress ?? '', port: client.localPort ?? 0 });
  track(upstream);
  upstream.setTimeout(5000, () => upstream.destroy(new Error('upstream connect timeout')));
  upstream.once('connect', () => {
    upstream.setTimeout(0);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  client.on('close', () => upstream.destroy());
}

let ready = 0;
for (const port of ports) {
  const server = createServer((s) => relay(port, s));
  servers.push(server);
  server.on('error', (err) => {
    console.error(`relay: port ${port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(port, '0.0.0.0', () => {
    // After listen() is enough: the flag is checked when a SYN for a non-local address arrives.
    setIpTransparent(server);
    ready++;
    if (ready === ports.length) process.send?.({ ready: ports });
  });
}

process.on('message', (msg: { op?: string }) => {
  if (msg.op === 'stop') {
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));

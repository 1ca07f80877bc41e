// Child process: a line-echo TCP server for network tests. `node echo-server.js PORT...` listens on
// 0.0.0.0:PORT; each received line is echoed back, except `whoami`, answered with
// `peer <ip>:<port> local <ip>:<port>` — how a test sees whether a connection came direct from the
// pod (peer = pod IP) or through a proxy. Reports {ready: ports} over IPC once listening.
import { createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

const ports = process.argv.slice(2).map((p) => Number.parseInt(p, 10));
if (ports.length === 0 || ports.some((p) => !Number.isInteger(p) || p <= 0 || p > 65535)) {
  console.error(`echo-server: bad ports ${JSON.stringify(process.argv.slice(2))}`);
  process.exit(2);
}

const sockets = new Set<Socket>();
function serve(socket: Socket): void {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  socket.on('error', () => socket.destroy());
  const lines = createInterface({ input: socket });
  lines.on('line', (line) => {
    if (line === 'whoami') {
      socket.write(
        `peer ${socket.remoteAddress}:${socket.remotePort} local ${socket.localAddress}:${socket.localPort}\n`,
      );
    } else {
      socket.write(`${line}\n`);
    }
  });
}

let listening = 0;
for (const port of ports) {
  const server = createServer(serve);
  server.on('error', (err) => {
    console.error(`echo-server: port ${port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(port, '0.0.0.0', () => {
    listening++;
    if (listening === ports.length) process.send?.({ ready: ports });
  });
}
process.on('disconnect', () => process.exit(0));

// The tunnel as a plain byte Duplex for Node's HTTP/1.1 server. Handing the server the HTTP/2 CONNECT
// stream itself corrupts responses: the server corks and writes its head as latin1 strings, and the
// Http2Stream's writev path (Node 20) garbles the first string chunk. Writes here always reach the tunnel
// as one Buffer; reads, half-close and teardown are forwarded both ways.
import { Duplex } from 'node:stream';

export function tunnelSocket(tunnel: Duplex): Duplex {
  const sock = new Duplex({
    allowHalfOpen: true,
    read() {
      tunnel.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      tunnel.write(chunk, cb);
    },
    writev(chunks, cb) {
      tunnel.write(Buffer.concat(chunks.map((c) => c.chunk as Buffer)), cb);
    },
    final(cb) {
      tunnel.end();
      cb();
    },
    destroy(err, cb) {
      tunnel.destroy();
      cb(err);
    },
  });
  tunnel.on('data', (c: Buffer) => {
    if (!sock.push(c)) tunnel.pause();
  });
  tunnel.once('end', () => sock.push(null));
  tunnel.once('error', (err) => sock.destroy(err));
  tunnel.once('close', () => {
    if (!sock.destroyed) sock.destroy();
  });
  return sock;
}

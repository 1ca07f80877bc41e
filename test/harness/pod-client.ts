// Child process: an unmodified TCP client living in a pod netns, driven over IPC by a test
// (test/harness/processes.ts). It holds connections open across test steps so a test can check that
// a connection opened before a change keeps working after it.
import { connect, type Socket } from 'node:net';
import { createInterface, type Interface } from 'node:readline';

type Request =
  | { id: number; op: 'connect'; host: string; port: number; timeoutMs: number; localAddress?: string }
  | { id: number; op: 'send'; conn: number; line: string; timeoutMs: number }
  | { id: number; op: 'close'; conn: number };

interface Conn {
  socket: Socket;
  lines: Interface;
  waiting: ((line: string | Error) => void)[];
}

const conns = new Map<number, Conn>();
let nextConn = 1;

function reply(msg: Record<string, unknown>): void {
  process.send?.(msg);
}

function onConnect(req: Extract<Request, { op: 'connect' }>): void {
  const socket = connect({ host: req.host, port: req.port, localAddress: req.localAddress });
  const timer = setTimeout(() => {
    socket.destroy();
    reply({ id: req.id, ok: false, error: 'ETIMEDOUT' });
  }, req.timeoutMs);
  socket.once('error', (err: NodeJS.ErrnoException) => {
    clearTimeout(timer);
    reply({ id: req.id, ok: false, error: err.code ?? err.message });
  });
  socket.once('connect', () => {
    clearTimeout(timer);
    const id = nextConn++;
    const conn: Conn = { socket, lines: createInterface({ input: socket }), waiting: [] };
    conn.lines.on('line', (line) => conn.waiting.shift()?.(line));
    // readline re-emits the socket's 'error' (e.g. ECONNRESET from a refusing proxy); unhandled, it kills the client.
    conn.lines.on('error', () => undefined);
    socket.on('error', (err) => {
      for (const w of conn.waiting.splice(0)) w(err);
    });
    socket.on('close', () => {
      for (const w of conn.waiting.splice(0)) w(new Error('ECONNCLOSED'));
    });
    conns.set(id, conn);
    reply({
      id: req.id,
      ok: true,
      conn: id,
      local: `${socket.localAddress}:${socket.localPort}`,
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
    });
  });
}

function onSend(req: Extract<Request, { op: 'send' }>): void {
  const conn = conns.get(req.conn);
  if (!conn || conn.socket.destroyed) {
    reply({ id: req.id, ok: false, error: 'ENOTCONN' });
    return;
  }
  const timer = setTimeout(() => {
    const i = conn.waiting.indexOf(done);
    if (i >= 0) conn.waiting.splice(i, 1);
    reply({ id: req.id, ok: false, error: 'ETIMEDOUT' });
  }, req.timeoutMs);
  function done(line: string | Error): void {
    clearTimeout(timer);
    if (line instanceof Error)
      reply({ id: req.id, ok: false, error: (line as NodeJS.ErrnoException).code ?? line.message });
    else reply({ id: req.id, ok: true, line });
  }
  conn.waiting.push(done);
  conn.socket.write(`${req.line}\n`);
}

process.on('message', (req: Request) => {
  if (req.op === 'connect') onConnect(req);
  else if (req.op === 'send') onSend(req);
  else if (req.op === 'close') {
    conns.get(req.conn)?.socket.destroy();
    conns.delete(req.conn);
    reply({ id: req.id, ok: true });
  }
});
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: true });

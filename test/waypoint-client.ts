// Child process for the waypoint end-to-end tests: real clients inside a pod netns, driven over IPC.
// Its connections to service VIPs are captured into the node's ztunnel like any app's.
//   {id, op:'http', url, method?, headers?, count?, concurrency?} → {statuses, versions, first}
//   {id, op:'grpc', target, rpc:'getProduct'|'deleteProduct', productId} → {ok, res} | {code, details}
//   {id, op:'raw', host, port, data, waitMs} → {text, closed}
//   {id, op:'slowloris', host, port, intervalMs, maxMs} → {text, closed, elapsedMs}
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { Agent, request } from 'undici';
import { type ProductClient, loadProductService } from './waypoint-proto.js';

type Msg = Record<string, unknown> & { id: number; op: string };

const agent = new Agent({ connections: 16, keepAliveTimeout: 10_000 });

async function httpOp(m: Msg): Promise<unknown> {
  const count = Number(m.count ?? 1);
  const concurrency = Number(m.concurrency ?? 1);
  const statuses: Record<string, number> = {};
  const versions: Record<string, number> = {};
  let first: unknown;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      try {
        const r = await request(String(m.url), {
          method: (m.method as 'GET') ?? 'GET',
          headers: (m.headers as Record<string, string>) ?? {},
          dispatcher: agent,
          headersTimeout: 15_000,
          bodyTimeout: 15_000,
        });
        const text = await r.body.text();
        statuses[r.statusCode] = (statuses[r.statusCode] ?? 0) + 1;
        const v = r.headers['x-app-version'];
        if (typeof v === 'string') versions[v] = (versions[v] ?? 0) + 1;
        first ??= { status: r.statusCode, body: text, headers: r.headers };
      } catch (err) {
        const k = `error:${(err as Error).message}`;
        statuses[k] = (statuses[k] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { statuses, versions, first };
}

const grpcClients = new Map<string, ProductClient>();
async function grpcOp(m: Msg): Promise<unknown> {
  const target = String(m.target);
  let c = grpcClients.get(target);
  if (!c) {
    const ProductService = loadProductService();
    c = new ProductService(target, grpc.credentials.createInsecure()) as unknown as ProductClient;
    grpcClients.set(target, c);
  }
  const client = c;
  const rpc = m.rpc === 'deleteProduct' ? 'deleteProduct' : 'getProduct';
  // grpc-js unary stubs take (request, callOptions, callback).
  const call = client[rpc] as unknown as (
    req: unknown,
    opts: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: unknown) => void,
  ) => void;
  return new Promise((resolve) => {
    call.call(client, { id: String(m.productId) }, { deadline: Date.now() + 10_000 }, (err, res) => {
      resolve(err ? { ok: false, code: err.code, details: err.details } : { ok: true, res });
    });
  });
}

function rawOp(m: Msg): Promise<unknown> {
  return new Promise((resolve) => {
    const s = net.connect({ host: String(m.host), port: Number(m.port) });
    const chunks: Buffer[] = [];
    let closed = false;
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const timer = setTimeout(done, Number(m.waitMs ?? 3000));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      closed = true;
      done();
    });
    s.on('connect', () => s.write(String(m.data)));
  });
}

function slowlorisOp(m: Msg): Promise<unknown> {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = net.connect({ host: String(m.host), port: Number(m.port) });
    const chunks: Buffer[] = [];
    let closed = false;
    const done = (): void => {
      clearInterval(trickle);
      clearTimeout(timer);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed, elapsedMs: Date.now() - started });
    };
    const trickle = setInterval(
      () => {
        if (s.writable) s.write(`x-slow-${Date.now()}: y\r\n`);
      },
      Number(m.intervalMs ?? 200),
    );
    const timer = setTimeout(done, Number(m.maxMs ?? 10_000));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      closed = true;
      done();
    });
    s.on('connect', () => s.write('GET /slowloris HTTP/1.1\r\nHost: users\r\n'));
  });
}

/**
 * HTTP/2 abuse: open `streams` requests at once on one connection (more than the server allows), then
 * cancel `resets` streams right after opening each (rapid reset). Reports what the server advertised,
 * how many streams were refused, and whether it answered with GOAWAY and closed the connection.
 */
function h2AbuseOp(m: Msg): Promise<unknown> {
  return new Promise((resolve) => {
    const session = http2.connect(String(m.url));
    let goaway: number | undefined;
    let maxStreams: number | undefined;
    let refused = 0;
    let ok = 0;
    let closedByServer = false;
    const finish = (): void => {
      clearTimeout(timer);
      session.destroy();
      resolve({ maxStreams, refused, ok, goaway, closed: closedByServer });
    };
    const timer = setTimeout(finish, Number(m.maxMs ?? 10_000));
    session.on('error', () => undefined);
    session.on('goaway', (code) => {
      goaway = code;
    });
    session.once('close', () => {
      closedByServer = true;
      finish();
    });
    session.once('remoteSettings', async (settings) => {
      maxStreams = settings.maxConcurrentStreams;
      // Flood: every stream waits on a slow backend, so they stay open together.
      const flood = Array.from({ length: Number(m.streams ?? 0) }, (_, i) => {
        const s = session.request({ ':path': `/slow?ms=500&i=${i}`, ':method': 'GET' });
        return new Promise<void>((r) => {
          s.on('response', (h) => {
            if (h[':status'] === 200) ok++;
          });
          s.on('data', () => undefined);
          s.on('error', () => undefined);
          s.on('close', () => {
            if (s.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) refused++;
            r();
          });
        });
      });
      await Promise.all(flood);
      for (
        let i = 0;
        i < Number(m.resets ?? 0) && goaway === undefined && !session.destroyed && !session.closed;
        i++
      ) {
        const s = session.request({ ':path': `/r${i}`, ':method': 'GET' });
        s.on('error', () => undefined);
        s.close(http2.constants.NGHTTP2_CANCEL);
        if (i % 200 === 199) await new Promise((r) => setImmediate(r));
      }
    });
  });
}

process.on('message', (m: Msg) => {
  const run =
    m.op === 'http'
      ? httpOp
      : m.op === 'grpc'
        ? grpcOp
        : m.op === 'raw'
          ? rawOp
          : m.op === 'h2abuse'
            ? h2AbuseOp
            : slowlorisOp;
  run(m).then(
    (result) => process.send?.({ id: m.id, result }),
    (err: Error) => process.send?.({ id: m.id, error: err.message }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: true });

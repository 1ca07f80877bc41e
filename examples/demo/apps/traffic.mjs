// The demo's traffic generator, run inside a client pod: `node traffic.mjs NAME TARGET...` where a
// TARGET is `http://host[:port]/path` or `grpc://host:port/pkg.Service/Method`. Every target is called
// about once a second, each call on a NEW connection, so every call is one flow the ztunnels report.
// It prints one line per call; the web view does NOT read these lines (its data comes from the
// ztunnels' and the waypoint's admin flow streams).
import { request } from 'node:http';
import grpc from '@grpc/grpc-js';

const [name, ...targets] = process.argv.slice(2);
if (!name || targets.length === 0) {
  console.error(
    'usage: traffic.mjs NAME TARGET... (http://host:port/path | grpc://host:port/pkg.Svc/Method)',
  );
  process.exit(2);
}
const INTERVAL_MS = Number(process.env.TRAFFIC_INTERVAL_MS ?? 1000);
const TIMEOUT_MS = 3000;

const json = {
  serialize: (v) => Buffer.from(JSON.stringify(v)),
  deserialize: (b) => JSON.parse(b.toString() || '{}'),
};

function httpCall(url) {
  return new Promise((resolve) => {
    // agent: false → one TCP connection per request (one flow per call in the view).
    const req = request(
      url,
      { agent: false, timeout: TIMEOUT_MS, headers: { connection: 'close' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(`HTTP ${res.statusCode}`));
        res.on('error', (e) => resolve(`error ${e.message}`));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(`error ${e.code ?? e.message}`));
    req.end();
  });
}

function grpcCall(url) {
  const u = new URL(url);
  const Client = grpc.makeGenericClientConstructor({}, 'Demo');
  const client = new Client(u.host, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      u.pathname,
      json.serialize,
      json.deserialize,
      {},
      new grpc.Metadata(),
      { deadline: Date.now() + TIMEOUT_MS },
      (err) => {
        client.close();
        resolve(err ? `gRPC ${grpc.status[err.code] ?? err.code} ${err.details ?? ''}`.trim() : 'gRPC OK');
      },
    );
  });
}

async function loop(target) {
  const call = target.startsWith('grpc://') ? grpcCall : httpCall;
  for (;;) {
    const result = await call(target);
    console.log(`${new Date().toISOString()} ${name} ${target} ${result}`);
    await new Promise((r) => setTimeout(r, INTERVAL_MS * (0.75 + Math.random() / 2)));
  }
}

for (const t of targets) {
  if (!/^(http|grpc):\/\//.test(t)) {
    console.error(`traffic: target ${JSON.stringify(t)} must start with http:// or grpc://`);
    process.exit(2);
  }
}
for (const t of targets) void loop(t);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));

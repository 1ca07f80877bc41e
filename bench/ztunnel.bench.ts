// ztunnel pair vs direct TCP vs a C mTLS tunnel pair (stunnel4, TLS 1.3, ECDSA P-256), measured side
// by side in one run on the same netns topology (issue 4 "Done when"):
//   ztunnel: pod a1 → (capture) ztunnel a → HBONE/mTLS → ztunnel b → pod b1      (both enrolled)
//   stunnel: pod a3 → stunnel client (node a) → TLS 1.3 mTLS → stunnel server (node b) → pod b2
//   direct:  pod a3 → pod b2                                                      (neither enrolled)
// Scenarios: bulk (iperf3, one stream), 1 KiB request/response p50/p99 at c=1 and c=64, new connections
// per second (one connection per request, c=8), RSS idle and with 1,000 idle tunneled connections.
// Knobs (env): AZT_BENCH_SECONDS (3), AZT_BENCH_ROUNDS (3), AZT_BENCH_BULK_REPEATS (2), AZT_BENCH_IDLE
// (1000), AZT_BENCH_ONLY=bulk,rr,cps,mem; AZT_ZTUNNEL_NODE_ARGS passes node flags to both ztunnels,
// AZT_BENCH_ZTUNNEL_LOGS=DIR keeps their output.
// Load generator and echo server are the same small Node programs for every configuration (this file,
// run as a child with AZT_BENCH_CHILD set), so ratios compare the tunnels. Root only (netns).
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { BenchScenario } from './run.js';

const ECHO_PORT = 7000;
const IPERF_PORT = 5201;
const SECONDS = Number(process.env.AZT_BENCH_SECONDS ?? 3);
const ROUNDS = Number(process.env.AZT_BENCH_ROUNDS ?? 3);
const IDLE_CONNS = Number(process.env.AZT_BENCH_IDLE ?? 1000);
/** Scenarios to run, e.g. AZT_BENCH_ONLY=bulk,mem while tuning one thing (default: all). */
const ONLY = new Set((process.env.AZT_BENCH_ONLY ?? 'bulk,rr,cps,mem').split(',').map((x) => x.trim()));
const BULK_REPEATS = Number(process.env.AZT_BENCH_BULK_REPEATS ?? 2);
const NO_RR = { p50us: Number.NaN, p99us: Number.NaN, rps: Number.NaN };

// ---------------------------------------------------------------------------------------------------
// Child side: echo server and load generators, started inside pod netns by the orchestrator.

type ChildMsg = { ready?: true; result?: unknown; error?: string };

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function connectOnce(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Sends `payload` and resolves when as many bytes came back. */
function roundTrip(s: net.Socket, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (d: Buffer): void => {
      got += d.length;
      if (got >= payload.length) {
        s.off('data', onData);
        s.off('error', reject);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(payload);
  });
}

async function childRr(host: string, port: number, conc: number, ms: number, size: number): Promise<unknown> {
  const payload = Buffer.alloc(size, 0x61);
  const socks = await Promise.all(Array.from({ length: conc }, () => connectOnce(host, port)));
  const lat: number[] = [];
  const warmEnd = Date.now() + 500;
  const end = warmEnd + ms;
  await Promise.all(
    socks.map(async (s) => {
      while (Date.now() < end) {
        const t0 = process.hrtime.bigint();
        await roundTrip(s, payload);
        if (Date.now() > warmEnd) lat.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
    }),
  );
  for (const s of socks) s.destroy();
  lat.sort((a, b) => a - b);
  return {
    requests: lat.length,
    rps: lat.length / (ms / 1000),
    p50us: percentile(lat, 50),
    p99us: percentile(lat, 99),
  };
}

async function childCps(host: string, port: number, conc: number, ms: number): Promise<unknown> {
  const one = Buffer.from('x');
  let done = 0;
  let failed = 0;
  const end = Date.now() + ms;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (Date.now() < end) {
        try {
          const s = await connectOnce(host, port);
          await roundTrip(s, one);
          s.destroy();
          done++;
        } catch {
          failed++;
        }
      }
    }),
  );
  return { connections: done, failed, cps: done / (ms / 1000) };
}

async function childHold(host: string, port: number, n: number): Promise<void> {
  const socks: net.Socket[] = [];
  let failed = 0;
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.allSettled(
      Array.from({ length: Math.min(50, n - i) }, async () => {
        const s = await connectOnce(host, port);
        await roundTrip(s, Buffer.from('x'));
        return s;
      }),
    );
    for (const r of batch) {
      if (r.status === 'fulfilled') socks.push(r.value);
      else failed++;
    }
  }
  process.send?.({ result: { open: socks.length, failed } });
  await new Promise<void>((r) => process.once('message', () => r()));
  for (const s of socks) s.destroy();
}

async function childMain(mode: string, args: string[]): Promise<void> {
  const num = (i: number) => Number(args[i]);
  if (mode === 'echo') {
    const server = net.createServer({ noDelay: true }, (s) => {
      s.on('error', () => s.destroy());
      s.pipe(s);
    });
    server.listen(num(0), '0.0.0.0', () => process.send?.({ ready: true }));
    process.on('disconnect', () => process.exit(0));
    return;
  }
  process.send?.({ ready: true });
  let result: unknown;
  if (mode === 'rr') result = await childRr(args[0]!, num(1), num(2), num(3), num(4));
  else if (mode === 'cps') result = await childCps(args[0]!, num(1), num(2), num(3));
  else if (mode === 'hold') return childHold(args[0]!, num(1), num(2)).then(() => process.exit(0));
  // Exit only once the result is flushed to the parent.
  if (process.send) process.send({ result }, () => process.exit(0));
  else process.exit(0);
}

if (process.env.AZT_BENCH_CHILD) {
  const [mode, ...args] = process.argv.slice(2);
  childMain(mode ?? '', args).catch((err: unknown) => {
    process.send?.({ error: String(err) });
    process.exit(1);
  });
}

// ---------------------------------------------------------------------------------------------------
// Orchestrator.

type Config = 'direct' | 'stunnel' | 'ztunnel';

interface Row {
  config: Config;
  bulkGbps: number;
  rr1: { p50us: number; p99us: number; rps: number };
  rr64: { p50us: number; p99us: number; rps: number };
  cps: number;
  /** Proxy CPU (both proxies of the pair) per unit of work; NaN for direct. */
  cpuSecPerGB: number;
  cpuUsPerRequest64: number;
  cpuUsPerConnection: number;
}

/** utime + stime of the processes, in seconds (/proc/<pid>/stat fields 14 and 15, USER_HZ = 100). */
function cpuSeconds(pids: (number | undefined)[]): number {
  let ticks = 0;
  for (const pid of pids) {
    if (!pid) return Number.NaN;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

function rssKiB(pid: number | undefined): number {
  if (!pid) return Number.NaN;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

async function run(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('ztunnel bench: skipped (needs root for network namespaces)');
    return;
  }
  // The world and harness are compiled next to the bench (dist/test/...).
  const { ZtunnelWorld } = await import('../test/ztunnel-world.js');
  const { waitReady } = await import('../test/harness/processes.js');
  const w = await ZtunnelWorld.create('ebpf');
  const children: ChildProcess[] = [];
  try {
    const t = w.topo;
    // The direct and stunnel client: a known pod outside the mesh (the agent holds SYNs of unknown pods).
    await t.addPod('a', 'a3');
    w.apply(
      'bench.yaml',
      `apiVersion: v1\nkind: Pod\nmetadata:\n  name: a3\n  namespace: demo\n  labels: { app: bench, istio.io/dataplane-mode: none }\nspec:\n  nodeName: a\n  containers: [{ name: app, image: example/app:1 }]\nstatus:\n  phase: Running\n  podIP: ${w.ip('a3')}\n`,
    );
    const { readStatus } = await import('../test/harness/capture.js');
    for (let i = 0; i < 200; i++) {
      const st = readStatus(join(w.dir, 'agent-a.json'));
      const a3 = st?.pods.find((p) => p.name === 'a3');
      if (a3 && !/pending/i.test(a3.state)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const spawnChild = async (ns: string, args: string[]): Promise<ChildProcess> => {
      const c = t.spawnNode(ns, 'bench/ztunnel.bench.ts', args, {
        env: { ...process.env, AZT_BENCH_CHILD: '1' },
      });
      children.push(c);
      await waitReady(c, `bench child ${args[0]} in ${ns}`, 20_000);
      return c;
    };
    const result = <T>(c: ChildProcess, timeoutMs: number): Promise<T> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('bench child timed out')), timeoutMs);
        c.on('message', (m: ChildMsg) => {
          if (m.error) {
            clearTimeout(timer);
            reject(new Error(m.error));
          }
          if (m.result !== undefined) {
            clearTimeout(timer);
            resolve(m.result as T);
          }
        });
      });
    for (const pod of ['b1', 'b2']) {
      await spawnChild(t.pod(pod).ns, ['echo', String(ECHO_PORT)]);
      const iperf = t.spawnIn(t.pod(pod).ns, 'iperf3', ['-s', '-p', String(IPERF_PORT)]);
      children.push(iperf);
      // Bounded wait until the iperf3 server listens.
      for (let i = 0; i < 100; i++) {
        const ss = await t.exec(t.pod(pod).ns, 'ss', ['-Hltn', `( sport = :${IPERF_PORT} )`]);
        if (ss.stdout.trim()) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    }

    // The C reference pair: stunnel4 with TLS 1.3, ECDSA P-256, mutual authentication.
    const certDir = w.dir;
    const { selfSignedP256 } = await import('../test/harness/openssl.js');
    const st = selfSignedP256(certDir, 'st', { cn: 'ambit-bench' });
    const common = (accept: string, connect: string, client: boolean) =>
      [
        client ? 'client = yes' : '',
        `accept = ${accept}`,
        `connect = ${connect}`,
        `cert = ${st.certFile}`,
        `key = ${st.keyFile}`,
        `CAfile = ${st.certFile}`,
        'verifyChain = yes',
        'sslVersionMin = TLSv1.3',
        'ciphersuites = TLS_AES_128_GCM_SHA256',
        'socket = l:TCP_NODELAY=1',
        'socket = r:TCP_NODELAY=1',
      ]
        .filter(Boolean)
        .join('\n');
    const nodeA = t.node('a').ip;
    const nodeB = t.node('b').ip;
    const b2 = w.ip('b2');
    const stClient = join(certDir, 'st-client.conf');
    const stServer = join(certDir, 'st-server.conf');
    writeFileSync(
      stClient,
      `foreground = yes\npid =\ndebug = 3\n[rr]\n${common(`${nodeA}:17000`, `${nodeB}:17443`, true)}\n[bulk]\n${common(`${nodeA}:17001`, `${nodeB}:17444`, true)}\n`,
    );
    writeFileSync(
      stServer,
      `foreground = yes\npid =\ndebug = 3\n[rr]\n${common(`${nodeB}:17443`, `${b2}:${ECHO_PORT}`, false)}\n[bulk]\n${common(`${nodeB}:17444`, `${b2}:${IPERF_PORT}`, false)}\n`,
    );
    const stA = t.spawnIn(t.node('a').ns, 'stunnel4', [stClient]);
    const stB = t.spawnIn(t.node('b').ns, 'stunnel4', [stServer]);
    children.push(stA, stB);
    await new Promise((r) => setTimeout(r, 1000));

    const target: Record<Config, { pod: string; rr: [string, number]; bulk: [string, number] }> = {
      direct: { pod: 'a3', rr: [b2, ECHO_PORT], bulk: [b2, IPERF_PORT] },
      stunnel: { pod: 'a3', rr: [nodeA, 17000], bulk: [nodeA, 17001] },
      ztunnel: { pod: 'a1', rr: [w.ip('b1'), ECHO_PORT], bulk: [w.ip('b1'), IPERF_PORT] },
    };
    // Memory first, before load scenarios grow the heaps: idle RSS of each proxy, then with IDLE_CONNS
    // idle tunneled connections open through it.
    const pids: Record<'ztunnel' | 'stunnel', [number | undefined, number | undefined]> = {
      ztunnel: [w.ztunnels.get('a')?.child.pid, w.ztunnels.get('b')?.child.pid],
      stunnel: [stA.pid, stB.pid],
    };
    const mem: Record<string, { idleKiB: number[]; loadedKiB: number[]; open: number }> = {};
    for (const proxy of ONLY.has('mem') ? (['ztunnel', 'stunnel'] as const) : []) {
      const idle = pids[proxy].map(rssKiB);
      const tg = target[proxy];
      const holder = await spawnChild(t.pod(tg.pod).ns, [
        'hold',
        tg.rr[0],
        String(tg.rr[1]),
        String(IDLE_CONNS),
      ]);
      const held = await result<{ open: number; failed: number }>(holder, 120_000);
      await new Promise((r) => setTimeout(r, 500));
      const loaded = pids[proxy].map(rssKiB);
      holder.send('close');
      mem[proxy] = { idleKiB: idle, loadedKiB: loaded, open: held.open };
      await new Promise((r) => setTimeout(r, 1000));
    }

    const ms = SECONDS * 1000;
    /** One iperf3 run from netns `ns`; iperf3 serves one test at a time and may still be finishing the
     *  previous one, so a failed run is retried briefly. */
    const iperfBitsPerSecond = async (ns: string, [host, port]: [string, number], config: Config) => {
      let lastError = '';
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          const iperf = await t.exec(
            ns,
            'iperf3',
            ['-c', host, '-p', String(port), '-t', String(SECONDS), '-O', '1', '-J'],
            { timeoutMs: ms + 20_000 },
          );
          return (JSON.parse(iperf.stdout) as { end: { sum_received: { bits_per_second: number } } }).end
            .sum_received.bits_per_second;
        } catch (err) {
          lastError = String(err);
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      throw new Error(`iperf3 for ${config} failed: ${lastError}`);
    };
    const rows: Row[] = [];
    const configs: Config[] = ['direct', 'stunnel', 'ztunnel'];
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order every round so no configuration always runs first (a fixed order would favour whichever warms the machine).
      const order = configs.map((_, i) => configs[(i + round) % configs.length]!);
      for (const config of order) {
        const tg = target[config];
        const ns = t.pod(tg.pod).ns;
        const proxies = config === 'direct' ? [] : pids[config];
        const cpu = (): number => (proxies.length ? cpuSeconds(proxies) : Number.NaN);
        // Bulk is the noisiest figure on a shared 2-core machine: BULK_REPEATS runs, median.
        const bulkRuns: { gbps: number; cpuSecPerGB: number }[] = [];
        for (let rep = 0; rep < (ONLY.has('bulk') ? BULK_REPEATS : 0); rep++) {
          const cpuBefore = cpu();
          const bps = await iperfBitsPerSecond(ns, tg.bulk, config);
          // The whole run moved about (SECONDS + 1 omitted second) × rate.
          const bulkGB = (bps * (SECONDS + 1)) / 8 / 1e9;
          bulkRuns.push({ gbps: bps / 1e9, cpuSecPerGB: (cpu() - cpuBefore) / bulkGB });
        }
        const bulkGbps = median(bulkRuns.map((r) => r.gbps));
        const cpuSecPerGB = median(bulkRuns.map((r) => r.cpuSecPerGB));
        let cpu0 = cpu();
        const rrOf = async (conc: number) => {
          if (!ONLY.has('rr')) return NO_RR;
          const c = await spawnChild(ns, [
            'rr',
            tg.rr[0],
            String(tg.rr[1]),
            String(conc),
            String(ms),
            '1024',
          ]);
          return result<{ p50us: number; p99us: number; rps: number }>(c, ms + 30_000);
        };
        const rr1 = await rrOf(1);
        cpu0 = cpu();
        const rr64 = await rrOf(64);
        const cpuUsPerRequest64 = ((cpu() - cpu0) * 1e6) / (rr64.rps * ((ms + 500) / 1000));
        cpu0 = cpu();
        const cps = ONLY.has('cps')
          ? await result<{ cps: number }>(
              await spawnChild(ns, ['cps', tg.rr[0], String(tg.rr[1]), '8', String(ms)]),
              ms + 30_000,
            )
          : { cps: Number.NaN };
        const cpuUsPerConnection = ((cpu() - cpu0) * 1e6) / (cps.cps * (ms / 1000));
        rows.push({
          config,
          bulkGbps,
          rr1,
          rr64,
          cps: cps.cps,
          cpuSecPerGB,
          cpuUsPerRequest64,
          cpuUsPerConnection,
        });
      }
    }

    // Report.
    const med = (config: Config, f: (r: Row) => number) =>
      median(rows.filter((r) => r.config === config).map(f));
    const fmt = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
    console.log(
      `rounds=${ROUNDS} seconds/scenario=${SECONDS} node=${process.version} openssl=${process.versions.openssl} capture=ebpf`,
    );
    console.log(
      'config     bulk Gbit/s   rr c=1 p50/p99 µs   rr c=64 p50/p99 µs   rr c=64 req/s   new conn/s',
    );
    for (const c of configs) {
      console.log(
        `${c.padEnd(10)} ${fmt(
          med(c, (r) => r.bulkGbps),
          2,
        ).padStart(
          11,
        )}   ${`${fmt(med(c, (r) => r.rr1.p50us))}/${fmt(med(c, (r) => r.rr1.p99us))}`.padStart(17)}   ${`${fmt(med(c, (r) => r.rr64.p50us))}/${fmt(med(c, (r) => r.rr64.p99us))}`.padStart(18)}   ${fmt(med(c, (r) => r.rr64.rps)).padStart(13)}   ${fmt(med(c, (r) => r.cps)).padStart(10)}`,
      );
    }
    const ratio = (f: (r: Row) => number) => med('ztunnel', f) / med('stunnel', f);
    const added = (config: Config, f: (r: Row) => number) => med(config, f) - med('direct', f);
    const addedRatio = added('ztunnel', (r) => r.rr1.p50us) / added('stunnel', (r) => r.rr1.p50us);
    console.log('\nproxy CPU (both proxies of the pair; robust to a busy machine, unlike rates):');
    for (const c of ['stunnel', 'ztunnel'] as const) {
      console.log(
        `  ${c.padEnd(8)} ${fmt(
          med(c, (r) => r.cpuSecPerGB),
          2,
        )} CPU-s/GB bulk   ${fmt(med(c, (r) => r.cpuUsPerRequest64))} µs/request at c=64   ${fmt(med(c, (r) => r.cpuUsPerConnection))} µs/new connection`,
      );
    }
    console.log('\nztunnel ÷ stunnel (the C pair):');
    console.log(
      `  bulk throughput        ${fmt(
        ratio((r) => r.bulkGbps),
        2,
      )}×   (target ≥ 0.8)`,
    );
    console.log(
      `  added p50 at c=1       +${fmt(added('ztunnel', (r) => r.rr1.p50us))} µs vs +${fmt(added('stunnel', (r) => r.rr1.p50us))} µs = ${fmt(addedRatio, 2)}×   (target ≤ 2)`,
    );
    console.log(
      `  added p99 at c=1       +${fmt(added('ztunnel', (r) => r.rr1.p99us))} µs vs +${fmt(added('stunnel', (r) => r.rr1.p99us))} µs`,
    );
    console.log(
      `  rr c=64 p50            ${fmt(
        ratio((r) => r.rr64.p50us),
        2,
      )}×    req/s ${fmt(
        ratio((r) => r.rr64.rps),
        2,
      )}×`,
    );
    console.log(
      `  new connections/s      ${fmt(
        ratio((r) => r.cps),
        2,
      )}×   (HBONE pools; stunnel handshakes per connection)`,
    );
    console.log(
      `  ×direct: bulk ${fmt(med('ztunnel', (r) => r.bulkGbps) / med('direct', (r) => r.bulkGbps), 2)}, conn/s ${fmt(med('ztunnel', (r) => r.cps) / med('direct', (r) => r.cps), 2)}`,
    );
    for (const proxy of ['ztunnel', 'stunnel'] as const) {
      const m = mem[proxy];
      if (!m) continue;
      const per = m.idleKiB.map((idle, i) => ((m.loadedKiB[i] ?? Number.NaN) - idle) / Math.max(1, m.open));
      console.log(
        `  ${proxy} RSS idle ${m.idleKiB.map((k) => `${fmt(k / 1024, 1)} MiB`).join(' / ')}; with ${m.open} idle tunneled conns ${m.loadedKiB.map((k) => `${fmt(k / 1024, 1)} MiB`).join(' / ')}; per conn ${per.map((p) => `${fmt(p, 1)} KiB`).join(' / ')} (client side / server side; target ≤ 30 KiB for ztunnel)`,
      );
    }
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    // With e.g. AZT_ZTUNNEL_NODE_ARGS=--trace-gc: keep what the ztunnels printed.
    const logDir = process.env.AZT_BENCH_ZTUNNEL_LOGS;
    if (logDir) for (const [n, z] of w.ztunnels) writeFileSync(join(logDir, `ztunnel-${n}.log`), z.logs());
    await w.teardown();
  }
}

const scenario: BenchScenario = { name: 'ztunnel pair vs direct TCP vs stunnel4 mTLS pair', run };
export default scenario;

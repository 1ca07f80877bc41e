// `ambit observe`: a `hubble observe`-like stream of the flows the data path reports — every ztunnel's
// and waypoint's admin `/flows` stream (core/telemetry/flow-events.ts), one row per finished connection
// or request, with verdict and deciding policy. Filters narrow it; `-f` follows live flows; without it
// the recent history is printed and the command exits. `-o json` prints one JSON object per line (as
// `hubble observe -o json`), `-o yaml` one document per flow.
import { createInterface } from 'node:readline';
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import { type AdminTarget, adminStream, demoDir, ztunnelTargets } from './common/admin.js';
import { type OutputFormat, outputOption, UsageError } from './common/output.js';
import { loadManifestDirectory } from '../core/sources/manifests.js';
import type { AppProtocol, Service } from '../core/state/model.js';
import { type FlowRow, toFlowRow } from './demo/flows.js';
import { readDemoState } from './demo/state-file.js';

export interface ObserveFilter {
  namespace?: string;
  workload?: string;
  identity?: string;
  verdict?: string;
  policy?: string;
  protocol?: string;
}

/** Whether a flow row passes every filter given (each matches either end, as hubble's --pod does). */
export function matchesFilter(r: FlowRow, f: ObserveFilter): boolean {
  const ends = [r.src, r.dst];
  if (f.namespace && !ends.some((e) => e.namespace === f.namespace)) return false;
  if (f.workload) {
    const [ns, name] = f.workload.includes('/') ? f.workload.split('/', 2) : [undefined, f.workload];
    if (!ends.some((e) => e.workload === name && (ns === undefined || e.namespace === ns))) return false;
  }
  if (f.identity) {
    const want = f.identity.replace(/^spiffe:\/\//, '');
    if (!ends.some((e) => (e.identity ?? '').replace(/^spiffe:\/\//, '').includes(want))) return false;
  }
  if (f.verdict && r.verdict !== f.verdict.toUpperCase().replace(/^DENY$/, 'DENIED')) return false;
  if (f.policy && !(r.policy ?? '').includes(f.policy)) return false;
  if (f.protocol) {
    const want = f.protocol.toLowerCase();
    // Every flow a ztunnel reports is TCP; HTTP and gRPC are what a waypoint parsed, or what the
    // destination port declares (a ztunnel-only flow to a gRPC port is gRPC on the wire).
    const p = (r.l7?.protocol ?? r.protocol ?? 'tcp').toLowerCase();
    const ok =
      want === 'tcp'
        ? r.l7 === undefined
        : p === want || (want === 'http' && p.startsWith('http')) || (want === 'grpc' && p.includes('grpc'));
    if (!ok) return false;
  }
  return true;
}

const endpoint = (e: FlowRow['src']): string => (e.workload ? `${e.namespace}/${e.workload}` : e.addr || '?');

/** One line per flow, hubble's order: time, reporter, source -> destination, verdict, then details. */
export function renderRow(r: FlowRow): string {
  const l7 = r.l7
    ? ` ${[r.l7.protocol, r.l7.method, r.l7.path, r.l7.status ?? r.l7.grpcStatus].filter((x) => x !== undefined).join(' ')}`
    : '';
  const id = r.src.identity ? ` [${r.src.identity.replace(/^spiffe:\/\//, '')}]` : '';
  const sec = `${r.mtls ? 'mTLS' : 'plaintext'}${r.protocol ? ` ${r.protocol}` : ''}`;
  const pol = r.policy ? ` policy=${r.policy}` : '';
  const err = r.error ? ` error="${r.error}"` : '';
  return `${r.time}  ${r.reporter.padEnd(22)} ${endpoint(r.src)}${id} -> ${endpoint(r.dst)}${r.dst.service ? ` (${r.dst.service})` : ''} ${r.verdict} ${sec}${l7}${pol}${err}`;
}

const PROTOCOL_NAMES: Partial<Record<AppProtocol, string>> = {
  HTTP11: 'http',
  HTTP2: 'http2',
  GRPC: 'grpc',
  TCP: 'tcp',
  TLS: 'tls',
};

/**
 * The declared protocol of a flow's destination port: the Service port whose port or targetPort is the
 * port the flow reached, by its protocol as Istio selects it (appProtocol, else the port name's prefix;
 * core/sources/translate.ts computes it). Only for rows no waypoint parsed.
 */
export function declaredProtocol(services: readonly Service[], r: FlowRow): string | undefined {
  if (r.l7 || !r.dst.service) return undefined;
  const svc = services.find((s) => s.hostname === r.dst.service);
  const port = Number(/:(\d+)$/.exec(r.target ?? r.dst.addr)?.[1]);
  const sp = svc?.ports.find((p) => p.targetPort === port || p.servicePort === port);
  return sp ? PROTOCOL_NAMES[sp.appProtocol] : undefined;
}

export interface ObserveSource {
  reporter: string;
  target: AdminTarget;
}

/** Every proxy of the local demo (ztunnels on :15000, waypoints' flow stream on their stats port). */
export function demoSources(dir: string, node?: string): ObserveSource[] {
  const st = readDemoState(dir);
  if (!st) return [];
  const out: ObserveSource[] = st.nodes
    .filter((n) => !node || n.name === node)
    .map((n) => ({
      reporter: `ztunnel/${n.name}`,
      target: { kind: 'netns', netns: n.netns, port: 15000, label: `ztunnel on ${n.name}` },
    }));
  if (st.waypoint === 'running') {
    for (const p of st.pods.filter((x) => x.run === 'waypoint' && (!node || x.node === node))) {
      out.push({
        reporter: `waypoint/${p.namespace}/${p.name}`,
        target: { kind: 'netns', netns: p.netns, port: 15020, label: `waypoint ${p.namespace}/${p.name}` },
      });
    }
  }
  return out;
}

interface ObserveFlags extends ObserveFilter {
  follow?: boolean;
  last?: string;
  node?: string;
  admin?: string;
  dir?: string;
  output: OutputFormat;
}

export function registerObserve(program: Command): void {
  program
    .command('observe')
    .description(
      'stream the flows the ztunnels and waypoints report, with verdicts and deciding policies (like hubble observe)',
    )
    .option('-f, --follow', 'keep streaming new flows')
    .option('--last <n>', 'print at most the last n flows of the history (default 100)')
    .option('-n, --namespace <ns>', 'flows from or to this namespace')
    .option('--workload <ns/name>', 'flows from or to this workload')
    .option('--identity <spiffe>', 'flows from or to this identity (part of it is enough)')
    .addOption(
      new Option('--verdict <verdict>', 'forwarded | denied | error').choices([
        'forwarded',
        'denied',
        'error',
        'FORWARDED',
        'DENIED',
        'ERROR',
      ]),
    )
    .option('--policy <ns/name>', 'flows this policy decided')
    .addOption(new Option('--protocol <p>', 'tcp | http | grpc').choices(['tcp', 'http', 'grpc']))
    .option('--node <name>', "only this node's proxies (the local demo)")
    .option('--admin <host:port>', 'one ztunnel admin address instead of the demo (a port-forward)')
    .option('--dir <dir>', 'the demo directory (state file)')
    .addOption(outputOption())
    .action(async (f: ObserveFlags) => {
      const sources: ObserveSource[] = f.admin
        ? [{ reporter: `ztunnel ${f.admin}`, target: ztunnelTargets({ admin: f.admin })[0]! }]
        : demoSources(demoDir(f.dir), f.node);
      if (sources.length === 0) {
        throw new UsageError(
          f.node
            ? `--node ${f.node}: no such node in the demo`
            : 'no flow source: no demo running (start one with `sudo npm start`) and no --admin host:port',
        );
      }
      const last = f.last === undefined ? 100 : Number(f.last);
      if (!Number.isInteger(last) || last < 0) throw new UsageError(`--last "${f.last}": a number >= 0`);
      // The demo's Services, for the declared protocol of flows seen at L4 only (--admin has none).
      const st = f.admin ? undefined : readDemoState(demoDir(f.dir));
      const services = st ? (await loadManifestDirectory(st.manifestsDir)).state.services() : [];
      await observe(sources, f, last, services);
    });
}

async function observe(
  sources: ObserveSource[],
  f: ObserveFlags,
  last: number,
  services: readonly Service[],
): Promise<void> {
  const print = (r: FlowRow): void => {
    if (!matchesFilter(r, f)) return;
    if (f.output === 'json') process.stdout.write(`${JSON.stringify(r)}\n`);
    else if (f.output === 'yaml') process.stdout.write(`---\n${stringify(r)}`);
    else process.stdout.write(`${renderRow(r)}\n`);
  };
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
  });
  let seq = 0;
  const history: FlowRow[] = [];
  let live = false;
  const failures: string[] = [];
  const streams = sources.map(
    (s) =>
      new Promise<void>((resolve) => {
        // The history arrives within the first second; without --follow the stream is cut after it.
        const child = adminStream(s.target, '/flows', f.follow ? 0 : 2);
        let err = '';
        child.stderr?.on('data', (d: Buffer) => {
          err += d.toString();
        });
        const lines = createInterface({ input: child.stdout! });
        lines.on('line', (line) => {
          if (!line.trim()) return;
          let e: Parameters<typeof toFlowRow>[1];
          try {
            e = JSON.parse(line);
          } catch {
            return;
          }
          if (e.phase === 'open') return;
          const row = toFlowRow(s.reporter, e, ++seq);
          const declared = declaredProtocol(services, row);
          if (declared) row.protocol = declared;
          if (live) print(row);
          else history.push(row);
        });
        child.once('close', (code) => {
          // 28: curl's --max-time reached, the expected end of a history read.
          if (code !== 0 && code !== 28) failures.push(`${s.reporter}: ${err.trim() || `curl exit ${code}`}`);
          resolve();
        });
        process.once('SIGINT', () => child.kill());
      }),
  );
  const flushHistory = () => {
    const rows = history.filter((r) => matchesFilter(r, f)).sort((a, b) => a.time.localeCompare(b.time));
    for (const r of rows.slice(Math.max(0, rows.length - last))) print(r);
    history.length = 0;
    live = true;
  };
  if (f.follow) {
    setTimeout(flushHistory, 1000);
    await Promise.all(streams);
  } else {
    await Promise.all(streams);
    flushHistory();
  }
  for (const m of failures) process.stderr.write(`ambit observe: ${m}\n`);
  if (failures.length === sources.length) process.exitCode = 1;
}

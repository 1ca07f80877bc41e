// `ambit ztunnel-config {workloads,services,policies,certificates,connections,log,all}`: reads a
// running ztunnel's admin API and prints the tables `istioctl ztunnel-config` prints (istioctl reads the
// same `/config_dump`; it has no separate /certs API). `connections` lists the open connections the
// admin `/flows` history holds; `log` reads or sets the level through `/logging` as `istioctl zc log`.
// The ztunnel is named by `--node` / `--pod ns/name` (the local demo: cli/common/admin.ts) or `--admin`.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type Command, Option } from 'commander';
import type { FlowEvent } from '../core/telemetry/flow-events.js';
import {
  ADMIN_PORT,
  type AdminTarget,
  adminJson,
  adminRequest,
  adminStream,
  demoDir,
  type TargetFlags,
  ztunnelTargets,
} from './common/admin.js';
import { formatData, type OutputFormat, outputOption, table, UsageError } from './common/output.js';
import { readDemoState } from './demo/state-file.js';

interface DumpWorkload {
  name: string;
  namespace: string;
  addresses: string[];
  node: string;
  tunnelProtocol: string;
  serviceAccount: string;
  waypoint?: { hostname: string };
  status: string;
}

interface DumpService {
  name: string;
  namespace: string;
  addresses: string[];
  waypoint?: { hostname: string };
  endpoints?: number;
}

interface DumpPolicy {
  name: string;
  namespace: string;
  action: string;
  scope: string;
  dryRun?: boolean;
  rules?: unknown[];
}

interface DumpCert {
  identity: string;
  state: string;
  certChain: { serialNumber: string; validFrom: string; expirationTime: string }[];
  rootCerts: { serialNumber: string; validFrom: string; expirationTime: string }[];
}

export interface ConfigDump {
  workloads: DumpWorkload[];
  services: DumpService[];
  policies: DumpPolicy[];
  certificates: DumpCert[];
}

export { AdminUnreachable } from './common/admin.js';

/** The config dump of one ztunnel admin address (`host:port` or a URL). */
export async function fetchConfigDump(admin: string): Promise<ConfigDump> {
  return adminJson<ConfigDump>(ztunnelTargets({ admin })[0]!, '/config_dump');
}

export { table };

const none = (s: string | undefined): string => (s ? s : 'None');
const shortHost = (h: string | undefined): string | undefined => h?.split('.')[0];

export function renderWorkloads(d: ConfigDump): string {
  const rows = [...d.workloads]
    .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))
    .map((w) => [
      w.namespace,
      w.name,
      w.addresses.join(','),
      w.node,
      none(shortHost(w.waypoint?.hostname)),
      w.tunnelProtocol,
    ]);
  return table(['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL'], rows);
}

export function renderServices(d: ConfigDump): string {
  const rows = [...d.services]
    .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))
    .map((s) => [
      s.namespace,
      s.name,
      s.addresses.join(',') || 'None',
      none(shortHost(s.waypoint?.hostname)),
      String(s.endpoints ?? 0),
    ]);
  return table(['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'WAYPOINT', 'ENDPOINTS'], rows);
}

export function renderPolicies(d: ConfigDump): string {
  const rows = [...d.policies]
    .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))
    .map((p) => [p.namespace, p.name, p.dryRun ? `${p.action} (dry-run)` : p.action, p.scope]);
  return table(['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE'], rows);
}

export function renderCertificates(d: ConfigDump): string {
  const rows: string[][] = [];
  for (const c of d.certificates) {
    const valid = c.state === 'Available';
    c.certChain.forEach((e, i) => {
      rows.push([
        c.identity,
        i === 0 ? 'Leaf' : 'Intermediate',
        c.state,
        String(valid && Date.parse(e.expirationTime) > Date.now()),
        e.serialNumber,
        e.expirationTime,
        e.validFrom,
      ]);
    });
    for (const e of c.rootCerts) {
      rows.push([
        c.identity,
        'Root',
        c.state,
        String(Date.parse(e.expirationTime) > Date.now()),
        e.serialNumber,
        e.expirationTime,
        e.validFrom,
      ]);
    }
    if (c.certChain.length === 0) rows.push([c.identity, 'Leaf', c.state, 'false', '', '', '']);
  }
  return table(
    ['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'],
    rows,
  );
}

export interface OpenConnection {
  id: number;
  opened: string;
  direction: string;
  src: string;
  dst: string;
  identity: string;
}

/** Open connections: `open` events of the flow history with no `close` after them. */
export function openConnections(events: FlowEvent[]): OpenConnection[] {
  const open = new Map<number, FlowEvent>();
  for (const e of events) {
    if (e.phase === 'open') open.set(e.id, e);
    else open.delete(e.id);
  }
  const ep = (x: FlowEvent['src']) => (x.workload ? `${x.namespace}/${x.workload} (${x.addr})` : x.addr);
  return [...open.values()].map((e) => ({
    id: e.id,
    opened: e.time,
    direction: e.direction,
    src: ep(e.src),
    dst: ep(e.dst),
    identity: e.src.identity ?? '-',
  }));
}

export function renderConnections(cs: OpenConnection[]): string {
  return table(
    ['ID', 'DIRECTION', 'SOURCE', 'DESTINATION', 'PEER IDENTITY', 'OPENED'],
    cs.map((c) => [String(c.id), c.direction, c.src, c.dst, c.identity, c.opened]),
  );
}

/** The admin `/flows` history, read for about a second (the stream itself never ends). */
async function flowHistory(t: AdminTarget): Promise<FlowEvent[]> {
  const child = adminStream(t, '/flows', 1);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await new Promise((r) => child.once('close', r));
  return out
    .split('\n')
    .filter((l) => l.trim())
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as FlowEvent];
      } catch {
        return [];
      }
    });
}

type Kind = 'workloads' | 'services' | 'policies' | 'certificates';
const RENDER: Record<Kind, (d: ConfigDump) => string> = {
  workloads: renderWorkloads,
  services: renderServices,
  policies: renderPolicies,
  certificates: renderCertificates,
};

interface ZcFlags extends TargetFlags {
  kubeconfig?: string;
  istioNamespace?: string;
  output: OutputFormat;
  namespace?: string;
  level?: string;
}

/**
 * The one ztunnel to read. Every node runs its own ztunnel with its own view (its node's workloads and
 * certificates), so with several and no --node/--pod/--admin the command cannot pick one for the user:
 * it names the choices and exits 2 (a usage mistake), where a single-node demo needs no flag. istioctl
 * does the same: "ztunnel pod name or --node must be set" unless exactly one ztunnel pod matches
 * (istio/istio istioctl/pkg/ztunnelconfig, getPodNameWithNamespace with enforceSinglePod).
 */
async function target(f: ZcFlags): Promise<AdminTarget> {
  if (useKube(f)) return (await import('./common/kube-admin.js')).kubeZtunnelTarget(f, ADMIN_PORT);
  const ts = ztunnelTargets(f);
  if (ts.length > 1) {
    const st = readDemoState(demoDir(f.dir));
    const nodes = st ? st.nodes.map((n) => n.name).join(', ') : ts.map((t) => t.label).join(', ');
    throw new UsageError(
      `${ts.length} ztunnels run, one per node, each with its own view: pass --node (${nodes}) or --pod ns/name`,
    );
  }
  return ts[0]!;
}

function filterNamespace(d: ConfigDump, ns?: string): ConfigDump {
  if (!ns) return d;
  return {
    ...d,
    workloads: d.workloads.filter((w) => w.namespace === ns),
    services: d.services.filter((s) => s.namespace === ns),
    policies: d.policies.filter((p) => p.namespace === ns),
  };
}

/** A cluster when one is named, or when no demo runs and a kubeconfig is there (as istioctl assumes). */
function useKube(f: ZcFlags): boolean {
  if (f.admin) return false;
  if (f.kubeconfig) return true;
  if (readDemoState(demoDir(f.dir))) return false;
  return (
    !!process.env.KUBECONFIG ||
    existsSync(join(homedir(), '.kube', 'config')) ||
    existsSync('/var/run/secrets/kubernetes.io/serviceaccount/token')
  );
}

async function dumpOf(f: ZcFlags): Promise<ConfigDump> {
  return filterNamespace(await adminJson<ConfigDump>(await target(f), '/config_dump'), f.namespace);
}

function targetOptions(c: Command): Command {
  return c
    .option('--node <name>', "the ztunnel of this node (the local demo's nodes: node1, node2)")
    .option('--pod <ns/name>', 'the ztunnel of the node this pod runs on')
    .option('--admin <host:port>', 'a ztunnel admin address (a port-forward, or this host)')
    .option('--kubeconfig <file>', 'a cluster: reach the ztunnel pod through a port-forward')
    .option('--istio-namespace <ns>', 'namespace of the ztunnel pods (default istio-system)')
    .option('--dir <dir>', 'the demo directory (state file)')
    .addOption(outputOption())
    .option('-n, --namespace <ns>', 'only this namespace');
}

function print(f: ZcFlags, value: unknown, render: () => string): void {
  process.stdout.write(formatData(f.output, value, render));
}

export function registerZtunnelConfig(program: Command): void {
  const zc = program
    .command('ztunnel-config')
    .alias('zc')
    .description(
      "show a running ztunnel's workloads, services, policies, certificates, connections or log level (like istioctl ztunnel-config)",
    );
  for (const kind of Object.keys(RENDER) as Kind[]) {
    targetOptions(
      zc
        .command(kind)
        .alias(kind.replace(/s$/, ''))
        .description(`the ${kind} the ztunnel holds (admin /config_dump)`),
    ).action(async (f: ZcFlags) => {
      const d = await dumpOf(f);
      print(f, d[kind], () => RENDER[kind](d));
    });
  }
  targetOptions(
    zc.command('connections').description('the open connections the ztunnel reports (admin /flows history)'),
  ).action(async (f: ZcFlags) => {
    const cs = openConnections(await flowHistory(await target(f))).filter(
      (c) => !f.namespace || c.src.startsWith(`${f.namespace}/`) || c.dst.startsWith(`${f.namespace}/`),
    );
    print(f, cs, () => renderConnections(cs));
  });
  targetOptions(
    zc.command('log').description('show, or with --level set, the ztunnel log level (admin /logging)'),
  )
    .addOption(
      new Option('--level <level>', 'set the level').choices([
        'off',
        'error',
        'warn',
        'info',
        'debug',
        'trace',
      ]),
    )
    .action(async (f: ZcFlags) => {
      const t = await target(f);
      const text = await adminRequest(
        t,
        f.level ? `/logging?level=${f.level}` : '/logging',
        f.level ? 'POST' : 'GET',
      );
      const level = /level is (\w+)/.exec(text)?.[1] ?? text.trim();
      print(f, { ztunnel: t.label, level }, () => table(['ZTUNNEL', 'LEVEL'], [[t.label, level]]));
    });
  targetOptions(
    zc.command('all').description('workloads, services, policies and certificates together'),
  ).action(async (f: ZcFlags) => {
    const d = await dumpOf(f);
    const value = {
      workloads: d.workloads,
      services: d.services,
      policies: d.policies,
      certificates: d.certificates,
    };
    print(f, value, () =>
      (Object.keys(RENDER) as Kind[]).map((k) => `${k.toUpperCase()}\n${RENDER[k](d)}`).join('\n\n'),
    );
  });
}

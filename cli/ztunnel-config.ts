// `ambit ztunnel-config workloads|services|policies|certificates`: reads a running ztunnel's admin
// `/config_dump` and prints the tables `istioctl ztunnel-config` prints (istioctl reads the same
// endpoint; it has no separate /certs API).
import type { Command } from 'commander';

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

export class AdminUnreachable extends Error {
  readonly code = 'ZTUNNEL_ADMIN_UNREACHABLE';
  constructor(address: string, cause: string) {
    super(
      `cannot read ztunnel admin at ${address}/config_dump: ${cause} (is ztunnel running? use --admin host:port)`,
    );
    this.name = 'AdminUnreachable';
  }
}

export async function fetchConfigDump(admin: string): Promise<ConfigDump> {
  const base = admin.startsWith('http') ? admin : `http://${admin}`;
  let res: Response;
  try {
    res = await fetch(`${base}/config_dump`, { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    const e = err as Error & { cause?: { message?: string } };
    throw new AdminUnreachable(base, e.cause?.message ?? e.message);
  }
  if (!res.ok) throw new AdminUnreachable(base, `HTTP ${res.status}`);
  return (await res.json()) as ConfigDump;
}

/** Left-aligned columns separated by at least three spaces, like istioctl's tabwriter output. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
      .join('')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

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

const RENDERERS = {
  workloads: renderWorkloads,
  workload: renderWorkloads,
  services: renderServices,
  service: renderServices,
  policies: renderPolicies,
  policy: renderPolicies,
  certificates: renderCertificates,
  certificate: renderCertificates,
} as const;

export function registerZtunnelConfig(program: Command): void {
  program
    .command('ztunnel-config')
    .description(
      "show a running ztunnel's workloads, services, policies or certificates (like istioctl ztunnel-config)",
    )
    .argument('<what>', 'workloads | services | policies | certificates')
    .option('--admin <host:port>', 'ztunnel admin address', '127.0.0.1:15000')
    .option('-o, --output <format>', 'table | json', 'table')
    .option('-n, --namespace <ns>', 'only this namespace')
    .action(async (what: string, opts: { admin: string; output: string; namespace?: string }) => {
      const render = RENDERERS[what as keyof typeof RENDERERS];
      if (!render) {
        throw new Error(
          `ztunnel-config: unknown type "${what}": use workloads, services, policies or certificates`,
        );
      }
      const dump = await fetchConfigDump(opts.admin);
      if (opts.namespace) {
        dump.workloads = dump.workloads.filter((w) => w.namespace === opts.namespace);
        dump.services = dump.services.filter((s) => s.namespace === opts.namespace);
        dump.policies = dump.policies.filter((p) => p.namespace === opts.namespace);
      }
      if (opts.output === 'json') {
        const key = what.endsWith('s') ? what : `${what}s`;
        console.log(JSON.stringify(dump[key as keyof ConfigDump], null, 2));
        return;
      }
      console.log(render(dump));
    });
}

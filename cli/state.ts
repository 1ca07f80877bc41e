// `ambit state -m DIR [-o table|json]`: what the mesh sees in a manifest directory — workloads, services,
// policies, waypoints — and every manifest that was rejected, with the file, object and field.
// The rest of the state still serves when manifests are rejected (as in the running mesh), but the exit
// code says so: 0 all valid, 1 some object was rejected (so CI can gate on it), 2 bad input (no such
// directory, unknown output format).
import type { Command } from 'commander';
import {
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  formatData,
  OUTPUT_FORMATS,
  type OutputFormat,
  outputOption,
} from './common/output.js';
import { loadManifestDirectory, ManifestDirectoryError } from '../core/sources/manifests.js';
import type { Authorization, L7AuthorizationPolicy, Service, Workload } from '../core/state/model.js';
import { type MeshState, serviceKey, workloadIdentity } from '../core/state/state.js';
import { desiredStatuses } from '../discovery/status-conditions.js';

export interface StateCommandOptions {
  manifests: string;
  output?: string;
}

export interface StateIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const defaultIo: StateIo = {
  out: (l) => process.stdout.write(`${l}\n`),
  err: (l) => process.stderr.write(`${l}\n`),
};

/** Left-aligned columns, two spaces apart. */
export function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

const dash = (s: string | undefined) => (s && s.length > 0 ? s : '-');

function workloadRows(state: MeshState): string[][] {
  const ws = state
    .workloads()
    .sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  return ws.map((w: Workload) => [
    w.namespace,
    w.name,
    dash(w.addresses.join(',')),
    dash(w.node),
    workloadIdentity(w),
    w.nativeTunnel ? 'HBONE (waypoint)' : w.tunnelProtocol === 'HBONE' ? 'HBONE (enrolled)' : 'NONE',
    dash(w.waypoint?.hostname),
    w.status,
  ]);
}

function serviceRows(state: MeshState): string[][] {
  const ss = state.services().sort((a, b) => a.hostname.localeCompare(b.hostname));
  return ss.map((s: Service) => {
    const ports = s.ports
      .map((p) => `${p.servicePort}->${p.targetPort || (p.name ?? 'named')}/${p.appProtocol}`)
      .join(',');
    const eps = state
      .workloadsOfService(serviceKey(s))
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((w) => `${w.name}${w.status === 'HEALTHY' ? '' : '(unhealthy)'}`);
    return [
      s.hostname,
      dash(s.addresses.join(',')),
      dash(ports),
      dash(s.waypoint?.hostname),
      dash(eps.join(',')),
    ];
  });
}

function policyRows(state: MeshState): string[][] {
  const l4 = state.authorizations().map((a: Authorization) => [
    `${a.namespace}/${a.name}`,
    a.scope === 'WORKLOAD_SELECTOR' && a.selector
      ? `WORKLOAD_SELECTOR(${Object.entries(a.selector)
          .map(([k, v]) => `${k}=${v}`)
          .join(',')})`
      : a.scope,
    `${a.action}${a.dryRun ? ' (dry-run)' : ''}`,
    String(a.rules.length),
    dash(a.notes.map((n) => n.kind).join(',')),
  ]);
  const l7 = state
    .l7Policies()
    .map((p: L7AuthorizationPolicy) => [
      `${p.namespace}/${p.name}`,
      `WAYPOINT(${p.targetRefs.map((t) => `${t.kind}/${t.name}`).join(',')})`,
      `${p.action}${p.dryRun ? ' (dry-run)' : ''}`,
      String(p.rules.length),
      'L7: enforced by the waypoint',
    ]);
  return [...l4, ...l7].sort((a, b) => a[0]!.localeCompare(b[0]!));
}

export async function runState(o: StateCommandOptions, io: StateIo = defaultIo): Promise<number> {
  const output = o.output ?? 'table';
  if (!(OUTPUT_FORMATS as readonly string[]).includes(output)) {
    io.err(`ambit state: -o ${JSON.stringify(output)}: expected one of ${OUTPUT_FORMATS.join(', ')}`);
    return EXIT_USAGE;
  }
  let loaded: Awaited<ReturnType<typeof loadManifestDirectory>>;
  try {
    loaded = await loadManifestDirectory(o.manifests);
  } catch (err) {
    if (err instanceof ManifestDirectoryError) {
      io.err(`ambit state: -m: ${err.message}`);
      return EXIT_USAGE;
    }
    throw err;
  }
  const { state } = loaded;
  const errors = loaded.errors.map((e) => e.message);
  const verdict = errors.length > 0 ? EXIT_FAILURE : EXIT_OK;
  // The status conditions istiod would write on each object (on Kubernetes the waypoint controller does).
  const conditions = desiredStatuses(loaded.translator).flatMap((s) =>
    s.conditions.map((c) => ({ object: `${s.kind} ${s.namespace}/${s.name}`, ...c })),
  );
  if (output !== 'table') {
    const value = { ...state.snapshot(), conditions, errors, warnings: loaded.warnings };
    io.out(formatData(output as OutputFormat, value, () => '').trimEnd());
    return verdict;
  }
  io.out('WORKLOADS');
  for (const l of table(
    ['NAMESPACE', 'NAME', 'IPS', 'NODE', 'IDENTITY', 'PROTOCOL', 'WAYPOINT', 'STATUS'],
    workloadRows(state),
  ))
    io.out(l);
  io.out('');
  io.out('SERVICES');
  for (const l of table(['HOST', 'VIPS', 'PORTS', 'WAYPOINT', 'ENDPOINTS'], serviceRows(state))) io.out(l);
  io.out('');
  io.out('POLICIES');
  for (const l of table(['POLICY', 'SCOPE', 'ACTION', 'RULES', 'NOTES'], policyRows(state))) io.out(l);
  const waypoints = state.waypoints().sort((a, b) => a.hostname.localeCompare(b.hostname));
  if (waypoints.length > 0) {
    io.out('');
    io.out('WAYPOINTS');
    for (const l of table(
      ['WAYPOINT', 'FOR', 'IDENTITY', 'ADDRESSES'],
      waypoints.map((w) => [
        `${w.namespace}/${w.name}`,
        w.waypointFor,
        `spiffe://${loaded.translator.trustDomain}/ns/${w.namespace}/sa/${w.name}`,
        dash(w.addresses?.join(',')),
      ]),
    ))
      io.out(l);
  }
  if (conditions.length > 0) {
    io.out('');
    io.out('CONDITIONS');
    for (const l of table(
      ['OBJECT', 'TYPE', 'STATUS', 'REASON', 'MESSAGE'],
      conditions.map((c) => [c.object, c.type, c.status, c.reason, c.message]),
    ))
      io.out(l);
  }
  if (loaded.warnings.length > 0) {
    io.out('');
    io.out(`WARNINGS (${loaded.warnings.length})`);
    for (const w of loaded.warnings) io.out(`  ${w}`);
  }
  io.out('');
  io.out(`MANIFEST ERRORS (${errors.length})`);
  for (const e of errors) io.out(`  ${e}`);
  if (errors.length > 0) io.err(`ambit state: ${errors.length} invalid object(s) rejected (listed above)`);
  return verdict;
}

export function registerState(program: Command): void {
  program
    .command('state')
    .description('show the workloads, services, policies and waypoints the mesh sees in a manifest directory')
    .requiredOption('-m, --manifests <dir>', 'directory of Kubernetes/Istio YAML manifests')
    .addOption(outputOption())
    .action(async (opts: StateCommandOptions) => {
      // `ambit state ... | head` closes the pipe early: that is the reader's choice, not an error.
      process.stdout.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      });
      process.exitCode = await runState(opts);
    });
}

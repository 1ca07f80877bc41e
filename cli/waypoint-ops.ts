// `ambit waypoint apply|list|status|delete` against a cluster, as `istioctl waypoint` does (istio/istio
// istioctl/pkg/waypoint/waypoint.go): a waypoint is a Gateway of class istio-waypoint
// (waypoint/gateway-manifest.ts); `apply --enroll-namespace` labels the namespace
// istio.io/use-waypoint=<name>; `list` shows NAME, REVISION, PROGRAMMED (the Gateway's Programmed
// condition, which the waypoint controller writes); `status` shows the Gateway's conditions and exits 1
// until it is Programmed; `delete` removes Gateways by name or --all. Without a kubeconfig, `list` and
// `status` read a manifest directory (-m) or the running demo: there a waypoint is programmed when its pod runs.
import type { Command } from 'commander';
import type { KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '../core/sources/kubeconfig.js';
import { gatewayManifest } from '../waypoint/gateway-manifest.js';
import { CommandFailure, formatData, type OutputFormat, table, UsageError } from './common/output.js';
import { DEFAULT_DEMO_DIR, readDemoState } from './demo/state-file.js';

// Registered under `ambit waypoint`, whose proxy process loads this file too: heavier modules (the
// manifest loader, client-node) are imported only when a subcommand runs.
const demoDir = (dir?: string): string => dir ?? process.env.AMBIT_DEMO_DIR ?? DEFAULT_DEMO_DIR;

const GW = { group: 'gateway.networking.k8s.io', version: 'v1', plural: 'gateways' };
export const WAYPOINT_CLASS = 'istio-waypoint';

interface GatewayObj {
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; resourceVersion?: string };
  spec?: { gatewayClassName?: string };
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

export interface WaypointRow {
  namespace: string;
  name: string;
  revision: string;
  programmed: string;
  conditions: { type: string; status: string; reason: string; message: string }[];
}

interface OpsFlags {
  namespace?: string;
  name?: string;
  kubeconfig?: string;
  kubernetes?: boolean;
  manifests?: string;
  dir?: string;
  allNamespaces?: boolean;
  all?: boolean;
  for?: string;
  revision?: string;
  enrollNamespace?: boolean;
  wait?: boolean;
  timeout?: string;
  output?: string;
}

const statusOf = (g: GatewayObj, type: string) => g.status?.conditions?.find((c) => c.type === type);

export function rowOf(g: GatewayObj): WaypointRow {
  return {
    namespace: g.metadata?.namespace ?? '',
    name: g.metadata?.name ?? '',
    revision: g.metadata?.labels?.['istio.io/rev'] ?? 'default',
    programmed: statusOf(g, 'Programmed')?.status ?? 'False',
    conditions: (g.status?.conditions ?? []).map((c) => ({
      type: c.type,
      status: c.status,
      reason: c.reason ?? '',
      message: c.message ?? '',
    })),
  };
}

function output(f: OpsFlags): OutputFormat {
  const o = f.output ?? 'table';
  if (o !== 'table' && o !== 'json' && o !== 'yaml')
    throw new UsageError(`-o "${o}": one of table, json, yaml`);
  return o;
}

async function custom(kc: KubeConfig) {
  const { CustomObjectsApi } = await import('@kubernetes/client-node');
  return kc.makeApiClient(CustomObjectsApi);
}

/** A cluster is named (--kubeconfig / --kubernetes), or nothing local is: then the default kubeconfig. */
function useCluster(f: OpsFlags): boolean {
  if (f.kubeconfig || f.kubernetes) return true;
  if (f.manifests) return false;
  return readDemoState(demoDir(f.dir)) === undefined;
}

async function clusterRows(f: OpsFlags): Promise<WaypointRow[]> {
  const api = await custom(await loadKubeConfig(f.kubeconfig));
  const list = (
    f.allNamespaces
      ? await api.listClusterCustomObject(GW)
      : await api.listNamespacedCustomObject({ ...GW, namespace: f.namespace ?? 'default' })
  ) as { items: GatewayObj[] };
  return list.items.filter((g) => g.spec?.gatewayClassName === WAYPOINT_CLASS).map(rowOf);
}

/** The demo or a manifest directory: Gateways as the mesh reads them; programmed when its pod runs. */
async function localRows(f: OpsFlags): Promise<WaypointRow[]> {
  const st = f.manifests ? undefined : readDemoState(demoDir(f.dir));
  const dir = f.manifests ?? st?.manifestsDir;
  if (!dir) throw new UsageError('no demo running and no -m DIR: nothing to read waypoints from');
  const { loadManifestDirectory } = await import('../core/sources/manifests.js');
  const loaded = await loadManifestDirectory(dir);
  return loaded.state
    .waypoints()
    .filter((w) => f.allNamespaces || w.namespace === (f.namespace ?? 'default'))
    .map((w) => {
      const running =
        st?.waypoint === 'running' &&
        st.pods.some((p) => p.run === 'waypoint' && p.namespace === w.namespace && p.name === w.name);
      const why = st
        ? running
          ? 'its pod runs in the demo'
          : 'no pod runs it in the demo'
        : 'a manifest only';
      return {
        namespace: w.namespace,
        name: w.name,
        revision: 'default',
        programmed: running ? 'True' : 'False',
        conditions: [
          {
            type: 'Programmed',
            status: running ? 'True' : 'False',
            reason: running ? 'Programmed' : 'Pending',
            message: why,
          },
        ],
      };
    });
}

function renderList(rows: WaypointRow[], all: boolean): string {
  const head = [...(all ? ['NAMESPACE'] : []), 'NAME', 'REVISION', 'PROGRAMMED'];
  return table(
    head,
    rows.map((r) => [...(all ? [r.namespace] : []), r.name, r.revision, r.programmed]),
  );
}

function renderStatus(rows: WaypointRow[]): string {
  return table(
    ['NAMESPACE', 'NAME', 'STATUS', 'TYPE', 'REASON', 'MESSAGE'],
    rows.flatMap((r) =>
      r.conditions.length > 0
        ? r.conditions.map((c) => [r.namespace, r.name, c.status, c.type, c.reason, c.message])
        : [
            [
              r.namespace,
              r.name,
              'Unknown',
              'Programmed',
              'Pending',
              'no status yet (is the waypoint controller running?)',
            ],
          ],
    ),
  );
}

function seconds(v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const m = /^(\d+)(s|m)?$/.exec(v);
  if (!m) throw new UsageError(`--timeout "${v}": a duration like 30s or 2m`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
}

async function apply(f: OpsFlags): Promise<void> {
  const namespace = f.namespace ?? 'default';
  const name = f.name ?? 'waypoint';
  const body = gatewayManifest({
    name,
    namespace,
    waypointFor: f.for ?? 'service',
    ...(f.revision ? { revision: f.revision } : {}),
  });
  const kc = await loadKubeConfig(f.kubeconfig);
  const api = await custom(kc);
  try {
    await api.createNamespacedCustomObject({ ...GW, namespace, body });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw clusterError(err, `waypoint ${namespace}/${name}`);
    const cur = (await api.getNamespacedCustomObject({ ...GW, namespace, name })) as GatewayObj;
    const next = body as GatewayObj;
    next.metadata = { ...next.metadata, resourceVersion: cur.metadata?.resourceVersion ?? '' };
    await api.replaceNamespacedCustomObject({ ...GW, namespace, name, body: next });
  }
  process.stdout.write(`✅ waypoint ${namespace}/${name} applied\n`);
  if (f.enrollNamespace) {
    const { CoreV1Api, PatchStrategy, setHeaderOptions } = await import('@kubernetes/client-node');
    await kc
      .makeApiClient(CoreV1Api)
      .patchNamespace(
        { name: namespace, body: { metadata: { labels: { 'istio.io/use-waypoint': name } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    process.stdout.write(`✅ namespace ${namespace} labeled with "istio.io/use-waypoint: ${name}"\n`);
  }
  if (f.wait) {
    const until = Date.now() + seconds(f.timeout, 90) * 1000;
    for (;;) {
      const g = (await api.getNamespacedCustomObject({ ...GW, namespace, name })) as GatewayObj;
      if (statusOf(g, 'Programmed')?.status === 'True') {
        process.stdout.write(`✅ waypoint ${namespace}/${name} programmed\n`);
        return;
      }
      if (Date.now() > until)
        throw new CommandFailure(
          'WAYPOINT_NOT_PROGRAMMED',
          `waypoint ${namespace}/${name} is not Programmed after ${seconds(f.timeout, 90)} s (is the waypoint controller running? \`ambit waypoint status -n ${namespace} --name ${name}\`)`,
        );
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function remove(names: string[], f: OpsFlags): Promise<void> {
  const namespace = f.namespace ?? 'default';
  if (names.length === 0 && !f.all) throw new UsageError('name the waypoints to delete, or pass --all');
  if (names.length > 0 && f.all) throw new UsageError('give waypoint names or --all, not both');
  const api = await custom(await loadKubeConfig(f.kubeconfig));
  const targets = f.all ? (await clusterRows({ ...f, allNamespaces: false })).map((r) => r.name) : names;
  let missing = 0;
  for (const name of targets) {
    try {
      await api.deleteNamespacedCustomObject({ ...GW, namespace, name });
      process.stdout.write(`waypoint ${namespace}/${name} deleted\n`);
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw clusterError(err, `waypoint ${namespace}/${name}`);
      process.stderr.write(`ambit: waypoint ${namespace}/${name} not found\n`);
      missing++;
    }
  }
  if (missing > 0) process.exitCode = 1;
}

function clusterError(err: unknown, what: string): Error {
  const e = err as { code?: number; body?: unknown; message?: string };
  let detail = e.message ?? String(err);
  if (typeof e.body === 'string') {
    try {
      detail = (JSON.parse(e.body) as { message?: string }).message ?? detail;
    } catch {}
  }
  return new CommandFailure('CLUSTER_REQUEST_FAILED', `${what}: ${detail}`);
}

export function registerWaypointOps(wp: Command): void {
  const cluster = (c: Command) =>
    c
      .option('-n, --namespace <ns>', 'namespace (default: default)')
      .option('--kubeconfig <file>', 'kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)');
  const read = (c: Command) =>
    cluster(c)
      .option('-m, --manifests <dir>', 'read a manifest directory instead of a cluster')
      .option('--dir <dir>', 'the demo directory (state file); used when no --kubeconfig is given')
      .option('-o, --output <format>', 'table | json | yaml', 'table');
  const flags = (cmd: Command) => cmd.optsWithGlobals() as OpsFlags;

  read(
    wp
      .command('list')
      .description('list the waypoints (Gateways of class istio-waypoint), like istioctl waypoint list'),
  )
    .option('-A, --all-namespaces', 'every namespace')
    .action(async (_o: unknown, cmd: Command) => {
      const f = flags(cmd);
      const o = output(f);
      const rows = useCluster(f) ? await clusterRows(f) : await localRows(f);
      if (rows.length === 0 && o === 'table') {
        process.stdout.write(
          `No waypoints found${f.allNamespaces ? '' : ` in namespace ${f.namespace ?? 'default'}`}.\n`,
        );
        return;
      }
      process.stdout.write(formatData(o, rows, () => renderList(rows, !!f.allNamespaces)));
    });

  read(wp.command('status').description("a waypoint's conditions; exits 1 until it is Programmed"))
    .option('--name <name>', 'waypoint name (default: waypoint)')
    .action(async (_o: unknown, cmd: Command) => {
      const f = flags(cmd);
      const o = output(f);
      const name = f.name ?? 'waypoint';
      const rows = (useCluster(f) ? await clusterRows(f) : await localRows(f)).filter((r) => r.name === name);
      if (rows.length === 0)
        throw new CommandFailure(
          'WAYPOINT_NOT_FOUND',
          `waypoint ${f.namespace ?? 'default'}/${name} not found (\`ambit waypoint list -A\` lists them)`,
        );
      process.stdout.write(formatData(o, rows, () => renderStatus(rows)));
      if (rows.some((r) => r.programmed !== 'True')) process.exitCode = 1;
    });

  cluster(wp.command('delete').description('delete waypoints by name, or --all in the namespace'))
    .argument('[names...]', 'waypoint names')
    .option('--all', 'every waypoint in the namespace')
    .action(async (names: string[], _o: unknown, cmd: Command) => {
      await remove(names, flags(cmd));
    });
}

/** `waypoint apply` without -o/--out: the cluster (istioctl applies too). Exposed for cli/waypoint.ts. */
export const applyToCluster = (f: OpsFlags): Promise<void> => apply(f);

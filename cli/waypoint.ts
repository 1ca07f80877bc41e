// `ambit waypoint`: runs the L7 proxy for one waypoint Gateway (identity spiffe://<td>/ns/<ns>/sa/<name>)
// against a manifest directory and the CA; `ambit waypoint apply` writes the Gateway that declares one,
// like `istioctl waypoint apply` (print it with -o yaml, write it into the manifest directory with --out, or
// by default apply it to the cluster); `list`, `status` and `delete` are in cli/waypoint-ops.ts.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import {
  PATH_NORMALIZATIONS,
  type PathNormalization,
  isPathNormalization,
} from '../core/http/request-target.js';
import { SYNC_TIMEOUT_HELP, syncTimeoutFrom } from '../core/sources/sync-timeout.js';
import { gatewayManifestYaml } from '../waypoint/gateway-manifest.js';
import { runWaypoint } from '../waypoint/waypoint.js';
import { registerWaypointOps } from './waypoint-ops.js';

interface RunFlags {
  name?: string;
  namespace?: string;
  manifests?: string;
  kubernetes?: boolean;
  kubeconfig?: string;
  syncTimeout?: string;
  ca?: string;
  caRoot?: string;
  token?: string;
  trustDomain?: string;
  listen?: string;
  port?: string;
  statsPort?: string;
  adminPort?: string;
  headersTimeout?: string;
  maxStreams?: string;
  pathNormalization?: string;
  tracingEndpoint?: string;
  tracingSampling?: string;
  logLevel: string;
}

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new Error(`waypoint: --${name} ${JSON.stringify(v)} is not a port number 0..65535`);
  }
  return n;
}

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`waypoint: --${name} ${JSON.stringify(v)} is not a positive integer`);
  return n;
}

function pathNormalization(v: string): PathNormalization {
  if (!isPathNormalization(v))
    throw new Error(
      `waypoint: --path-normalization ${JSON.stringify(v)} is not one of ${PATH_NORMALIZATIONS.join(' | ')}`,
    );
  return v;
}

function required(flag: string, v: string | undefined): string {
  if (!v) throw new Error(`waypoint: --${flag} is required`);
  return v;
}

function tracingOf(f: RunFlags): { tracing?: { endpoint: string; samplingPercent?: number } } {
  if (f.tracingEndpoint === undefined) {
    if (f.tracingSampling !== undefined)
      throw new Error('waypoint: --tracing-sampling needs --tracing-endpoint');
    return {};
  }
  const p = f.tracingSampling === undefined ? undefined : Number(f.tracingSampling);
  if (p !== undefined && (!Number.isFinite(p) || p < 0 || p > 100))
    throw new Error(
      `waypoint: --tracing-sampling ${JSON.stringify(f.tracingSampling)} is not a percentage 0..100`,
    );
  return { tracing: { endpoint: f.tracingEndpoint, ...(p !== undefined ? { samplingPercent: p } : {}) } };
}

export function registerWaypoint(program: Command): void {
  const wp = program
    .command('waypoint')
    .description('run a waypoint (L7 proxy for a Gateway of class istio-waypoint), or write its Gateway')
    .option('--name <name>', 'Gateway name = service account of the waypoint identity', 'waypoint')
    .option('-n, --namespace <ns>', 'namespace of the Gateway')
    .option('-m, --manifests <dir>', 'manifest directory that is the cluster (watched)')
    .option('--kubernetes', 'read the mesh state from the Kubernetes API (in-cluster or ~/.kube/config)')
    .option('--kubeconfig <file>', 'kubeconfig for --kubernetes')
    .option('--sync-timeout <duration>', `with --kubernetes: ${SYNC_TIMEOUT_HELP}`)
    .option('--ca <host:port>', 'CA gRPC address (CA_ADDRESS)')
    .option('--ca-root <file>', 'PEM roots that signed the CA serving certificate')
    .option('--token <file>', "token presented to the CA, mapped to the waypoint's own identity")
    .option('--trust-domain <td>', 'mesh trust domain (TRUST_DOMAIN)')
    .option('--listen <addr>', 'HBONE listen address', '0.0.0.0')
    .option('--port <port>', 'HBONE port (the Gateway mesh listener)', '15008')
    .option('--stats-port <port>', 'Prometheus /metrics and /healthz/ready port', '15020')
    .option(
      '--admin-port <port>',
      'admin API on 127.0.0.1 only: /config_dump, /ready, /quitquitquit (Envoy admin port)',
      '15000',
    )
    .option('--headers-timeout <ms>', 'time to receive a request head before 408 (slowloris), default 10000')
    .option('--max-streams <n>', 'HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per client connection, default 100')
    .option(
      '--path-normalization <mode>',
      'Istio meshConfig.pathNormalization: NONE | BASE | MERGE_SLASHES | DECODE_AND_MERGE_SLASHES (default BASE)',
    )
    .option(
      '--tracing-endpoint <url>',
      'export request spans over OTLP/HTTP to this URL (e.g. http://collector:4318/v1/traces); off when absent',
    )
    .option(
      '--tracing-sampling <percent>',
      'percentage of requests without an upstream sampling decision that are traced (default 1, as Istio)',
    )
    .option('--log-level <level>', 'error | warn | info | debug | trace', process.env.LOG_LEVEL ?? 'info')
    .action(async (f: RunFlags) => {
      // Set once runWaypoint returns; a /quitquitquit that arrives earlier is ignored.
      let stop: (() => Promise<void>) | undefined;
      let stopping = false;
      const shutdown = (): void => {
        if (stopping || !stop) return;
        stopping = true;
        void stop().finally(() => process.exit(0));
      };
      const running = await runWaypoint({
        name: required('name', f.name),
        namespace: required('namespace', f.namespace),
        ...(f.kubernetes || f.kubeconfig
          ? {
              kubernetes: true,
              ...(f.kubeconfig ? { kubeconfig: f.kubeconfig } : {}),
              syncTimeoutMs: syncTimeoutFrom(f.syncTimeout),
            }
          : { manifestsDir: required('manifests', f.manifests) }),
        caAddress: required('ca', f.ca),
        caRootFile: required('ca-root', f.caRoot),
        tokenFile: required('token', f.token),
        ...(f.trustDomain ? { trustDomain: f.trustDomain } : {}),
        listenAddress: f.listen ?? '0.0.0.0',
        listenPort: int('port', f.port) ?? 15008,
        statsPort: int('stats-port', f.statsPort) ?? 15020,
        adminPort: int('admin-port', f.adminPort) ?? 15000,
        onQuit: () => shutdown(),
        ...(f.pathNormalization !== undefined
          ? { pathNormalization: pathNormalization(f.pathNormalization) }
          : {}),
        limits: {
          ...(f.headersTimeout !== undefined
            ? { headersTimeoutMs: positive('headers-timeout', f.headersTimeout) }
            : {}),
          ...(f.maxStreams !== undefined
            ? { maxConcurrentStreams: positive('max-streams', f.maxStreams) }
            : {}),
        },
        logLevel: (f.logLevel === 'off' ? 'silent' : f.logLevel) as 'info',
        ...tracingOf(f),
      });
      stop = running.stop;
      const { waypoint } = running;
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
      // Tests and `ambit demo` start the waypoint as a child with an IPC channel: tell the parent we are up.
      process.send?.({ ready: true, ports: waypoint.ports });
    });

  registerWaypointOps(wp);
  wp.command('apply')
    .description('write the Gateway that declares a waypoint, like `istioctl waypoint apply`')
    // -n and --name are the parent's options too; commander hands them to whichever parses first, so the
    // action reads both levels (optsWithGlobals).
    .option('-n, --namespace <ns>', 'namespace of the waypoint (required)')
    .option('--name <name>', 'waypoint (Gateway) name (default: waypoint)')
    .option('--for <type>', 'traffic type: service | workload | all | none', 'service')
    .option('--revision <rev>', 'istio.io/rev label')
    .option('-o, --output <format>', 'print the manifest instead of writing it: yaml')
    .option('--out <dir>', 'write <dir>/waypoint-<ns>-<name>.yaml (a manifest directory is the cluster)')
    .option('--kubeconfig <file>', 'apply to this cluster (the default without -o / --out)')
    .option('--enroll-namespace', 'label the namespace istio.io/use-waypoint=<name> (cluster)')
    .option('--wait', 'wait until the waypoint is Programmed (cluster)')
    .option('--timeout <duration>', 'with --wait: how long, e.g. 90s (default) or 2m')
    .action(async (_local: unknown, cmd: Command) => {
      const f = cmd.optsWithGlobals() as {
        namespace?: string;
        name?: string;
        for: string;
        revision?: string;
        output?: string;
        out?: string;
        kubeconfig?: string;
      };
      // Neither printed nor written to a directory: applied to the cluster, as istioctl does.
      if (f.output === undefined && f.out === undefined) {
        await (await import('./waypoint-ops.js')).applyToCluster(f);
        return;
      }
      const namespace = required('namespace', f.namespace);
      const name = f.name ?? 'waypoint';
      if (f.output !== undefined && f.output !== 'yaml') {
        throw new Error(`waypoint apply: -o ${JSON.stringify(f.output)}: only yaml is supported`);
      }
      const text = gatewayManifestYaml({
        name,
        namespace,
        waypointFor: f.for,
        ...(f.revision ? { revision: f.revision } : {}),
      });
      if (f.output === 'yaml') process.stdout.write(text);
      if (f.out) {
        mkdirSync(f.out, { recursive: true });
        const file = join(f.out, `waypoint-${namespace}-${name}.yaml`);
        writeFileSync(file, text);
        // istioctl's wording.
        process.stderr.write(`✅ waypoint ${namespace}/${name} applied (${file})\n`);
      }
    });
}

// `ambit ztunnel`: runs the node proxy for one node — capture listeners 15001/15006/15008, admin on
// 127.0.0.1:15000, metrics on 15020, readiness on 15021 — against a manifest directory and the CA.
import type { Command } from 'commander';
import { parseSyncTimeout, SYNC_TIMEOUT_HELP } from '../core/sources/sync-timeout.js';
import { configFromEnv } from '../ztunnel/config.js';

interface Flags {
  node?: string;
  manifests?: string;
  kubernetes?: boolean;
  discovery?: string;
  kubeconfig?: string;
  syncTimeout?: string;
  ca?: string;
  caRoot?: string;
  token?: string;
  trustDomain?: string;
  logLevel?: string;
  drainDeadline?: string;
  transparent: boolean;
  preserveSourceIp: boolean;
  adminPort?: string;
  statsPort?: string;
  readinessPort?: string;
}

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`ztunnel: --${name} ${JSON.stringify(v)} is not a non-negative integer`);
  return n;
}

export function registerZtunnel(program: Command): void {
  program
    .command('ztunnel')
    .description('run the ztunnel node proxy (HBONE, L4 policy, telemetry) for one node')
    .option('--node <name>', 'node this ztunnel serves (NODE_NAME)')
    .option('-m, --manifests <dir>', 'manifest directory that is the cluster (watched)')
    .option(
      '--discovery <host:port>',
      "read the mesh state from the discovery tier over Istio's WDS (XDS_ADDRESS)",
    )
    .option('--kubernetes', 'read the mesh state from the Kubernetes API (in-cluster or ~/.kube/config)')
    .option('--kubeconfig <file>', 'kubeconfig for --kubernetes')
    .option('--sync-timeout <duration>', `with --kubernetes: ${SYNC_TIMEOUT_HELP}`)
    .option('--ca <host:port>', 'CA gRPC address (CA_ADDRESS)')
    .option('--ca-root <file>', 'PEM roots that signed the CA serving certificate')
    .option('--token <file>', 'node token presented to the CA')
    .option('--trust-domain <td>', 'mesh trust domain (TRUST_DOMAIN)')
    .option('--log-level <level>', 'error | warn | info | debug | trace', process.env.LOG_LEVEL ?? 'info')
    .option('--drain-deadline <ms>', 'drain deadline in ms (CONNECTION_TERMINATION_DEADLINE, default 5000)')
    .option('--no-transparent', 'plain (non IP_TRANSPARENT) listeners: no capture, loopback testing only')
    .option('--no-preserve-source-ip', 'dial pods from the node address instead of the client pod IP')
    .option('--admin-port <port>', 'admin port on 127.0.0.1 (default 15000)')
    .option('--stats-port <port>', 'Prometheus port (default 15020)')
    .option('--readiness-port <port>', 'readiness port (default 15021)')
    .action(async (f: Flags) => {
      const config = configFromEnv({
        ...(f.node ? { node: f.node } : {}),
        ...(f.manifests ? { manifestsDir: f.manifests } : {}),
        ...(f.kubernetes ? { kubernetes: true } : {}),
        ...(f.discovery ? { discoveryAddress: f.discovery } : {}),
        ...(f.kubeconfig ? { kubeconfig: f.kubeconfig } : {}),
        ...(f.syncTimeout !== undefined
          ? { kubernetesSyncTimeoutMs: parseSyncTimeout(f.syncTimeout, '--sync-timeout') }
          : {}),
        ...(f.ca ? { caAddress: f.ca } : {}),
        ...(f.caRoot ? { caRootFile: f.caRoot } : {}),
        ...(f.token ? { tokenFile: f.token } : {}),
        ...(f.trustDomain ? { trustDomain: f.trustDomain } : {}),
        logLevel: (f.logLevel === 'off' ? 'silent' : f.logLevel) as 'info',
        ...(f.drainDeadline !== undefined ? { drainDeadlineMs: int('drain-deadline', f.drainDeadline) } : {}),
        transparent: f.transparent,
        preserveSourceIp: f.preserveSourceIp,
        ...(f.adminPort !== undefined ? { adminPort: int('admin-port', f.adminPort) } : {}),
        ...(f.statsPort !== undefined ? { statsPort: int('stats-port', f.statsPort) } : {}),
        ...(f.readinessPort !== undefined ? { readinessPort: int('readiness-port', f.readinessPort) } : {}),
      });
      // Loaded on use: other ambit commands do not pay for ztunnel's modules.
      const { runZtunnel } = await import('../ztunnel/ztunnel.js');
      const { ztunnel } = await runZtunnel(config);
      ztunnel.handleSignals();
      // Tests and `ambit demo` start ztunnel as a child with an IPC channel: tell the parent we are up.
      process.send?.({ ready: true, ports: ztunnel.ports, admin: ztunnel.admin.ports });
    });
}

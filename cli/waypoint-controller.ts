// `ambit waypoint-controller`: keeps a Deployment + Service + ServiceAccount for every Gateway of
// class istio-waypoint (controllers/waypoint.ts) and, as istiod does for ambient, writes the status
// conditions of AuthorizationPolicies and Services (discovery/status-controller.ts; off with
// --no-policy-status). Runs in the cluster (the ambit-waypoint-controller chart) or against any kubeconfig.
import type { Command } from 'commander';
import { untilTerminated } from './common/signals.js';
import { pino } from 'pino';
import { PATH_NORMALIZATIONS, isPathNormalization } from '../core/http/request-target.js';
import { SYNC_TIMEOUT_HELP, syncTimeoutFrom } from '../core/sources/sync-timeout.js';
import { loadKubeConfig } from '../core/sources/kubeconfig.js';
import { terminalLogStream } from '../core/telemetry/terminal-log.js';

interface Options {
  kubeconfig?: string;
  image: string;
  pullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  domainSuffix: string;
  caAddress: string;
  waypointTracingEndpoint?: string;
  waypointPathNormalization?: string;
  syncTimeout?: string;
  policyStatus: boolean;
}

export function registerWaypointController(program: Command): void {
  program
    .command('waypoint-controller')
    .description('create a Deployment, Service and ServiceAccount for every Gateway of class istio-waypoint')
    .option('--kubeconfig <file>', 'kubeconfig (default: in-cluster, then $KUBECONFIG / ~/.kube/config)')
    .option(
      '--image <ref>',
      'image of the waypoint pods (env WAYPOINT_IMAGE)',
      process.env.WAYPOINT_IMAGE ?? 'ambit:latest',
    )
    .option('--pull-policy <policy>', 'imagePullPolicy of the waypoint pods', 'IfNotPresent')
    .option('--domain-suffix <suffix>', 'cluster DNS suffix for Gateway status hostnames', 'cluster.local')
    .option(
      '--ca-address <host:port>',
      'CA the waypoints use (CA_ADDRESS)',
      process.env.CA_ADDRESS ?? 'istiod.istio-system.svc:15012',
    )
    .option(
      '--waypoint-tracing-endpoint <url>',
      'OTLP/HTTP traces URL every waypoint exports its request spans to (off when absent)',
    )
    .option(
      '--waypoint-path-normalization <mode>',
      `Istio meshConfig.pathNormalization for every waypoint: ${PATH_NORMALIZATIONS.join(' | ')} (default: the waypoint's, BASE)`,
    )
    .option('--sync-timeout <duration>', SYNC_TIMEOUT_HELP)
    .option(
      '--no-policy-status',
      'do not write ZtunnelAccepted / WaypointAccepted / istio.io/WaypointBound conditions on AuthorizationPolicies and Services',
    )
    .action(async (opts: Options) => {
      if (!['Always', 'IfNotPresent', 'Never'].includes(opts.pullPolicy))
        throw new Error(`--pull-policy: "${opts.pullPolicy}" is not Always, IfNotPresent or Never`);
      const pathNormalization = opts.waypointPathNormalization;
      if (pathNormalization !== undefined && !isPathNormalization(pathNormalization))
        throw new Error(
          `--waypoint-path-normalization: "${pathNormalization}" is not one of ${PATH_NORMALIZATIONS.join(' | ')}`,
        );
      const { WaypointController } = await import('../controllers/waypoint.js');
      const kubeConfig = await loadKubeConfig(opts.kubeconfig);
      const logger = pino(
        { name: 'ambit-waypoint-controller', level: process.env.LOG_LEVEL ?? 'info' },
        terminalLogStream(1),
      );
      const controller = new WaypointController({
        kubeConfig,
        image: opts.image,
        imagePullPolicy: opts.pullPolicy,
        domainSuffix: opts.domainSuffix,
        caAddress: opts.caAddress,
        ...(opts.waypointTracingEndpoint ? { tracingEndpoint: opts.waypointTracingEndpoint } : {}),
        ...(pathNormalization !== undefined ? { pathNormalization } : {}),
        syncTimeoutMs: syncTimeoutFrom(opts.syncTimeout),
        logger,
      });
      await controller.start();
      let stopStatus: (() => Promise<void>) | undefined;
      if (opts.policyStatus) {
        const [{ KubernetesSource }, { StatusWriter }, { StatusController }] = await Promise.all([
          import('../core/sources/kubernetes.js'),
          import('../discovery/status-writer.js'),
          import('../discovery/status-controller.js'),
        ]);
        const statusLog = logger.child({ component: 'status' });
        // Only what the conditions depend on: policies, Services, waypoint Gateways, namespace labels.
        const source = new KubernetesSource({
          kubeConfig,
          kinds: ['Namespace', 'Service', 'AuthorizationPolicy', 'Gateway'],
          syncTimeoutMs: syncTimeoutFrom(opts.syncTimeout),
          logger: statusLog,
        });
        await source.start();
        const writer = new StatusWriter({ kubeConfig, logger: statusLog });
        const status = new StatusController({ source, writer, logger: statusLog });
        status.start();
        stopStatus = async () => {
          status.stop();
          writer.stop();
          await source.stop();
        };
      }
      console.error('ambit waypoint-controller: watching Gateways of class istio-waypoint; Ctrl-C to stop');
      await untilTerminated(() => Promise.all([controller.stop(), stopStatus?.()]));
    });
}

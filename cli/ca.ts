// `ambit ca`: runs the built-in CA (local mode; Kubernetes mode is issue 7), and
// `ambit ca issue`: signs a workload certificate directly with the CA's files, for operators.
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { type Logger, pino } from 'pino';
import { DEFAULT_TRUST_DOMAIN, formatSpiffeId, parseIdentityArg } from '../core/identity/spiffe.js';
import { type PodLocator, parseTokenFile, podLocatorOf } from '../ca/server/auth.js';
import { SYNC_TIMEOUT_HELP, syncTimeoutFrom } from '../core/sources/sync-timeout.js';
import { CaServer } from '../ca/server/ca-server.js';
import { ManifestSource } from '../core/sources/manifests.js';
import { caConfigFromEnv } from '../ca/server/config.js';
import { Signer, issueWorkloadCertificate } from '../ca/server/signer.js';
import { readCaDirectory, writeFileAtomic } from '../ca/server/store.js';
import { loadKubeConfig } from '../core/sources/kubeconfig.js';
import { untilTerminated } from './common/signals.js';
import { terminalLogStream } from '../core/telemetry/terminal-log.js';

const DEFAULT_CA_DIR = process.env.AMBIT_CA_DIR ?? '/var/lib/ambit/ca';

/** "24h", "90m", "30s", "7d" or plain seconds → seconds. */
export function parseDuration(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new Error(`${what}: "${text}" is not a duration (e.g. 24h, 90m, 3600)`);
  const n = Number(m[1]);
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  return Math.round(n * unit);
}

interface RunOptions {
  kubernetes?: boolean;
  kubeconfig?: string;
  namespace?: string;
  leaderElection?: boolean;
  discovery?: boolean;
  syncTimeout?: string;
  dir: string;
  cacerts?: string;
  listen: string;
  tokens?: string;
  trustDomain?: string;
  manifests?: string;
}

interface IssueOptions {
  identity: string;
  out: string;
  caDir: string;
  ttl: string;
  trustDomain?: string;
}

async function runKubernetesCa(
  opts: RunOptions,
  env: ReturnType<typeof caConfigFromEnv>,
  logger: Logger,
): Promise<void> {
  const { startKubernetesCa } = await import('../ca/server/kube-ca.js');
  const kubeConfig = await loadKubeConfig(opts.kubeconfig);
  // Istio's environment names for the TTLs (the chart sets them from values).
  const ttl = (name: string): number | undefined =>
    process.env[name] ? parseDuration(process.env[name] as string, name) : undefined;
  const defaultTtlSeconds = ttl('DEFAULT_WORKLOAD_CERT_TTL');
  const maxTtlSeconds = ttl('MAX_WORKLOAD_CERT_TTL');
  if (process.env.LOG_LEVEL) logger.level = process.env.LOG_LEVEL;
  const ca = await startKubernetesCa({
    kubeConfig,
    namespace: opts.namespace,
    leaderElection: opts.leaderElection ?? false,
    discovery: opts.discovery !== false,
    syncTimeoutMs: syncTimeoutFrom(opts.syncTimeout),
    ...(process.env.POD_NAME ? { identity: process.env.POD_NAME } : {}),
    config: {
      ...env,
      ...(defaultTtlSeconds ? { defaultTtlSeconds } : {}),
      ...(maxTtlSeconds ? { maxTtlSeconds } : {}),
      listen: opts.listen,
      ...(opts.cacerts ? { cacertsDir: opts.cacerts } : {}),
      ...(opts.trustDomain ? { trustDomain: opts.trustDomain } : {}),
    },
    logger,
  });
  console.error(
    `ambit ca: serving on ${ca.server.address} (${ca.server.authority.mode}, Kubernetes); Ctrl-C to stop`,
  );
  await untilTerminated(() => ca.close());
}

export function registerCa(program: Command): void {
  const ca = program
    .command('ca')
    .description('run the built-in CA (Istio IstioCertificateService over gRPC/TLS, local mode)')
    .option(
      '--dir <dir>',
      'local store for the self-signed root (ca-cert.pem, ca-key.pem, ...)',
      DEFAULT_CA_DIR,
    )
    .option(
      '--cacerts <dir>',
      'plugged-in CA (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem), hot-reloaded',
    )
    .option('--listen <host:port>', 'gRPC listen address', '127.0.0.1:15012')
    .option('--tokens <file>', 'token file: tokens: [{token, identity: spiffe://..., node?}]')
    .option(
      '-m, --manifests <dir>',
      "the cluster's pods (manifests, watched): a token's `node:` may then get certificates for that node's pods (ImpersonatedIdentity), and the discovery tier serves them over Istio's WDS (`ambit ztunnel --discovery`)",
    )
    .option('--trust-domain <td>', `mesh trust domain (env TRUST_DOMAIN; default ${DEFAULT_TRUST_DOMAIN})`)
    .option(
      '--kubernetes',
      'Kubernetes mode: root in Secret istio-ca-secret, TokenReview auth, istio-ca-root-cert in every namespace',
    )
    .option(
      '--kubeconfig <file>',
      'kubeconfig for --kubernetes (default: in-cluster, then $KUBECONFIG / ~/.kube/config)',
    )
    .option(
      '--namespace <ns>',
      'the CA namespace in --kubernetes mode (env POD_NAMESPACE)',
      process.env.POD_NAMESPACE ?? 'istio-system',
    )
    .option('--leader-election', 'elect a leader on a Lease (run with more than one replica)')
    .option(
      '--no-discovery',
      "with --kubernetes: do not serve the discovery tier (Istio's WDS); watch only Namespaces and Pods",
    )
    .option('--sync-timeout <duration>', `with --kubernetes: ${SYNC_TIMEOUT_HELP}`)
    .action(async (opts: RunOptions) => {
      const logger = pino({ name: 'ambit-ca' }, terminalLogStream(1));
      const env = caConfigFromEnv(process.env);
      if (opts.kubernetes) {
        await runKubernetesCa(opts, env, logger);
        return;
      }
      // A node token (`node:`) impersonates the identities of pods on its node, as istiod allows ztunnel
      // (security/pkg/server/ca/node_auth.go): the CA must know where pods run, from the manifests.
      let podLocator: PodLocator | undefined;
      let source: ManifestSource | undefined;
      if (opts.manifests) {
        source = new ManifestSource(opts.manifests, { logger: logger.child({ component: 'manifests' }) });
        await source.start();
        podLocator = podLocatorOf(source.state);
      } else if (opts.tokens) {
        const nodeTokens = [
          ...parseTokenFile(await fs.readFile(opts.tokens, 'utf8'), opts.tokens).values(),
        ].filter((c) => c.node);
        if (nodeTokens.length > 0) {
          logger.warn(
            { tokens: opts.tokens },
            'node tokens given but no -m DIR: impersonation is refused until the CA knows where pods run',
          );
        }
      }
      // istiod serves discovery beside the CA on the same port: here Istio's WDS fed by that directory,
      // for `ambit ztunnel --discovery`.
      const discovery = source
        ? (await import('../discovery/discovery.js')).createDiscovery(
            source.state,
            logger.child({ component: 'discovery' }),
          )
        : undefined;
      const server = await CaServer.start(
        {
          ...env,
          dir: opts.dir,
          listen: opts.listen,
          ...(opts.cacerts ? { cacertsDir: opts.cacerts } : {}),
          ...(opts.tokens ? { tokensFile: opts.tokens } : {}),
          ...(opts.trustDomain ? { trustDomain: opts.trustDomain } : {}),
        },
        {
          logger,
          ...(podLocator ? { podLocator } : {}),
          ...(discovery ? { services: (authenticator) => [discovery.grpcService(authenticator)] } : {}),
        },
      );
      // Istio root distribution in local mode: the `istio-ca-root-cert` ConfigMap as a file, kept
      // apart from the store so a cacerts bundle never overwrites the self-signed store's roots.
      const rootFile = join(opts.dir, 'istio-ca-root-cert', 'root-cert.pem');
      await fs.mkdir(join(opts.dir, 'istio-ca-root-cert'), { recursive: true });
      await writeFileAtomic(rootFile, server.rootsPem());
      server.authority.on('changed', () => {
        writeFileAtomic(rootFile, server.rootsPem()).catch((err: unknown) =>
          logger.error({ err }, 'ca: could not write root-cert.pem'),
        );
      });
      console.error(
        `ambit ca: serving on ${server.address} (${server.authority.mode}); roots in ${rootFile}; Ctrl-C to stop`,
      );
      await untilTerminated(async () => {
        discovery?.close();
        await server.close();
        await source?.stop();
      });
    });

  ca.command('issue')
    .description(
      "sign a workload certificate with the CA's files; writes key.pem, cert-chain.pem, root-cert.pem",
    )
    .requiredOption('--identity <spiffe-id>', 'spiffe://<td>/ns/<ns>/sa/<sa> (or ns/sa)')
    .requiredOption('--out <dir>', 'output directory')
    .option('--ca-dir <dir>', 'CA files (store or cacerts layout)', DEFAULT_CA_DIR)
    .option('--ttl <duration>', 'certificate lifetime (max 90d)', '24h')
    .option('--trust-domain <td>', 'trust domain the CA signs for (default: the root O=, else cluster.local)')
    .action(async (opts: IssueOptions) => {
      const identity = parseIdentityArg(opts.identity, opts.trustDomain ?? DEFAULT_TRUST_DOMAIN);
      if (!identity) throw new Error(`--identity: "${opts.identity}" is not a workload identity`);
      const material = await readCaDirectory(opts.caDir);
      if (!material)
        throw new Error(
          `--ca-dir ${opts.caDir}: no ca-cert.pem/ca-key.pem there (run \`ambit ca --dir ${opts.caDir}\` once)`,
        );
      const signer = new Signer(material, opts.trustDomain ? { trustDomain: opts.trustDomain } : {});
      const wc = await issueWorkloadCertificate(signer, identity, parseDuration(opts.ttl, '--ttl'));
      await fs.mkdir(opts.out, { recursive: true });
      await writeFileAtomic(join(opts.out, 'key.pem'), wc.keyPem, 0o600);
      await writeFileAtomic(join(opts.out, 'cert-chain.pem'), wc.certChainPem.join(''));
      await writeFileAtomic(join(opts.out, 'root-cert.pem'), wc.rootsPem.join(''));
      console.log(
        `issued ${formatSpiffeId(identity)} serial ${wc.serial} valid until ${wc.notAfter.toISOString()} → ${opts.out}/{key.pem,cert-chain.pem,root-cert.pem}`,
      );
    });
}

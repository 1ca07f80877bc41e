// The CA on Kubernetes, composed in one place: the root in Secret `istio-ca-secret` (or a plugged-in
// `cacerts` Secret mounted as a directory, hot-reloaded), TokenReview authentication (audience
// istio-ca), the pod-on-node impersonation check answered by a Kubernetes informer's MeshState,
// `istio-ca-root-cert` published to every namespace, Lease leader election when more than one
// replica runs (the leader creates/renews the root and publishes ConfigMaps; every replica signs), and
// the discovery tier: Istio's WDS (discovery/) fed by the same informers, served beside the CA on one
// TLS port, as istiod serves XDS and CA together on 15012. Every replica serves discovery.
import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import { type Logger, pino } from 'pino';
import { KubernetesSource } from '../../core/sources/kubernetes.js';
import type { Discovery } from '../../discovery/discovery.js';
import { podLocatorOf } from './auth.js';
import { CaServer } from './ca-server.js';
import type { CaServerConfigInput } from './config.js';
import { TokenReviewAuthenticator } from './kube-auth.js';
import { LeaseLeaderElector } from './kube-leader.js';
import { RootCertPublisher } from './kube-root-cert.js';
import { KubeSecretCaStore } from './kube-store.js';

export interface KubernetesCaOptions {
  kubeConfig: KubeConfig;
  /** CA settings (listen, trustDomain, cacertsDir, TTLs, ...); `dir` is not used (the Secret is the store). */
  config: Omit<CaServerConfigInput, 'dir' | 'tokensFile'>;
  /** The CA's namespace (istiod POD_NAMESPACE). Default istio-system. */
  namespace?: string;
  /** Elect a leader on a Lease (set when replicas > 1). Default false. */
  leaderElection?: boolean;
  /** This replica's name for the Lease (POD_NAME). Default the hostname. */
  identity?: string;
  /** Lease timings (tests shorten them). */
  lease?: { durationSeconds?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  /** First-sync deadline of the pod informer, ms (core/sources/sync-timeout.ts; default 120 s). */
  syncTimeoutMs?: number;
  /**
   * Serve the discovery tier (Istio's WDS, `ambit ztunnel --discovery`) from a watch of every kind the
   * mesh reads. Default true; false watches only Namespaces and Pods (enough for the CA's node check).
   */
  discovery?: boolean;
  /** Publish `istio-ca-root-cert` to namespaces. Default true. */
  publishRoots?: boolean;
  logger?: Logger;
}

export interface KubernetesCa {
  server: CaServer;
  source: KubernetesSource;
  /** The discovery tier, when served. */
  discovery: Discovery | undefined;
  publisher: RootCertPublisher | undefined;
  elector: LeaseLeaderElector | undefined;
  close(): Promise<void>;
}

export const CA_LEASE_NAME = 'ambit-ca-leader';

export async function startKubernetesCa(o: KubernetesCaOptions): Promise<KubernetesCa> {
  const logger = o.logger ?? pino({ name: 'ambit-ca' });
  const namespace = o.namespace ?? 'istio-system';
  const cleanups: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    let elector: LeaseLeaderElector | undefined;
    if (o.leaderElection) {
      elector = new LeaseLeaderElector({
        kubeConfig: o.kubeConfig,
        namespace,
        name: CA_LEASE_NAME,
        identity: o.identity ?? hostname(),
        leaseDurationSeconds: o.lease?.durationSeconds,
        renewDeadlineMs: o.lease?.renewDeadlineMs,
        retryPeriodMs: o.lease?.retryPeriodMs,
        logger,
      });
      await elector.start();
      cleanups.push(() => elector!.stop());
    }
    const isLeader = () => !elector || elector.isLeader();
    // Without discovery, Namespaces and Pods are enough for "does a pod with this identity run on that
    // node?"; with it, every kind the Translator reads (the ztunnels' state comes from here).
    const serveDiscovery = o.discovery ?? true;
    const source = new KubernetesSource({
      kubeConfig: o.kubeConfig,
      ...(serveDiscovery ? {} : { kinds: ['Namespace', 'Pod'] as const }),
      ...(o.syncTimeoutMs ? { syncTimeoutMs: o.syncTimeoutMs } : {}),
      translatorOptions: o.config.trustDomain ? { trustDomain: o.config.trustDomain } : {},
      logger,
    });
    await source.start();
    cleanups.push(() => source.stop());
    const trustDomain = o.config.trustDomain ?? 'cluster.local';
    const discovery = serveDiscovery
      ? (await import('../../discovery/discovery.js')).createDiscovery(
          source.state,
          logger.child({ component: 'discovery' }),
        )
      : undefined;
    const server = await CaServer.start(
      { ...o.config, dir: `secret:${namespace}/istio-ca-secret` },
      {
        logger,
        store: new KubeSecretCaStore({ kubeConfig: o.kubeConfig, namespace, mayCreate: isLeader, logger }),
        authenticator: new TokenReviewAuthenticator({ kubeConfig: o.kubeConfig, trustDomain, logger }),
        podLocator: podLocatorOf(source.state),
        ...(discovery ? { services: (authenticator) => [discovery.grpcService(authenticator)] } : {}),
      },
    );
    cleanups.push(() => server.close());
    // Run before server.close() (cleanups run in reverse): open WDS streams would hold its shutdown.
    if (discovery)
      cleanups.push(async () => {
        discovery.close();
      });
    let publisher: RootCertPublisher | undefined;
    if (o.publishRoots ?? true) {
      publisher = new RootCertPublisher({
        kubeConfig: o.kubeConfig,
        roots: () => server.rootsPem(),
        isLeader,
        logger,
      });
      await publisher.start();
      cleanups.push(() => publisher!.stop());
      server.authority.on('changed', () => publisher?.syncAll());
      elector?.on('leading', () => publisher?.syncAll());
    }
    return { server, source, discovery, publisher, elector, close };
  } catch (err) {
    await close();
    throw err;
  }
}

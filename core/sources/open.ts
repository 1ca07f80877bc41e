// The state source a component starts with, chosen by its flags: the discovery tier (Istio WDS, istiod's
// role), the Kubernetes API, or a manifest directory. ztunnel and the waypoint open it through this one
// function, so both read Kubernetes the same way: in a pod without a kubeconfig the service account is
// the config (core/sources/in-cluster.ts, no KubeConfig and API clients loaded), else the kubeconfig
// loader. Each source module is imported on use: a process in one mode never loads the others.
import type { Logger } from 'pino';
import type { KubernetesSource } from './kubernetes.js';
import type { ManifestSource } from './manifests.js';
import type { WdsSource, WdsSourceOptions } from './wds.js';

export interface OpenStateSourceOptions {
  /** The discovery tier; wins over the others when given. */
  discovery?: Omit<WdsSourceOptions, 'logger' | 'state'>;
  /** The Kubernetes API: `kubeconfig` file, else in-cluster, else the default kubeconfig search. */
  kubernetes?: { kubeconfig?: string; syncTimeoutMs?: number };
  /** A manifest directory that is the cluster (watched). */
  manifestsDir?: string;
  trustDomain: string;
  /** The source's logger, by scope (`discovery`, `kubernetes`, `manifests`). */
  loggerFor: (scope: string) => Logger;
  /** The component's own typed configuration error (its CLI maps it to an exit code). */
  configError: (message: string) => Error;
  /** Prefix of that error's message, e.g. `ztunnel config`. */
  component: string;
}

export type OpenedStateSource = WdsSource | KubernetesSource | ManifestSource;

/** Builds (does not start) the source the options name; a missing choice or bad kubeconfig is a config error. */
export async function openStateSource(o: OpenStateSourceOptions): Promise<OpenedStateSource> {
  if (o.discovery) {
    const { WdsSource } = await import('./wds.js');
    return new WdsSource({ ...o.discovery, logger: o.loggerFor('discovery') });
  }
  if (o.kubernetes) {
    const { KubernetesSource } = await import('./kubernetes.js');
    const { inClusterConfig } = await import('./in-cluster.js');
    const { loadKubeConfig } = await import('./kubeconfig.js');
    const { kubeconfig, syncTimeoutMs } = o.kubernetes;
    let kubeConfig: import('./kubernetes.js').ClusterAccess | undefined;
    try {
      kubeConfig = kubeconfig ? undefined : inClusterConfig();
      kubeConfig ??= await loadKubeConfig(kubeconfig);
    } catch (err) {
      throw o.configError(
        `${o.component}: kubeconfig ${kubeconfig ?? '(default)'}: ${(err as Error).message}`,
      );
    }
    return new KubernetesSource({
      kubeConfig,
      ...(syncTimeoutMs ? { syncTimeoutMs } : {}),
      translatorOptions: { trustDomain: o.trustDomain },
      logger: o.loggerFor('kubernetes'),
    });
  }
  if (o.manifestsDir) {
    const { ManifestSource } = await import('./manifests.js');
    return new ManifestSource(o.manifestsDir, {
      logger: o.loggerFor('manifests'),
      translatorOptions: { trustDomain: o.trustDomain },
    });
  }
  throw o.configError(
    `${o.component}: no state source: a manifest directory (-m DIR) or --kubernetes is required`,
  );
}

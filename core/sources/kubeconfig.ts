// The one way a component loads a kubeconfig: the file given (--kubeconfig / KUBECONFIG-style flag), else
// client-node's default search ($KUBECONFIG, ~/.kube/config, then the in-cluster service account).
// client-node is imported lazily: a process in manifests mode never loads its generated API clients
// (core/sources/in-cluster.ts explains the cost).
import type { KubeConfig } from '@kubernetes/client-node';

/** Loads `file`, or the default kubeconfig when undefined; throws client-node's error for a bad file. */
export async function loadKubeConfig(file: string | undefined): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

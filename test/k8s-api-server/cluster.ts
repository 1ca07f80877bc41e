// The start of every test against the test API server: the server on loopback, a KubeConfig for it
// (client-node, as the components load theirs), a CoreV1 client, and the namespaces the test needs.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { type TestApiServerOptions, TestKubernetesApiServer } from './server.js';

export interface TestCluster {
  api: TestKubernetesApiServer;
  kc: KubeConfig;
  core: CoreV1Api;
}

export async function startTestCluster(
  namespaces: string[],
  opts: TestApiServerOptions = {},
): Promise<TestCluster> {
  const api = new TestKubernetesApiServer(opts);
  await api.listen();
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfig());
  const core = kc.makeApiClient(CoreV1Api);
  for (const name of namespaces) await core.createNamespace({ body: { metadata: { name } } });
  return { api, kc, core };
}

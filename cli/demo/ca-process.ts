// The demo's CA process (`ambit demo ca-server`, started by `ambit demo up` inside node 1's netns): the
// mesh CA (ca/server, Istio's IstioCertificateService) with local-mode node tokens, and impersonation
// checked against the demo's manifests — a node's ztunnel may only ask for identities of pods on its
// node, as istiod checks for ztunnel (docs/architecture.md §3). Like istiod it also serves the discovery tier on the
// same port: Istio's WDS fed by the manifests directory, which the demo's ztunnels read.
import { pino } from 'pino';
import { podLocatorOf } from '../../ca/server/auth.js';
import { CaServer } from '../../ca/server/ca-server.js';
import { ManifestSource } from '../../core/sources/manifests.js';
import { createDiscovery } from '../../discovery/discovery.js';

export interface DemoCaOptions {
  dir: string;
  tokens: string;
  listen: string;
  manifests: string;
}

export async function runDemoCa(o: DemoCaOptions): Promise<void> {
  const logger = pino({ name: 'ambit-demo-ca', level: 'info' }, pino.destination(2));
  const source = new ManifestSource(o.manifests, { logger: logger.child({ component: 'manifests' }) });
  await source.start();
  const discovery = createDiscovery(source.state, logger.child({ component: 'discovery' }), 'demo');
  const host = o.listen.slice(0, o.listen.lastIndexOf(':'));
  const server = await CaServer.start(
    { dir: o.dir, tokensFile: o.tokens, listen: o.listen, servingIps: ['127.0.0.1', host] },
    {
      logger,
      podLocator: podLocatorOf(source.state),
      services: (authenticator) => [discovery.grpcService(authenticator)],
    },
  );
  logger.info({ address: server.address }, 'demo CA serving');
  process.send?.({ ready: server.port });
  const stop = async (): Promise<void> => {
    discovery.close();
    await server.close(500).catch(() => undefined);
    await source.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

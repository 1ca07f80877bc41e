// Child process for the ztunnel end-to-end tests: the mesh CA (ca/server CaServer, Istio's gRPC API)
// running inside a node netns, with local-mode token auth and impersonation checked against the same
// manifest directory (a node token may only ask for identities of pods on its node). Like istiod it also
// serves the discovery tier (Istio's WDS) on the same port, fed by that directory: the ztunnels of the
// test worlds read their state from it (test/harness/mesh.ts ztunnelStateArgs).
// `node ztunnel-ca.js DIR TOKENS LISTEN_HOST:PORT MANIFESTS` → IPC {ready: port} once serving.
import { pino } from 'pino';
import { CaServer } from '../ca/server/ca-server.js';
import { formatSpiffeId } from '../core/identity/spiffe.js';
import { ManifestSource } from '../core/sources/manifests.js';
import { createDiscovery } from '../discovery/discovery.js';

const [dir, tokensFile, listen, manifests] = process.argv.slice(2);
if (!dir || !tokensFile || !listen || !manifests) {
  console.error('usage: ztunnel-ca DIR TOKENS HOST:PORT MANIFESTS');
  process.exit(2);
}
const logger = pino({ level: 'warn' }, pino.destination(2));
const source = new ManifestSource(manifests, { logger });
await source.start();
const discovery = createDiscovery(source.state, logger, 'test-ca');
const host = listen.slice(0, listen.lastIndexOf(':'));
const server = await CaServer.start(
  { dir, tokensFile, listen, servingIps: ['127.0.0.1', host] },
  {
    logger,
    podLocator: {
      hasWorkloadWithIdentityOnNode: (id, node) =>
        source.state.hasWorkloadWithIdentityOnNode(formatSpiffeId(id), node),
    },
    services: (authenticator) => [discovery.grpcService(authenticator)],
  },
);
process.send?.({ ready: server.port });
const stop = async (): Promise<void> => {
  discovery.close();
  await server.close(500);
  await source.stop();
  process.exit(0);
};
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());

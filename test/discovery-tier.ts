// The discovery tier as the WDS tests run it: the demo's manifests (examples/demo, without the apps)
// in a fresh directory, a manifest source, the discovery service, and the CA server that carries it
// over gRPC + TLS on loopback — with a node token for ztunnel on node1. A replica can be restarted on
// the same manifests and the server on the same port, as a Service in front of istiod would keep it.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { StaticTokenAuthenticator } from '../ca/server/auth.js';
import { CaServer } from '../ca/server/ca-server.js';
import { parseSpiffeId } from '../core/identity/spiffe.js';
import { ManifestSource } from '../core/sources/manifests.js';
import { type Discovery, createDiscovery } from '../discovery/discovery.js';

/** The bearer token of ztunnel on node1 (identity istio-system/ztunnel). */
export const WDS_TOKEN = 'ztunnel-node1-token-0123456789abcdef';
const logger = pino({ level: 'silent' });

/** A policy the WDS tests add to the demo's manifests: DENY for shop/batch's identity. */
export const DENY_BATCH_YAML = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-batch, namespace: shop }
spec:
  action: DENY
  rules: [{ from: [{ source: { principals: [cluster.local/ns/shop/sa/batch] } }] }]
`;

export class DiscoveryTier {
  readonly dir: string;
  readonly manifests: string;
  source!: ManifestSource;
  discovery!: Discovery;
  server: CaServer | undefined;
  /** The server's port, kept across restarts. */
  port = 0;

  private constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    this.manifests = join(this.dir, 'manifests');
    cpSync(join(import.meta.dirname, '..', 'examples', 'demo'), this.manifests, {
      recursive: true,
      filter: (src) => !src.includes('/apps'),
    });
  }

  static async start(prefix: string, replica?: string): Promise<DiscoveryTier> {
    const tier = new DiscoveryTier(prefix);
    try {
      await tier.startReplica(replica);
      await tier.startServer();
    } catch (err) {
      await tier.close();
      throw err;
    }
    return tier;
  }

  /** A (new) manifest source and discovery service over the same manifests; the previous ones stop. */
  async startReplica(replica?: string): Promise<void> {
    this.discovery?.close();
    await this.source?.stop();
    this.source = new ManifestSource(this.manifests, { logger, debounceMs: 20 });
    await this.source.start();
    this.discovery = createDiscovery(this.source.state, logger, replica);
  }

  /** Starts the CA server carrying the discovery service, on the port of the previous one if any. */
  async startServer(): Promise<CaServer> {
    const auth = new StaticTokenAuthenticator(
      new Map([
        [
          WDS_TOKEN,
          { identity: parseSpiffeId('spiffe://cluster.local/ns/istio-system/sa/ztunnel'), node: 'node1' },
        ],
      ]),
    );
    this.server = await CaServer.start(
      { dir: join(this.dir, 'ca'), listen: `127.0.0.1:${this.port}` },
      { logger, authenticator: auth, services: (a) => [this.discovery.grpcService(a)] },
    );
    this.port = this.server.port;
    return this.server;
  }

  async close(): Promise<void> {
    this.discovery?.close();
    await this.server?.close(200);
    await this.source?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

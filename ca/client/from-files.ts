// A component's certificates from the CA, as every mesh process gets them: the CA's address, its root
// file and the bearer token file (both re-read per request, so a rotated root or a kubelet-rotated
// token is picked up without a restart), a CaClient, and a CertificateManager that refreshes and backs
// off. ztunnel asks for the identities of its node's pods (ImpersonatedIdentity, as istio/ztunnel);
// a waypoint asks only for its own.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { SpiffeId } from '../../core/identity/spiffe.js';
import { CaClient } from './ca-client.js';
import { CertificateManager } from './cert-manager.js';

export interface CaFilesOptions {
  /** host:port of the CA. */
  address: string;
  /** PEM roots that signed the CA's serving certificate. */
  rootFile: string;
  /** Bearer token presented to the CA. */
  tokenFile: string;
  clusterId?: string;
  /** Ask for other identities than the token's own (a node proxy). */
  impersonate: boolean;
  logger: Logger;
}

export interface CaCertificates {
  readonly manager: CertificateManager;
  fetch: CertificateManager['fetch'];
  forget(id: SpiffeId): void;
  /** Stops refreshing and closes the CA channel. */
  close(): void;
}

export function certificatesFromCa(o: CaFilesOptions): CaCertificates {
  const ca = new CaClient({
    address: o.address,
    rootsPem: () => readFile(o.rootFile, 'utf8'),
    token: async () => (await readFile(o.tokenFile, 'utf8')).trim(),
    ...(o.clusterId ? { clusterId: o.clusterId } : {}),
  });
  const manager = new CertificateManager({ source: ca, impersonate: o.impersonate, logger: o.logger });
  return {
    manager,
    fetch: (id) => manager.fetch(id),
    forget: (id) => manager.forget(id),
    close: () => {
      manager.close();
      ca.close();
    },
  };
}

// CaStore on a Kubernetes Secret: istiod's self-signed root lives in Secret `istio-ca-secret` in the
// CA's namespace (istio/istio security/pkg/pki/ca/ca.go `CASecret`), keys ca-cert.pem, ca-key.pem,
// cert-chain.pem, root-cert.pem, type `istio.io/ca-root`. istiod leaves cert-chain.pem and
// root-cert.pem empty for a self-signed root (the root is ca-cert.pem itself); both shapes load.
//
// Several CA replicas: only the leader may create the root (`mayCreate`); a follower that finds no
// Secret waits for the leader's instead of minting a second root. A create that loses the race
// (409 AlreadyExists) and a renewal that loses an update race (409 Conflict) fail with
// CA_STORE_CONFLICT, so a CA never serves a root that is not the stored one.
// A plugged-in `cacerts` Secret is mounted as a volume and read by the authority's cacertsDir reload,
// exactly as istiod mounts it at /etc/cacerts; it needs nothing here.
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { CaError } from '../errors.js';
import { certificatesOf } from '../pem.js';
import type { CaKeyMaterial } from './root.js';
import { CA_FILES, type CaStore } from './store.js';

export const CA_SECRET_NAME = 'istio-ca-secret';
/** istio/istio security/pkg/pki/ca/ca.go `caCertType`. */
export const CA_SECRET_TYPE = 'istio.io/ca-root';

export interface KubeSecretCaStoreOptions {
  kubeConfig: KubeConfig;
  /** The CA's namespace (istiod: POD_NAMESPACE, default istio-system). */
  namespace: string;
  name?: string;
  /** May this replica create the root when none is stored? Default: always. */
  mayCreate?: () => boolean;
  /** How often a replica that may not create polls for the Secret. Default 2 s. */
  pollMs?: number;
  /** Give up waiting after this long. Default 10 min. */
  waitTimeoutMs?: number;
  logger?: Logger;
}

const statusCode = (err: unknown): number | undefined => (err as { code?: number })?.code;
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) =>
  s === undefined ? undefined : Buffer.from(s, 'base64').toString('utf8');

export class KubeSecretCaStore implements CaStore {
  readonly #api: CoreV1Api;
  readonly #opts: KubeSecretCaStoreOptions;
  readonly #name: string;
  /** resourceVersion of the Secret as last read/written: updates are conditional on it. */
  #resourceVersion: string | undefined;

  constructor(opts: KubeSecretCaStoreOptions) {
    this.#opts = opts;
    this.#api = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.#name = opts.name ?? CA_SECRET_NAME;
  }

  get location(): string {
    return `secret ${this.#opts.namespace}/${this.#name}`;
  }

  async #read(): Promise<V1Secret | undefined> {
    try {
      return await this.#api.readNamespacedSecret({ namespace: this.#opts.namespace, name: this.#name });
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw new CaError(
        'STORE_ERROR',
        `${this.location}: read failed: ${(err as Error).message.split('\n')[0]}`,
      );
    }
  }

  async load(): Promise<CaKeyMaterial | undefined> {
    const deadline = Date.now() + (this.#opts.waitTimeoutMs ?? 600_000);
    for (let i = 0; ; i++) {
      const secret = await this.#read();
      if (secret) return this.#material(secret);
      if (this.#opts.mayCreate?.() ?? true) return undefined;
      if (Date.now() > deadline)
        throw new CaError(
          'STORE_ERROR',
          `${this.location}: not created by the leader within the wait timeout`,
        );
      if (i === 0)
        this.#opts.logger?.info({ store: this.location }, 'ca: waiting for the leader to create the root');
      await new Promise((r) => setTimeout(r, this.#opts.pollMs ?? 2000));
    }
  }

  #material(secret: V1Secret): CaKeyMaterial {
    this.#resourceVersion = secret.metadata?.resourceVersion;
    const data = secret.data ?? {};
    const certPem = unb64(data[CA_FILES.cert]);
    const keyPem = unb64(data[CA_FILES.key]);
    if (!certPem?.trim())
      throw new CaError('INVALID_CA_MATERIAL', `${this.location}: ${CA_FILES.cert} is missing or empty`);
    if (!keyPem?.trim())
      throw new CaError('INVALID_CA_MATERIAL', `${this.location}: ${CA_FILES.key} is missing or empty`);
    const chain = certificatesOf(unb64(data[CA_FILES.chain]) ?? '');
    const roots = certificatesOf(unb64(data[CA_FILES.roots]) ?? '');
    // istiod's self-signed secret: empty root-cert.pem means the signing cert is the root.
    return {
      certPem,
      keyPem,
      certChainPem: chain,
      rootsPem: roots.length > 0 ? roots : certificatesOf(certPem),
    };
  }

  async save(ca: CaKeyMaterial): Promise<void> {
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      type: CA_SECRET_TYPE,
      metadata: {
        name: this.#name,
        namespace: this.#opts.namespace,
        ...(this.#resourceVersion ? { resourceVersion: this.#resourceVersion } : {}),
      },
      data: {
        [CA_FILES.cert]: b64(ca.certPem),
        [CA_FILES.key]: b64(ca.keyPem),
        [CA_FILES.chain]: b64(ca.certChainPem.join('')),
        [CA_FILES.roots]: b64(ca.rootsPem.join('')),
      },
    };
    try {
      const saved = this.#resourceVersion
        ? await this.#api.replaceNamespacedSecret({ namespace: this.#opts.namespace, name: this.#name, body })
        : await this.#api.createNamespacedSecret({ namespace: this.#opts.namespace, body });
      this.#resourceVersion = saved.metadata?.resourceVersion;
    } catch (err) {
      if (statusCode(err) === 409)
        throw new CaError(
          'STORE_ERROR',
          `${this.location}: CA_STORE_CONFLICT: another CA replica wrote the root first; restart to load it`,
        );
      throw new CaError(
        'STORE_ERROR',
        `${this.location}: write failed: ${(err as Error).message.split('\n')[0]}`,
      );
    }
  }
}

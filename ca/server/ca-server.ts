// The CA process: authority (roots, cacerts reload, renewal) + IstioCertificateService over TLS.
// The serving certificate is issued by the same CA (istiod signs its own DNS cert) and re-issued
// whenever the signer changes, through grpc-js's certificate provider so the listener never restarts.
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type {
  CaCertificateUpdateListener,
  CertificateProvider,
  IdentityCertificateUpdate,
  IdentityCertificateUpdateListener,
} from '@grpc/grpc-js/build/src/certificate-provider.js';
import { type Logger, pino } from 'pino';
import { caServiceDefinition } from '../proto.js';
import {
  type Authenticator,
  type PodLocator,
  StaticTokenAuthenticator,
  TokenFileAuthenticator,
} from './auth.js';
import { CertificateAuthority } from './authority.js';
import { type CaServerConfig, type CaServerConfigInput, parseCaServerConfig } from './config.js';
import { caServiceHandlers } from './grpc-service.js';
import { type CaStore, LocalDirCaStore } from './store.js';

const SERVING_CERT_TTL_SECONDS = 365 * 86400; // clamped to the CA's own NotAfter by the signer

/** grpc-js CertificateProvider fed from memory: push a new serving cert, new handshakes use it. */
class ServingCertificateProvider implements CertificateProvider {
  private latest: IdentityCertificateUpdate | null = null;
  private readonly listeners = new Set<IdentityCertificateUpdateListener>();
  set(update: IdentityCertificateUpdate): void {
    this.latest = update;
    for (const l of this.listeners) l(update);
  }
  addCaCertificateListener(_l: CaCertificateUpdateListener): void {}
  removeCaCertificateListener(_l: CaCertificateUpdateListener): void {}
  addIdentityCertificateListener(l: IdentityCertificateUpdateListener): void {
    this.listeners.add(l);
    // Deliver asynchronously: grpc-js 1.14 subscribes before it registers its own watcher, so a
    // synchronous first update would be lost and the server would drop every connection.
    setImmediate(() => {
      if (this.latest && this.listeners.has(l)) l(this.latest);
    });
  }
  removeIdentityCertificateListener(l: IdentityCertificateUpdateListener): void {
    this.listeners.delete(l);
  }
}

export interface CaServerDeps {
  /** Overrides the token-file authenticator (Kubernetes TokenReview, tests). */
  authenticator?: Authenticator;
  /** Who runs where, for ImpersonatedIdentity; without it impersonation is refused. */
  podLocator?: PodLocator;
  /** Overrides the local directory store. */
  store?: CaStore;
  logger?: Logger;
  /**
   * More gRPC services on the same TLS listener, given the CA's authenticator — istiod serves
   * discovery (XDS) and the CA together on 15012 with the same caller authentication.
   */
  services?: (authenticator: Authenticator) => {
    definition: grpc.ServiceDefinition;
    implementation: grpc.UntypedServiceImplementation;
  }[];
}

export class CaServer {
  private constructor(
    readonly config: CaServerConfig,
    readonly authority: CertificateAuthority,
    private readonly server: grpc.Server,
    /** The bound port (useful with port 0). */
    readonly port: number,
    readonly host: string,
  ) {}

  /** Address clients dial (host:port). */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** The current trust bundle (root-cert.pem content) clients use to verify the serving cert. */
  rootsPem(): string {
    return this.authority.signer.rootsPem().join('');
  }

  static async start(input: CaServerConfigInput, deps: CaServerDeps = {}): Promise<CaServer> {
    const config = parseCaServerConfig(input);
    const logger = deps.logger ?? pino({ name: 'ambit-ca' });
    let authenticator = deps.authenticator;
    if (!authenticator) {
      if (!config.tokensFile) {
        // Fail closed: a CA with no way to authenticate callers must authenticate nobody.
        logger.warn('ca: no token file configured; every request will be UNAUTHENTICATED');
        authenticator = new StaticTokenAuthenticator(new Map());
      } else {
        const fileAuth = new TokenFileAuthenticator(config.tokensFile);
        await fileAuth.check();
        authenticator = fileAuth;
      }
    }
    const authority = await CertificateAuthority.start({
      trustDomain: config.trustDomain,
      store: deps.store ?? new LocalDirCaStore(config.dir),
      cacertsDir: config.cacertsDir,
      rootTtlDays: config.rootTtlDays,
      rootGracePercent: config.rootGracePercent,
      rootCheckIntervalMs: config.rootCheckIntervalMs,
      reloadDebounceMs: config.reloadDebounceMs,
      defaultTtlSeconds: config.defaultTtlSeconds,
      maxTtlSeconds: config.maxTtlSeconds,
      logger,
    });
    try {
      const serving = new ServingCertificateProvider();
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      const spkiDer = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
      const keyPem = Buffer.from(privateKey.export({ type: 'pkcs8', format: 'pem' }));
      const issueServing = (): void => {
        const chain = authority.signer.signServingSpki(spkiDer, {
          dnsNames: config.servingDnsNames,
          ipAddresses: config.servingIps,
          ttlSeconds: SERVING_CERT_TTL_SECONDS,
        });
        // Serve leaf + intermediates; clients hold the roots.
        serving.set({ certificate: Buffer.from(chain.slice(0, -1).join('')), privateKey: keyPem });
      };
      issueServing();
      authority.on('changed', () => {
        try {
          issueServing();
        } catch (err) {
          logger.error({ err }, 'ca: could not re-issue the serving certificate');
        }
      });
      const server = new grpc.Server();
      server.addService(
        caServiceDefinition(),
        caServiceHandlers({
          authenticator,
          podLocator: deps.podLocator,
          trustedNodeAccounts: config.trustedNodeAccounts,
          signer: () => authority.signer,
          logger,
        }),
      );
      for (const extra of deps.services?.(authenticator) ?? [])
        server.addService(extra.definition, extra.implementation);
      // grpc-js 1.14 names the first parameter caCertificateProvider but passes it on as the
      // identity (serving) provider; null = no client-certificate request (callers use bearer tokens).
      const creds = grpc.experimental.createCertificateProviderServerCredentials(serving, null, false);
      const { host, port } = splitHostPort(config.listen);
      const bound = await new Promise<number>((resolve, reject) =>
        server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, creds, (err, p) =>
          err ? reject(err) : resolve(p),
        ),
      );
      logger.info(
        { address: `${host}:${bound}`, mode: authority.mode, trustDomain: config.trustDomain },
        'ca: serving IstioCertificateService',
      );
      return new CaServer(config, authority, server, bound, host);
    } catch (err) {
      authority.close();
      throw err;
    }
  }

  /** Stops accepting, lets in-flight calls finish (bounded), closes watchers and timers. */
  async close(graceMs = 2000): Promise<void> {
    this.authority.close();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(listen);
  if (!m) throw new Error(`listen address "${listen}" is not host:port`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`listen address "${listen}": port out of range`);
  return { host: (m[1] ?? m[2])!, port };
}

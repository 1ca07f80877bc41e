// The API server connection of a process running in a pod (client-go rest.InClusterConfig):
// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, the server verified with the service
// account's ca.crt, requests carrying its token. It answers the three questions KubernetesSource and
// client-node's Watch ask a KubeConfig (getCurrentCluster, applyToHTTPSOptions, applyToFetchOptions).
//
// Why not KubeConfig.loadFromCluster: importing KubeConfig loads client-node's generated API clients,
// models and auth plugins — +18 MB heap and ~+29 MB RSS in a ztunnel (measured after its own module
// graph), for a DaemonSet that only lists and watches. A kubeconfig file (or ~/.kube/config, or
// $KUBECONFIG) still goes through KubeConfig; `inClusterConfig` only answers when none applies, the
// same order as KubeConfig.loadFromDefault.
import { existsSync, readFileSync } from 'node:fs';
import { Agent, type RequestOptions } from 'node:https';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Where the kubelet mounts the service account (token, ca.crt, namespace). */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class InClusterConfigError extends Error {
  readonly code = 'IN_CLUSTER_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'InClusterConfigError';
  }
}

export class InClusterConfig {
  readonly server: string;
  readonly #caFile: string;
  readonly #tokenFile: string;
  #ca: { pem: string; agent: Agent } | undefined;

  constructor(host: string, port: string, dir = SERVICE_ACCOUNT_DIR) {
    if (!host || !/^[0-9]+$/.test(port))
      throw new InClusterConfigError(
        `in-cluster config: KUBERNETES_SERVICE_HOST=${JSON.stringify(host)} KUBERNETES_SERVICE_PORT=${JSON.stringify(port)} is not an address`,
      );
    this.server = `https://${isIPv6(host) ? `[${host}]` : host}:${port}`;
    this.#caFile = join(dir, 'ca.crt');
    this.#tokenFile = join(dir, 'token');
  }

  getCurrentCluster(): { name: string; server: string; caFile: string; skipTLSVerify: false } {
    return { name: 'inCluster', server: this.server, caFile: this.#caFile, skipTLSVerify: false };
  }

  /** The CA bundle and an agent trusting only it; rebuilt when the kubelet rewrites ca.crt. */
  #trust(): { pem: string; agent: Agent } {
    const pem = this.#read(this.#caFile, 'CA bundle');
    if (this.#ca?.pem !== pem) {
      this.#ca?.agent.destroy();
      this.#ca = { pem, agent: new Agent({ ca: pem, keepAlive: true }) };
    }
    return this.#ca;
  }

  /** The token is read on every request: the kubelet rotates bound service account tokens in place. */
  #authorization(): string {
    return `Bearer ${this.#read(this.#tokenFile, 'token').trim()}`;
  }

  #read(file: string, what: string): string {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new InClusterConfigError(
        `in-cluster config: service account ${what} ${file}: ${(err as Error).message}`,
      );
    }
  }

  async applyToHTTPSOptions(opts: RequestOptions): Promise<void> {
    const { pem, agent } = this.#trust();
    opts.ca = pem;
    opts.agent = agent;
    opts.headers = { ...(opts.headers ?? {}), authorization: this.#authorization() };
  }

  /** What client-node's Watch passes to fetch: the agent (TLS trust) and the headers. */
  async applyToFetchOptions(opts: {
    headers?: Record<string, string>;
  }): Promise<{ agent: Agent; headers: Record<string, string> }> {
    return {
      agent: this.#trust().agent,
      headers: { ...(opts.headers ?? {}), authorization: this.#authorization() },
    };
  }

  /** Idle keep-alive sockets are closed; the next request opens a new one. */
  close(): void {
    this.#ca?.agent.destroy();
    this.#ca = undefined;
  }
}

/**
 * The in-cluster config when KubeConfig.loadFromDefault would choose it — no $KUBECONFIG, no
 * ~/.kube/config, a service account token mounted — else undefined (use KubeConfig).
 */
export function inClusterConfig(
  env: NodeJS.ProcessEnv = process.env,
  dir = SERVICE_ACCOUNT_DIR,
  home = homedir(),
): InClusterConfig | undefined {
  if (env.KUBECONFIG) return undefined;
  if (home && existsSync(join(home, '.kube', 'config'))) return undefined;
  if (!existsSync(join(dir, 'token'))) return undefined;
  return new InClusterConfig(env.KUBERNETES_SERVICE_HOST ?? '', env.KUBERNETES_SERVICE_PORT ?? '', dir);
}

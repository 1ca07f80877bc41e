// Kubernetes caller authentication for the CA, as istiod does it (istio/istio
// security/pkg/server/ca/authenticate/kubeauth/kube_jwt.go, security/pkg/k8s/tokenreview/k8sauthn.go):
// the bearer token is a projected service-account token (audience `istio-ca`); a TokenReview with
// audiences [istio-ca] says whether it is valid and whose it is. Username
// `system:serviceaccount:<ns>:<sa>` → identity spiffe://<trust domain>/ns/<ns>/sa/<sa>.
// The caller's node, needed for impersonation, comes from the bound token: the
// `authentication.kubernetes.io/node-name` extra (Kubernetes 1.30+), else the bound pod
// (`pod-name`, `pod-uid` extras) looked up → spec.nodeName, and the pod's uid must match the token's
// so a token outliving its pod cannot borrow a same-named successor's node.
// Any failure (API error, not authenticated, wrong audience, not a service account) is
// UNAUTHENTICATED: fail closed.
import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Unauthenticated } from '../errors.js';
import type { Authenticator, CallerIdentity } from './auth.js';

export const CA_TOKEN_AUDIENCE = 'istio-ca';
const NODE_EXTRA = 'authentication.kubernetes.io/node-name';
const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';

export interface PodInfo {
  node?: string;
  uid?: string;
}

export interface TokenReviewAuthenticatorOptions {
  kubeConfig: KubeConfig;
  trustDomain: string;
  /** TOKEN_AUDIENCES in istiod. Default [istio-ca]. */
  audiences?: string[];
  /**
   * Finds a pod (for tokens without the node-name extra). Default: a GET on the API server. The CA
   * passes its informer's view when it has one.
   */
  lookupPod?: (namespace: string, name: string) => Promise<PodInfo | undefined>;
  logger?: Logger;
}

export class TokenReviewAuthenticator implements Authenticator {
  readonly #auth: AuthenticationV1Api;
  readonly #opts: TokenReviewAuthenticatorOptions;
  readonly #lookupPod: (namespace: string, name: string) => Promise<PodInfo | undefined>;

  constructor(opts: TokenReviewAuthenticatorOptions) {
    this.#opts = opts;
    this.#auth = opts.kubeConfig.makeApiClient(AuthenticationV1Api);
    const core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.#lookupPod =
      opts.lookupPod ??
      (async (namespace, name) => {
        try {
          const pod = await core.readNamespacedPod({ namespace, name });
          return { node: pod.spec?.nodeName, uid: pod.metadata?.uid };
        } catch (err) {
          if ((err as { code?: number }).code === 404) return undefined;
          throw err;
        }
      });
  }

  async authenticate(token: string | undefined): Promise<CallerIdentity> {
    if (!token) throw new Unauthenticated('request authenticate failure: no bearer token');
    const audiences = this.#opts.audiences ?? [CA_TOKEN_AUDIENCE];
    let review: Awaited<ReturnType<AuthenticationV1Api['createTokenReview']>>;
    try {
      review = await this.#auth.createTokenReview({ body: { spec: { token, audiences } } });
    } catch (err) {
      this.#opts.logger?.warn({ err: (err as Error).message.split('\n')[0] }, 'ca: TokenReview failed');
      throw new Unauthenticated('request authenticate failure: token review unavailable');
    }
    const status = review.status;
    if (!status?.authenticated)
      throw new Unauthenticated(
        `request authenticate failure: token not authenticated (${status?.error ?? 'no reason given'})`,
      );
    // kube_jwt.go: the reviewed audiences must include one we asked for.
    if (!(status.audiences ?? []).some((a) => audiences.includes(a)))
      throw new Unauthenticated(
        `request authenticate failure: token audience is not ${audiences.join(', ')}`,
      );
    const username = status.user?.username ?? '';
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username);
    if (!m) throw new Unauthenticated(`request authenticate failure: "${username}" is not a service account`);
    const [, namespace, serviceAccount] = m as unknown as [string, string, string];
    const extra = status.user?.extra ?? {};
    const podName = extra[POD_NAME_EXTRA]?.[0];
    const podUid = extra[POD_UID_EXTRA]?.[0];
    let node = extra[NODE_EXTRA]?.[0];
    if (!node && podName) {
      const pod = await this.#lookupPod(namespace, podName).catch(() => undefined);
      // A pod that is gone, or replaced by a same-named one, gives the caller no node.
      if (pod && (!podUid || !pod.uid || pod.uid === podUid)) node = pod.node;
    }
    return {
      identity: { trustDomain: this.#opts.trustDomain, namespace, serviceAccount },
      ...(node ? { node } : {}),
      ...(podName ? { pod: { name: podName, ...(podUid ? { uid: podUid } : {}) } } : {}),
    };
  }
}

// The node agent's pod annotation ambient.istio.io/redirection, written to the test API server
// (a test double for the apiserver) from the agent's pod states.
import type { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CAPTURE_FAILED_EVENT_REASON,
  CAPTURE_FAILURE_ANNOTATION,
  followAgent,
  REDIRECTION_ANNOTATION,
  RedirectionAnnotator,
} from '../bpf-redirect/agent/k8s-annotate.js';
import { startTestCluster } from './k8s-api-server/cluster.js';
import type { TestKubernetesApiServer } from './k8s-api-server/server.js';

let api: TestKubernetesApiServer;
let kc: KubeConfig;
let core: CoreV1Api;

async function annotation(name: string): Promise<string | undefined> {
  const p = await core.readNamespacedPod({ namespace: 'shop', name });
  return p.metadata?.annotations?.[REDIRECTION_ANNOTATION];
}

beforeAll(async () => {
  ({ api, kc, core } = await startTestCluster(['shop']));
  for (const name of ['a', 'b', 'c', 'd'])
    await core.createNamespacedPod({
      namespace: 'shop',
      body: {
        metadata: { name, annotations: { 'keep.me/too': 'yes' } },
        spec: { nodeName: 'node-a', containers: [{ name: 'x', image: 'x' }] },
      },
    });
});

afterAll(async () => {
  await api?.close();
});

describe('ambient.istio.io/redirection', () => {
  it('says enabled for captured pods, pending for enrolled pods not programmed yet, nothing for the others', async () => {
    const annotator = new RedirectionAnnotator({ kubeConfig: kc });
    let pods = [
      { name: 'a', namespace: 'shop', state: 'CAPTURE' },
      {
        name: 'b',
        namespace: 'shop',
        state: 'CAPTURE',
        pending: 'no /32 route to 10.1.0.3 on a local veth yet',
      },
      { name: 'c', namespace: 'shop', state: 'NONE' },
    ];
    const stop = followAgent({ status: () => ({ pods }) }, annotator, 20);
    try {
      await annotator.idle();
      expect(await annotation('a')).toBe('enabled');
      expect(await annotation('b')).toBe('pending');
      expect(await annotation('c')).toBeUndefined();
      // Other annotations are untouched (a merge patch on one key).
      expect(
        (await core.readNamespacedPod({ namespace: 'shop', name: 'a' })).metadata?.annotations?.[
          'keep.me/too'
        ],
      ).toBe('yes');

      // b gets its veth; a is un-enrolled (DRAIN): the annotation follows, a's is removed.
      pods = [
        { name: 'a', namespace: 'shop', state: 'DRAIN' },
        { name: 'b', namespace: 'shop', state: 'CAPTURE' },
        { name: 'c', namespace: 'shop', state: 'NONE' },
      ];
      for (
        let i = 0;
        i < 200 && ((await annotation('b')) !== 'enabled' || (await annotation('a')) !== undefined);
        i++
      )
        await new Promise((r) => setTimeout(r, 20));
      expect(await annotation('b')).toBe('enabled');
      expect(await annotation('a')).toBeUndefined();
    } finally {
      stop();
      annotator.stop();
    }
  });

  it('does not rewrite an annotation that is already right, and forgets deleted pods', async () => {
    const annotator = new RedirectionAnnotator({ kubeConfig: kc });
    annotator.set('shop', 'c', 'enabled');
    await annotator.idle();
    const before = api.requests.filter((r) => r.startsWith('PATCH /api/v1/namespaces/shop/pods/c')).length;
    annotator.update([{ name: 'c', namespace: 'shop', state: 'CAPTURE' }]);
    await annotator.idle();
    expect(api.requests.filter((r) => r.startsWith('PATCH /api/v1/namespaces/shop/pods/c')).length).toBe(
      before,
    );
    await core.deleteNamespacedPod({ namespace: 'shop', name: 'c' });
    annotator.set('shop', 'c', 'pending');
    await annotator.idle(); // a 404 is not retried forever
    annotator.stop();
  });

  it('says failed, with the reason, and posts a Warning Event for a pod the agent cannot capture', async () => {
    const annotator = new RedirectionAnnotator({ kubeConfig: kc });
    const reason =
      'cannot capture: no veth in the node netns leads to a netns holding 10.1.0.9; its traffic is refused';
    annotator.update([
      { name: 'd', namespace: 'shop', state: 'CAPTURE', pending: 'no veth', uncapturable: reason },
    ]);
    try {
      await annotator.idle();
      const pod = await core.readNamespacedPod({ namespace: 'shop', name: 'd' });
      expect(pod.metadata?.annotations?.[REDIRECTION_ANNOTATION]).toBe('failed');
      expect(pod.metadata?.annotations?.[CAPTURE_FAILURE_ANNOTATION]).toBe(reason);
      const events = await core.listNamespacedEvent({ namespace: 'shop' });
      const ev = events.items.find((e) => e.involvedObject.name === 'd');
      expect(ev?.reason).toBe(CAPTURE_FAILED_EVENT_REASON);
      expect(ev?.type).toBe('Warning');
      expect(ev?.message).toBe(reason);
      // Captured again: the failure annotation goes.
      annotator.update([{ name: 'd', namespace: 'shop', state: 'CAPTURE' }]);
      await annotator.idle();
      const again = await core.readNamespacedPod({ namespace: 'shop', name: 'd' });
      expect(again.metadata?.annotations?.[REDIRECTION_ANNOTATION]).toBe('enabled');
      expect(again.metadata?.annotations?.[CAPTURE_FAILURE_ANNOTATION]).toBeUndefined();
    } finally {
      annotator.stop();
    }
  });
});

// Issue 7 "Done when", on real network namespaces: the CA, two ztunnels and the bpf-redirect agents all
// run against the test API server (a test double for the apiserver) through a kubeconfig, as in a
// cluster. Labelling a namespace enrolls its pods live and unlabelling drains them; a new
// AuthorizationPolicy takes effect on new connections and closes now-denied live ones; a dropped watch
// and a 410 are recovered with no lost event; a CSR with a token for a pod on another node is refused.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitStatus } from './harness/capture.js';
import { assertNoResidue, distPath, nsenterArgs } from './harness/topology.js';
import { APP_PORT, K8sWorld, VIP } from './k8s-world.js';

const root = process.getuid?.() === 0;
const AP = 'security.istio.io/v1';
const DENY_PORT = {
  metadata: { name: 'echo-deny-port', namespace: 'demo' },
  spec: {
    selector: { matchLabels: { app: 'echo' } },
    action: 'DENY',
    rules: [{ to: [{ operation: { ports: [String(APP_PORT)] } }] }],
  },
};
const ALLOW_OTHER = {
  metadata: { name: 'echo-allow-other', namespace: 'demo' },
  spec: {
    selector: { matchLabels: { app: 'echo' } },
    action: 'ALLOW',
    rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/other'] } }] }],
  },
};

describe.skipIf(!root)(
  'Kubernetes integration: CA + two ztunnels + agents against the test API server (netns)',
  () => {
    let w: K8sWorld;

    beforeAll(async () => {
      w = await K8sWorld.create('ebpf');
    }, 180_000);

    afterAll(async () => {
      const prefix = w?.topo.prefix;
      await w?.teardown();
      if (prefix) await assertNoResidue(prefix);
    }, 60_000);

    const peerIs = (line: string | undefined, pod: string) =>
      expect(line).toMatch(new RegExp(`^peer ${w.ip(pod).replace(/\./g, '\\.')}:`));

    it('carries a1 → Service VIP → b1 over HBONE with identities from the Kubernetes CA', async () => {
      const r = await w.client('a1').whoami(VIP, 80);
      peerIs(r.line, 'a1');
      const m = await w.curl('b', 'http://127.0.0.1:15020/metrics');
      expect(m).toMatch(
        /istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client"[^}]*connection_security_policy="mutual_tls"/,
      );
      // The agent says so on the pods: ambient.istio.io/redirection=enabled on enrolled ones only.
      const annotation = async (pod: string) =>
        (await w.api.get<{ metadata: { annotations?: Record<string, string> } }>('v1', 'Pod', 'demo', pod))
          ?.metadata.annotations?.['ambient.istio.io/redirection'];
      await w.waitFor(
        'a1 annotated enabled',
        async () => (await annotation('a1')) === 'enabled' || undefined,
      );
      expect(await annotation('b1')).toBe('enabled');
      expect(await annotation('b2')).toBeUndefined();
    });

    it('unlabelling the namespace drains its pods live, labelling it again enrolls them', async () => {
      await w.api.patch('v1', 'Namespace', undefined, 'demo', {
        metadata: { labels: { 'istio.io/dataplane-mode': null } },
      });
      try {
        for (const n of ['a', 'b'])
          await waitStatus(
            w.statusFile(n),
            (s) => s.pods.filter((p) => p.name !== 'b2').every((p) => p.state !== 'CAPTURE'),
            `all pods of ${n} out of the mesh`,
            15_000,
          );
        // Now direct: the connection reaches b1 without ztunnel b reporting it.
        const before =
          (await w.curl('b', 'http://127.0.0.1:15020/metrics'))
            .match(/istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*\} (\d+)/g)
            ?.join() ?? '';
        peerIs((await w.client('a1').whoami(w.ip('b1'), APP_PORT)).line, 'a1');
        const after =
          (await w.curl('b', 'http://127.0.0.1:15020/metrics'))
            .match(/istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*\} (\d+)/g)
            ?.join() ?? '';
        expect(after).toBe(before);
        await w.waitFor(
          'a1 annotation removed',
          async () =>
            (
              await w.api.get<{ metadata: { annotations?: Record<string, string> } }>(
                'v1',
                'Pod',
                'demo',
                'a1',
              )
            )?.metadata.annotations?.['ambient.istio.io/redirection'] === undefined || undefined,
        );
      } finally {
        await w.api.patch('v1', 'Namespace', undefined, 'demo', {
          metadata: { labels: { 'istio.io/dataplane-mode': 'ambient' } },
        });
      }
      await waitStatus(
        w.statusFile('a'),
        (s) => s.pods.find((p) => p.name === 'a1')?.state === 'CAPTURE',
        'a1 captured again',
        15_000,
      );
      await waitStatus(
        w.statusFile('b'),
        (s) => s.pods.find((p) => p.name === 'b1')?.state === 'CAPTURE',
        'b1 captured again',
        15_000,
      );
      peerIs((await w.client('a1').whoami(VIP, 80)).line, 'a1');
    });

    it('a new AuthorizationPolicy denies new connections and closes the now-denied live one; deleting it restores', async () => {
      const a1 = w.client('a1');
      const c = await a1.connect(VIP, 80);
      expect((await a1.send(c.conn!, 'before')).line).toBe('before');
      await w.api.create(AP, 'AuthorizationPolicy', 'demo', DENY_PORT);
      try {
        await w.waitPolicy('b', 'demo/echo-deny-port', true);
        expect((await a1.send(c.conn!, 'after', 1000)).ok).toBe(false);
        expect(await w.waitLog('b', 'connection closed due to policy change')).toBe(true);
        expect((await a1.whoami(VIP, 80)).ok).toBe(false);
      } finally {
        await a1.close(c.conn!).catch(() => undefined);
        await w.api.delete(AP, 'AuthorizationPolicy', 'demo', 'echo-deny-port');
      }
      await w.waitPolicy('b', 'demo/echo-deny-port', false);
      peerIs((await a1.whoami(VIP, 80)).line, 'a1');
    });

    it('recovers a dropped watch and a 410 with no lost event: both ztunnels converge on the server state', async () => {
      // Dropped watches: the change made right after is still delivered (resume from resourceVersion).
      expect(await w.api.dropWatches()).toBeGreaterThan(0);
      await w.api.create(AP, 'AuthorizationPolicy', 'demo', ALLOW_OTHER);
      for (const n of ['a', 'b']) await w.waitPolicy(n, 'demo/echo-allow-other', true);
      expect((await w.client('a1').whoami(VIP, 80)).ok).toBe(false); // a1 is not "other"
      peerIs((await w.client('a2').whoami(VIP, 80)).line, 'a2');

      // 410: history compacted and every watch dropped; the deletion made meanwhile must still arrive
      // (via re-list), as must a pod that appeared meanwhile.
      await w.api.compact();
      await w.api.dropWatches();
      await w.api.delete(AP, 'AuthorizationPolicy', 'demo', 'echo-allow-other');
      await w.api.create('v1', 'Pod', 'demo', {
        metadata: { name: 'late', labels: { app: 'late' } },
        spec: { nodeName: 'b', serviceAccountName: 'late', containers: [{ name: 'app', image: 'x' }] },
      });
      for (const n of ['a', 'b']) await w.waitPolicy(n, 'demo/echo-allow-other', false);
      const serverPods = (await w.api.list<{ metadata: { name: string } }>('v1', 'Pod', 'demo'))
        .map((p) => p.metadata.name)
        .sort();
      for (const n of ['a', 'b'])
        await w.waitFor(`ztunnel ${n} workloads equal the server's pods`, async () => {
          const names = (await w.configDump(n)).workloads
            .filter((x) => x.namespace === 'demo')
            .map((x) => x.name)
            .sort();
          return JSON.stringify(names) === JSON.stringify(serverPods) || undefined;
        });
      peerIs((await w.client('a1').whoami(VIP, 80)).line, 'a1');
      await w.api.delete('v1', 'Pod', 'demo', 'late');
    });

    it('refuses a CSR made with node b’s token for a pod on node a; node a’s own token gets it', () => {
      const probe = (node: string) => {
        const out = execFileSync(
          'nsenter',
          nsenterArgs(w.topo.node(node).ns, process.execPath, [
            distPath('test/k8s-csr-probe.ts'),
            w.caAddress,
            w.caRoot,
            `${w.dir}/token-${node}`,
            'spiffe://cluster.local/ns/demo/sa/client',
          ]),
          { encoding: 'utf8', timeout: 20_000 },
        );
        return JSON.parse(out.trim().split('\n').pop()!) as {
          ok: boolean;
          code?: number;
          san?: string;
          message?: string;
        };
      };
      const other = probe('b');
      expect(other.ok).toBe(false);
      expect(other.code).toBe(7); // PERMISSION_DENIED
      const own = probe('a');
      expect(own).toMatchObject({ ok: true, san: 'URI:spiffe://cluster.local/ns/demo/sa/client' });
    });
  },
);

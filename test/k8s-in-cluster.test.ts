// The in-cluster connection (core/sources/in-cluster.ts) against the test API server over real TLS:
// the service account's ca.crt is the only trust, its token is sent and re-read after rotation, and
// KubernetesSource lists and watches through it exactly as through a KubeConfig.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selfSignedP256 } from './harness/openssl.js';
import { InClusterConfig, inClusterConfig } from '../core/sources/in-cluster.js';
import { KubernetesSource } from '../core/sources/kubernetes.js';
import { TestKubernetesApiServer } from './k8s-api-server/server.js';

let dir: string;
let saDir: string;
let server: TestKubernetesApiServer;
let port: string;
let core: CoreV1Api;

function selfSigned(name: string): { key: string; cert: string } {
  return selfSignedP256(dir, name, {
    cn: 'kube-apiserver',
    days: 1,
    extra: ['-addext', 'subjectAltName=IP:127.0.0.1'],
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'k8s-in-cluster-'));
  saDir = join(dir, 'serviceaccount');
  mkdirSync(saDir);
  const tls = selfSigned('apiserver');
  writeFileSync(join(saDir, 'ca.crt'), tls.cert);
  writeFileSync(join(saDir, 'token'), 'sa-token-1\n');
  server = new TestKubernetesApiServer({ tls, bookmarkIntervalMs: 200 });
  const url = await server.listen();
  port = new URL(url).port;
  const admin = new KubeConfig();
  admin.loadFromString(server.kubeconfig());
  core = admin.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: 'shop' } } });
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('in-cluster API server access', () => {
  it('is chosen only as KubeConfig.loadFromDefault would: no $KUBECONFIG, no ~/.kube/config, a token', () => {
    const env = { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port };
    const noHome = join(dir, 'no-home');
    expect(inClusterConfig(env, saDir, noHome)?.server).toBe(`https://127.0.0.1:${port}`);
    expect(inClusterConfig({ ...env, KUBECONFIG: '/x' }, saDir, noHome)).toBeUndefined();
    expect(inClusterConfig(env, join(dir, 'no-such-dir'), noHome)).toBeUndefined();
    mkdirSync(join(dir, 'home', '.kube'), { recursive: true });
    writeFileSync(join(dir, 'home', '.kube', 'config'), '');
    expect(inClusterConfig(env, saDir, join(dir, 'home'))).toBeUndefined();
    expect(() => inClusterConfig({}, saDir, noHome)).toThrow(
      /KUBERNETES_SERVICE_HOST="" .* is not an address/,
    );
    expect(new InClusterConfig('fd00::1', '443', saDir).server).toBe('https://[fd00::1]:443');
  });

  it('sends the service account token, re-read after the kubelet rotates it', async () => {
    const c = new InClusterConfig('127.0.0.1', port, saDir);
    const opts: RequestOptions = {};
    await c.applyToHTTPSOptions(opts);
    expect(opts.headers).toMatchObject({ authorization: 'Bearer sa-token-1' });
    writeFileSync(join(saDir, 'token'), 'sa-token-2\n');
    expect((await c.applyToFetchOptions({})).headers).toMatchObject({ authorization: 'Bearer sa-token-2' });
    c.close();
  });

  it('lists and watches through KubernetesSource, trusting ca.crt', async () => {
    const access = new InClusterConfig('127.0.0.1', port, saDir);
    const source = new KubernetesSource({
      kubeConfig: access,
      kinds: ['Namespace'],
      syncTimeoutMs: 10_000,
      logger: pino({ level: 'silent' }),
    });
    try {
      await source.start();
      expect(source.state.namespace('shop')).toBeDefined();
      // The watch (client-node's Watch over this config's agent and headers) delivers a new object.
      await core.createNamespace({ body: { metadata: { name: 'late' } } });
      for (let i = 0; i < 100 && !source.state.namespace('late'); i++)
        await new Promise((r) => setTimeout(r, 50));
      expect(source.state.namespace('late')).toBeDefined();
    } finally {
      await source.stop();
      access.close();
    }
  });

  it('refuses an API server whose certificate ca.crt does not vouch for', async () => {
    const other = join(dir, 'other-sa');
    mkdirSync(other);
    writeFileSync(join(other, 'ca.crt'), selfSigned('other').cert);
    writeFileSync(join(other, 'token'), 'sa-token-1\n');
    const access = new InClusterConfig('127.0.0.1', port, other);
    const source = new KubernetesSource({
      kubeConfig: access,
      kinds: ['Namespace'],
      syncTimeoutMs: 1500,
      logger: pino({ level: 'silent' }),
    });
    try {
      await expect(source.start()).rejects.toThrow(/no complete list of Namespace/);
      expect(source.state.namespace('shop')).toBeUndefined();
    } finally {
      await source.stop();
      access.close();
    }
  });
});

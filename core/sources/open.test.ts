import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { openStateSource } from './open.js';

class TestConfigError extends Error {
  readonly code = 'TEST_CONFIG_INVALID';
}

const base = {
  trustDomain: 'cluster.local',
  loggerFor: () => pino({ level: 'silent' }),
  configError: (m: string) => new TestConfigError(m),
  component: 'test config',
};

describe('openStateSource', () => {
  it('reads a manifest directory into the state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ambit-open-'));
    try {
      writeFileSync(
        join(dir, 'ns.yaml'),
        'apiVersion: v1\nkind: Namespace\nmetadata: { name: shop }\n---\napiVersion: v1\nkind: Pod\nmetadata: { name: web, namespace: shop }\nspec: { nodeName: n1, serviceAccountName: web, containers: [{ name: app, image: x }] }\nstatus: { phase: Running, podIP: 10.0.0.5 }\n',
      );
      const source = await openStateSource({ ...base, manifestsDir: dir });
      await source.start();
      try {
        expect(source.state.workloadByIp('10.0.0.5')?.name).toBe('web');
      } finally {
        await source.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("names the component and the file when the kubeconfig is unreadable, with the component's error", async () => {
    const err = await openStateSource({
      ...base,
      kubernetes: { kubeconfig: '/nonexistent/kubeconfig' },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TestConfigError);
    expect((err as Error).message).toMatch(/^test config: kubeconfig \/nonexistent\/kubeconfig: /);
  });

  it('refuses options that name no source', async () => {
    await expect(openStateSource(base)).rejects.toThrow(/test config: no state source/);
  });
});

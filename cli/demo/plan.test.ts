import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { planDemo } from './plan.js';

const dirs: string[] = [];
function copyOfExamples(): string {
  const d = mkdtempSync(join(tmpdir(), 'ambit-plan-'));
  dirs.push(d);
  cpSync(join(import.meta.dirname, '../../examples/demo'), d, { recursive: true });
  rmSync(join(d, 'apps'), { recursive: true, force: true });
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the demo plan from examples/demo', () => {
  it('has two nodes, at least four pods, ambient and non-ambient ones, and a program for every pod', async () => {
    const p = await planDemo(copyOfExamples());
    expect(p.manifestErrors).toEqual([]);
    expect(p.nodes).toEqual(['node1', 'node2']);
    expect(p.pods.length).toBeGreaterThanOrEqual(4);
    expect(p.pods.find((x) => x.name === 'frontend')).toMatchObject({
      enrolled: true,
      identity: 'spiffe://cluster.local/ns/shop/sa/frontend',
      node: 'node1',
    });
    expect(p.pods.find((x) => x.name === 'legacy')?.enrolled).toBe(false);
    expect(p.pods.every((x) => x.run)).toBe(true);
    expect(new Set(p.pods.map((x) => x.shortName)).size).toBe(p.pods.length);
  });

  it('rejects a pod IP outside its node’s pod CIDR, naming file, pod and field', async () => {
    const d = copyOfExamples();
    const f = join(d, 'pods.yaml');
    writeFileSync(f, readFileSync(f, 'utf8').replace('podIP: 10.244.1.10', 'podIP: 10.244.2.99'));
    await expect(planDemo(d)).rejects.toThrow(
      /pods\.yaml: Pod shop\/frontend: status\.podIP "10\.244\.2\.99" must be a host address in 10\.244\.1\.0\/24/,
    );
  });
});
